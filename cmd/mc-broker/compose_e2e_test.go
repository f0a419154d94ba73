package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const testImage = "mc-broker-test-busybox:latest"

// needCompose returns docker-compose's path, or skips the test when it or
// the engine is missing; under CI=true a missing one fails instead.
func needCompose(t *testing.T) string {
	t.Helper()
	missing := func(format string, args ...any) {
		t.Helper()
		if os.Getenv("CI") == "true" {
			t.Fatalf(format+" (scripts/docker-env.sh sets it up)", args...)
		}
		t.Skipf(format, args...)
	}
	bin, err := exec.LookPath("docker-compose")
	if err != nil {
		missing("docker-compose not installed")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "docker", "image", "inspect", "--format", "{{.Id}}", testImage).CombinedOutput(); err != nil {
		missing("docker engine or %s not available: %v: %s", testImage, err, firstLine(string(out)))
	}
	return bin
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(strings.TrimSpace(s), "\n")
	return line
}

// dockerCompose runs docker-compose for project in dir and returns stdout;
// stderr is only shown when it fails (it holds no secret: the services
// print hashes).
func dockerCompose(t *testing.T, bin, dir, project string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, append([]string{"-p", project, "-f", "compose.yaml", "-f", "compose.mc-broker.yaml"}, args...)...)
	cmd.Dir = dir
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		assertNoSecret(t, "docker-compose output", string(out)+stderr.String())
		t.Fatalf("docker-compose %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return string(out)
}

func sha256File(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

// composeProject writes work/compose.yaml, one service app running script
// in the test image, and work/compose.mc-broker.yaml by mc-broker compose
// with args; it returns the override's path.
func composeProject(t *testing.T, home, work, script string, args ...string) string {
	t.Helper()
	writeFile(t, filepath.Join(work, "compose.yaml"), []byte(`services:
  app:
    image: `+testImage+`
    network_mode: none
    command: ["sh", "-c", "`+script+`"]
`))
	override := filepath.Join(work, "compose.mc-broker.yaml")
	args = append([]string{"compose", "-o", override}, args...)
	if out, errs, code := run(t, home, nil, args...); code != 0 {
		t.Fatalf("mc-broker compose: exit %d\n%s%s", code, out, errs)
	}
	return override
}

func projectName() string {
	return fmt.Sprintf("mcbroker-e2e-%d-%d", os.Getpid(), time.Now().UnixNano()%1e9)
}

// TestComposeServiceSeesCopies is the whole user path: sync writes the
// copies, compose writes the override, a service started by docker-compose
// reads exactly the copies and can write into them (refreshes land), and
// compose check passes the pair of files.
func TestComposeServiceSeesCopies(t *testing.T) {
	bin := needCompose(t)
	home := t.TempDir()
	putFixture(t, "claude/credentials.valid.json", filepath.Join(home, ".claude/.credentials.json"))
	putFixture(t, "codex/auth.chatgpt.json", filepath.Join(home, ".codex/auth.json"))
	work := t.TempDir()
	auth := filepath.Join(work, ".auth")

	if out, errs, code := run(t, home, nil, "sync", "--dir", auth, "--only", "claude,codex"); code != 0 {
		t.Fatalf("sync: exit %d\n%s%s", code, out, errs)
	}
	override := composeProject(t, home, work, "sha256sum /root/.claude/.credentials.json /root/.codex/auth.json && echo refreshed > /root/.claude/written-in-container",
		"--dir", auth, "--service", "app=claude,codex")
	if out, errs, code := run(t, home, nil, "compose", "check", filepath.Join(work, "compose.yaml"), override); code != 0 {
		t.Errorf("compose check on the generated override: exit %d\n%s%s", code, out, errs)
	}

	project := projectName()
	t.Cleanup(func() { dockerCompose(t, bin, work, project, "down", "-v") })
	got := dockerCompose(t, bin, work, project, "run", "--rm", "app")
	assertNoSecret(t, "the service's output", got)
	for _, f := range []string{"claude/.credentials.json", "codex/auth.json"} {
		if want := sha256File(t, filepath.Join(auth, f)); !strings.Contains(got, want) {
			t.Errorf("the service does not see the copy %s (sha256 %s); it printed:\n%s", f, want, got)
		}
	}
	if data, err := os.ReadFile(filepath.Join(auth, "claude", "written-in-container")); err != nil || string(data) != "refreshed\n" {
		t.Errorf("a write inside the container did not reach the host copy (%v): the mount is not read-write", err)
	}
}

// TestComposeVolumesSurviveDownV: the override declares volumes external,
// so `down -v` leaves the login volume alone.
func TestComposeVolumesSurviveDownV(t *testing.T) {
	bin := needCompose(t)
	home := t.TempDir()
	work := t.TempDir()
	// A source name of its own gives a volume name no other test uses.
	name := fmt.Sprintf("e2e%d", time.Now().UnixNano()%1e9)
	volume := "mc-" + name + "-auth"
	cfg := filepath.Join(work, "config.yaml")
	writeFile(t, cfg, []byte("sources:\n  "+name+": {kind: claude}\nsinks:\n  - {source: "+name+", volume: "+volume+"}\n"))
	composeProject(t, home, work, "echo kept > /root/.claude/marker", "--config", cfg, "--volumes", "--service", "app="+name)
	docker := func(args ...string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		out, err := exec.CommandContext(ctx, "docker", args...).CombinedOutput()
		return string(out), err
	}
	if out, err := docker("volume", "create", volume); err != nil {
		t.Fatalf("docker volume create: %v: %s", err, out)
	}
	t.Cleanup(func() { docker("volume", "rm", "-f", volume) })

	project := projectName()
	dockerCompose(t, bin, work, project, "up", "--abort-on-container-exit")
	dockerCompose(t, bin, work, project, "down", "-v")
	if out, err := docker("volume", "inspect", volume); err != nil {
		t.Fatalf("docker compose down -v deleted the external login volume %s: %s", volume, firstLine(out))
	}
	out, err := docker("run", "--rm", "--network", "none", "-v", volume+":/v", testImage, "cat", "/v/marker")
	if err != nil || out != "kept\n" {
		t.Errorf("the volume lost what the service wrote: %v %q", err, out)
	}
}
