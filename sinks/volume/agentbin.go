package volume

import (
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"

	"github.com/moby/moby/client"

	"github.com/mc-broker/mc-broker/sinks/volume/engine"
)

// AgentBinaryEnv names a static Linux mc-broker binary for the resident
// agent, overriding the search (tests, packagers).
const AgentBinaryEnv = "MC_BROKER_AGENT_BINARY"

// NoAgentBinaryError says why no resident agent can run on an engine: there
// is no static Linux binary of mc-broker for its architecture.
type NoAgentBinaryError struct {
	Arch   string
	Looked []string
}

func (e *NoAgentBinaryError) Error() string {
	return fmt.Sprintf("no resident agent: no static linux/%s mc-broker binary (looked at %v; `make agent-binaries` builds mc-broker-linux-%s to put beside mc-broker); volume copies are polled instead", e.Arch, e.Looked, e.Arch)
}

// engineArch is the engine's architecture in Go's words (amd64, arm64).
func engineArch(ctx context.Context, c *client.Client) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	res, err := c.Info(ctx, client.InfoOptions{})
	if err != nil {
		return "", err
	}
	switch a := res.Info.Architecture; a {
	case "x86_64", "amd64":
		return "amd64", nil
	case "aarch64", "arm64":
		return "arm64", nil
	default:
		return a, nil
	}
}

// findAgentBinary finds a static Linux mc-broker for arch: $MC_BROKER_AGENT_BINARY,
// else this executable when it is one, else mc-broker-linux-ARCH beside it.
func findAgentBinary(arch string) (string, error) {
	var looked []string
	try := func(p string) bool {
		looked = append(looked, p)
		return staticLinuxELF(p, arch) == nil
	}
	if p := os.Getenv(AgentBinaryEnv); p != "" {
		if err := staticLinuxELF(p, arch); err != nil {
			return "", fmt.Errorf("%s=%s: %w", AgentBinaryEnv, p, err)
		}
		return p, nil
	}
	self, err := os.Executable()
	if err == nil {
		if s, err := filepath.EvalSymlinks(self); err == nil {
			self = s
		}
		if runtime.GOOS == "linux" && try(self) {
			return self, nil
		}
		if p := filepath.Join(filepath.Dir(self), "mc-broker-linux-"+arch); try(p) {
			return p, nil
		}
	}
	return "", &NoAgentBinaryError{Arch: arch, Looked: looked}
}

// staticLinuxELF fails unless p is a Linux ELF executable for arch with no
// program interpreter (statically linked: it runs in an empty image).
func staticLinuxELF(p, arch string) error {
	f, err := elf.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	want := map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}[arch]
	if want == 0 || f.Machine != want {
		return fmt.Errorf("not a linux/%s binary (%v)", arch, f.Machine)
	}
	for _, prog := range f.Progs {
		if prog.Type == elf.PT_INTERP {
			return errors.New("dynamically linked (build it with CGO_ENABLED=0)")
		}
	}
	return nil
}

// AgentBinaryFor is the binary the resident agent would run on e (doctor
// shows it), or why there is none.
func AgentBinaryFor(ctx context.Context, e *engine.Engine) (string, error) {
	arch, err := engineArch(ctx, e.Client())
	if err != nil {
		return "", err
	}
	return findAgentBinary(arch)
}
