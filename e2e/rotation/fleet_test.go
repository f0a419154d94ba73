//go:build linux

package rotation

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mc-broker/mc-broker/broker/testenv"
	"github.com/mc-broker/mc-broker/sinks/volume/engine"
	"github.com/mc-broker/mc-broker/sinks/volume/volumetest"
)

// kind is where a holder's codex runs and what it uses as its ~/.codex.
type kind string

const (
	onHost   kind = "host"   // on the host, in the host's own ~/.codex (the source)
	inDir    kind = "dir"    // on the host, in a directory copy
	inBind   kind = "bind"   // in a container, a directory copy bind-mounted as ~/.codex
	inVolume kind = "volume" // in a container, a volume copy mounted as ~/.codex
)

// holder is one user of the login: codex processes run one after the
// other, each for a few model turns, in one ~/.codex.
type holder struct {
	name      string
	kind      kind
	dir       string // the host directory of its ~/.codex (host, dir, bind)
	volume    string // the volume (volume)
	container string // its container (bind, volume)
	home      string // HOME of a codex on the host

	runs, failed int
	lastFailure  string // the end of the last failed run's output, tokens masked
}

// fleetSpec is one run's set-up.
type fleetSpec struct {
	kinds []kind
	// broker keeps the copies in step; with none every holder must be
	// onHost (one shared directory).
	broker broker
	// duration of the run; fresh is how long each new login stays fresh.
	duration, fresh time.Duration
}

// broker is what keeps the copies in step with the host's login.
type broker string

const (
	noBroker broker = ""
	watch    broker = "mc-broker watch" // the real binary, as a user runs it
	// The test-only prototype of hold_test.go, over directories: fan-out
	// alone, and fan-out with each way tried to keep all codex processes
	// but one from refreshing.
	protoFanOut broker = "prototype fan-out"
	protoBump   broker = "prototype fan-out + bump"
	protoHold   broker = "prototype fan-out + account hold"
)

// fleet is one run: the host's login, its copies, the holders, the token
// server, and mc-broker watch.
type fleet struct {
	t      *testing.T
	spec   fleetSpec
	root   string
	home   string // the host user's HOME; the source is home/.codex/auth.json
	state  string // XDG_STATE_HOME
	codex  string // the native codex binary
	srv    *fakeOpenAI
	engine *engine.Engine
	holder []*holder
	watch  *exec.Cmd
	log    *testenv.Buffer
	proto  *protoBroker
}

// result is what one run saw.
type result struct {
	Spec     string
	Holders  []holderResult
	Granted  int // refreshes granted in total
	Reuses   int // refresh_token_reused answers in total
	Adopted  int // logins mc-broker took back from copies
	Duration time.Duration
	Proto    *protoStats `json:",omitempty"`
}

type holderResult struct {
	Name, Kind string
	holderStats
	Runs, Failed int
	// StalePct is the share of once-a-second samples in which the
	// holder's store was behind (see fakeOpenAI.stale).
	StalePct float64
	Fate     string // "live": holds the refresh token that works; "logged-out": holds a spent one
}

// loggedOut counts holders whose store holds a spent refresh token.
func (r result) loggedOut(kinds ...kind) int {
	n := 0
	for _, h := range r.Holders {
		if h.Fate != "live" && (len(kinds) == 0 || hasKind(kinds, h.Kind)) {
			n++
		}
	}
	return n
}

// reusesPerHolder is the mean number of reuses of the holders of kinds.
func (r result) reusesPerHolder(kinds ...kind) float64 {
	n, sum := 0, 0
	for _, h := range r.Holders {
		if hasKind(kinds, h.Kind) {
			n++
			sum += h.Reuses
		}
	}
	if n == 0 {
		return 0
	}
	return float64(sum) / float64(n)
}

func hasKind(kinds []kind, k string) bool {
	for _, x := range kinds {
		if string(x) == k {
			return true
		}
	}
	return false
}

func (r result) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %d refreshes granted, %d refresh-token reuses, %d logins adopted from copies, %d of %d holders logged out\n",
		r.Spec, r.Granted, r.Reuses, r.Adopted, r.loggedOut(), len(r.Holders))
	if r.Proto != nil {
		fmt.Fprintf(&b, "  prototype: %d holds, %d writes to hold codex off, %d holds timed out\n", r.Proto.Elections, r.Proto.Bumps, r.Proto.Timeouts)
	}
	fmt.Fprintf(&b, "  %-10s %-6s %9s %6s %8s %6s %5s %6s %6s  %s\n", "holder", "kind", "refreshes", "reuses", "rejected", "turns", "runs", "failed", "stale", "fate")
	for _, h := range r.Holders {
		fmt.Fprintf(&b, "  %-10s %-6s %9d %6d %8d %6d %5d %6d %5.1f%%  %s\n", h.Name, h.Kind, h.Refreshes, h.Reuses, h.Rejected, h.Turns, h.Runs, h.Failed, h.StalePct, h.Fate)
	}
	return b.String()
}

// codexBinary finds the native codex binary the npm package ships (a static
// musl binary, so it also runs in the FROM-scratch test image): from the
// codex on PATH (scripts/test-env.sh installs it), or skips, or fails under
// CI=true.
func codexBinary(t testing.TB) string {
	t.Helper()
	need := func(format string, args ...any) string {
		t.Helper()
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI=true: "+format+" (make test installs it: scripts/test-env.sh)", args...)
		}
		t.Skipf(format+"; make test installs it", args...)
		return ""
	}
	wrapper, err := exec.LookPath("codex")
	if err != nil {
		return need("codex not on PATH")
	}
	wrapper, err = filepath.EvalSymlinks(wrapper)
	if err != nil {
		return need("codex: %v", err)
	}
	// node_modules/@openai/codex/bin/codex.js -> node_modules
	modules := filepath.Dir(filepath.Dir(filepath.Dir(filepath.Dir(wrapper))))
	found, _ := filepath.Glob(filepath.Join(modules, "@openai", "codex-linux-*", "vendor", "*-linux-musl", "bin", "codex"))
	if len(found) == 0 {
		return need("no native codex binary under %s", modules)
	}
	return found[0]
}

// newFleet sets up a run: a host login from the token server, copies for
// every non-host holder, their containers, and (if spec.watch) the real
// mc-broker watch, ready.
func newFleet(t *testing.T, spec fleetSpec) *fleet {
	t.Helper()
	f := &fleet{t: t, spec: spec, codex: codexBinary(t), log: &testenv.Buffer{}}
	f.root = t.TempDir()
	f.home = filepath.Join(f.root, "home")
	f.state = filepath.Join(f.root, "state")
	f.srv = newFakeOpenAI(t, spec.fresh)
	source := filepath.Join(f.home, ".codex")
	if err := os.MkdirAll(source, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(source, "auth.json"), authJSON(f.srv.first()), 0o600); err != nil {
		t.Fatal(err)
	}
	containers := false
	for _, k := range spec.kinds {
		containers = containers || k == inBind || k == inVolume
	}
	if containers {
		_, f.engine = volumetest.NeedEngine(t)
	}

	var sinks strings.Builder
	count := map[kind]int{}
	for _, k := range spec.kinds {
		count[k]++
		h := &holder{name: fmt.Sprintf("%s-%d", k, count[k]), kind: k}
		h.home = filepath.Join(f.root, "holders", h.name)
		if err := os.MkdirAll(h.home, 0o700); err != nil {
			t.Fatal(err)
		}
		switch k {
		case onHost:
			h.dir = source
		case inDir, inBind:
			h.dir = filepath.Join(f.root, "copies", h.name)
			fmt.Fprintf(&sinks, "  - source: codex\n    dir: %s\n", h.dir)
		case inVolume:
			h.volume = volumetest.UniqueVolume(t, f.engine)
			fmt.Fprintf(&sinks, "  - source: codex\n    volume: %s\n", h.volume)
		}
		f.holder = append(f.holder, h)
	}
	switch spec.broker {
	case noBroker:
		for _, h := range f.holder {
			if h.kind != onHost {
				t.Fatalf("holder %s needs a copy, and copies need a broker", h.name)
			}
		}
		return f
	case protoFanOut, protoBump, protoHold:
		f.startProto(map[broker]protoMode{protoFanOut: fanOutOnly, protoBump: bump, protoHold: accountHold}[spec.broker])
		for _, h := range f.holder {
			if h.kind == inBind {
				f.startContainer(h)
			}
		}
		return f
	}
	cfg := filepath.Join(f.root, "config.yaml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf("sources:\n  codex:\n    path: %s\nsinks:\n%s", filepath.Join(source, "auth.json"), sinks.String())), 0o600); err != nil {
		t.Fatal(err)
	}
	f.startWatch(cfg)
	// The first pass wrote every copy; a container starts only once its
	// copy holds the login (a volume is created by that write).
	for _, h := range f.holder {
		f.waitStore(h)
		if h.kind == inBind || h.kind == inVolume {
			f.startContainer(h)
		}
	}
	return f
}

// startWatch runs the real mc-broker watch on cfg (default poll interval,
// as a user runs it) and waits for its first pass.
func (f *fleet) startWatch(cfg string) {
	t := f.t
	cmd := exec.Command(mcBroker(t), "watch", "--config", cfg, "--log-format", "json", "--log-level", "info")
	cmd.Env = []string{"HOME=" + f.home, "PATH=" + os.Getenv("PATH"), "XDG_STATE_HOME=" + f.state, "DOCKER_HOST=unix://" + filepath.Join(f.root, "no-docker.sock")}
	if f.engine != nil {
		cmd.Env = append(cmd.Env, "DOCKER_HOST="+f.engine.Endpoint.Host)
	}
	cmd.Stderr = f.log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	f.watch = cmd
	t.Cleanup(func() {
		if f.watch != nil {
			_ = f.watch.Process.Kill()
			_ = f.watch.Wait()
		}
		assertNoSecret(t, "mc-broker watch logs", f.log.String())
		if t.Failed() {
			t.Logf("mc-broker watch logs:\n%s", f.log.String())
		}
	})
	waitFor(t, 30*time.Second, "mc-broker watch to finish its first pass", func() (bool, string) {
		_, err := os.Stat(filepath.Join(f.state, "mc-broker", "watch.json"))
		return err == nil, "no state file yet"
	})
}

// stopWatch stops the watcher as a service manager would; it must exit 0.
func (f *fleet) stopWatch() {
	if f.watch == nil {
		return
	}
	_ = f.watch.Process.Signal(syscall.SIGTERM)
	err := f.watch.Wait()
	f.watch = nil
	if err != nil {
		f.t.Errorf("mc-broker watch: %v", err)
	}
}

// readStore reads the holder's auth.json.
func (f *fleet) readStore(h *holder) ([]byte, error) {
	if h.kind != inVolume {
		return os.ReadFile(filepath.Join(h.dir, "auth.json"))
	}
	if h.container != "" {
		return exec.Command("docker", "exec", h.container, "cat", "/root/.codex/auth.json").Output()
	}
	return exec.Command("docker", "run", "--rm", "--network", "none", "-v", h.volume+":/d", volumetest.Image, "cat", "/d/auth.json").Output()
}

// sampleStore reads the holder's auth.json for the once-a-second sample;
// the prototype is told the open is not a codex's.
func (f *fleet) sampleStore(h *holder) ([]byte, error) {
	if f.proto != nil && h.kind != inVolume {
		f.proto.expectOpens(h.dir, 1)
		data, err := f.readStore(h)
		if err != nil {
			f.proto.expectOpens(h.dir, -1)
		}
		return data, err
	}
	return f.readStore(h)
}

func (f *fleet) waitStore(h *holder) {
	waitFor(f.t, 30*time.Second, h.name+"'s copy", func() (bool, string) {
		data, err := f.readStore(h)
		return err == nil && refreshTokenOf(data) != "", fmt.Sprintf("%v", err)
	})
}

// startContainer starts the holder's container: the test image with the
// codex binary and the holder's copy mounted, on the host's network so
// that it reaches the token server on 127.0.0.1. It idles; each codex run
// is a docker exec.
func (f *fleet) startContainer(h *holder) {
	t := f.t
	h.container = fmt.Sprintf("mc-broker-test-codex-%d-%d-%s", os.Getpid(), time.Now().UnixNano()%1e6, h.name)
	store := h.dir
	if h.kind == inVolume {
		store = h.volume
	}
	out, err := exec.Command("docker", "run", "-d", "--rm", "--name", h.container, "--network", "host",
		"-v", f.codex+":/codex:ro", "-v", store+":/root/.codex", "-e", "HOME=/root",
		volumetest.Image, "sleep", fmt.Sprint(int((f.spec.duration + 10*time.Minute).Seconds()))).CombinedOutput()
	if err != nil {
		t.Fatalf("docker run %s: %v\n%s", h.name, err, out)
	}
	t.Cleanup(func() { exec.Command("docker", "rm", "-f", h.container).Run() })
}

// codexArgs is one codex run: turns model turns against the fake backend,
// with everything that would call other services switched off.
func (f *fleet) codexArgs(h *holder, turns int) []string {
	base := f.srv.url + "/h/" + h.name
	args := []string{"exec", "--skip-git-repo-check", "--ephemeral", "--ignore-user-config",
		"-c", "model=gpt-5", "-c", "model_provider=fake",
		"-c", fmt.Sprintf("chatgpt_base_url=%q", base+"/backend-api"),
		"-c", fmt.Sprintf("model_providers.fake={name=\"fake\", base_url=%q, wire_api=\"responses\", requires_openai_auth=true}", base+"/v1"),
		"-c", "check_for_update_on_startup=false", "-c", "analytics.enabled=false"}
	for _, feature := range []string{"apps", "plugins", "remote_plugin", "shell_snapshot", "hooks", "skill_search", "tool_suggest", "multi_agent", "image_generation", "browser_use", "computer_use"} {
		args = append(args, "--disable", feature)
	}
	return append(args, fmt.Sprintf("turns %d", turns))
}

// runOnce runs one codex process for the holder and records its outcome.
func (f *fleet) runOnce(h *holder, turns int) {
	refreshURL := f.srv.url + "/h/" + h.name + "/oauth/token"
	var cmd *exec.Cmd
	if h.container != "" {
		args := append([]string{"exec", "-e", "CODEX_HOME=/root/.codex", "-e", "CODEX_REFRESH_TOKEN_URL_OVERRIDE=" + refreshURL, h.container, "/codex"}, f.codexArgs(h, turns)...)
		cmd = exec.Command("docker", args...)
	} else {
		cmd = exec.Command(f.codex, f.codexArgs(h, turns)...)
		cmd.Dir = h.home
		cmd.Env = []string{"HOME=" + h.home, "PATH=/usr/bin:/bin", "CODEX_HOME=" + h.dir, "CODEX_REFRESH_TOKEN_URL_OVERRIDE=" + refreshURL}
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	h.runs++
	if err != nil {
		h.failed++
		tail := out.String()
		if len(tail) > 2000 {
			tail = tail[len(tail)-2000:]
		}
		h.lastFailure = fmt.Sprintf("%v: %s", err, maskTokens(tail))
	}
}

var tokenPattern = regexp.MustCompile(`eyJ[A-Za-z0-9_.-]+|rt_[A-Za-z0-9_-]+`)

// maskTokens hides anything that looks like a token in codex's output.
func maskTokens(s string) string { return tokenPattern.ReplaceAllString(s, "<token>") }

// run lets every holder use the login for the spec's duration, then
// collects the fates: which store holds the refresh token that still works.
func (f *fleet) run() result {
	t := f.t
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), f.spec.duration)
	defer cancel()
	var wg sync.WaitGroup
	stale, samples := map[string]int{}, 0
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			samples++
			for _, h := range f.holder {
				if data, err := f.sampleStore(h); err == nil && f.srv.stale(refreshTokenOf(data)) {
					stale[h.name]++
				}
			}
		}
	}()
	for i, h := range f.holder {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Spread the starts over a turn, so that holders are not in lockstep.
			time.Sleep(f.srv.turn * time.Duration(i) / time.Duration(len(f.holder)))
			for ctx.Err() == nil {
				f.runOnce(h, 4+rand.N(12))
			}
		}()
	}
	<-ctx.Done()
	<-sampled
	f.srv.close() // every codex process ends at its next turn
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(2 * time.Minute):
		t.Fatal("codex processes still running 2 minutes after the run ended")
	}

	// Directory copies follow within milliseconds; volume copies only at
	// the watcher's next poll. 2 s is the settling time every holder gets.
	var stores map[string][]byte
	settle := time.Now().Add(2 * time.Second)
	for {
		stores = map[string][]byte{}
		same := true
		live := f.srv.live()
		for _, h := range f.holder {
			data, err := f.readStore(h)
			if err != nil {
				t.Logf("%s: reading its login: %v", h.name, err)
			}
			stores[h.name] = data
			same = same && refreshTokenOf(data) == live
		}
		if same || time.Now().After(settle) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	adopted := strings.Count(f.log.String(), "adopted a newer login from a copy")
	f.stopWatch()

	r := result{Spec: f.spec.name(), Adopted: adopted, Duration: time.Since(start)}
	if f.proto != nil {
		st := f.proto.stop()
		r.Proto, r.Adopted = &st, st.Adopted
		if os.Getenv("MC_BROKER_ROTATION_TRACE") != "" {
			all := append(append([]string{}, f.proto.trace...), f.srv.trace...)
			sort.Strings(all)
			os.WriteFile(os.Getenv("MC_BROKER_ROTATION_TRACE"), []byte(strings.Join(all, "\n")), 0o644)
		}
	}
	stats := f.srv.snapshot()
	live := f.srv.live()
	for _, h := range f.holder {
		st := stats[h.name]
		fate := "live"
		if rt := refreshTokenOf(stores[h.name]); rt != live {
			fate = "logged-out"
			if !f.srv.isSpent(rt) {
				fate = "unknown-token"
			}
		}
		r.Holders = append(r.Holders, holderResult{Name: h.name, Kind: string(h.kind), holderStats: st, Runs: h.runs, Failed: h.failed, StalePct: 100 * float64(stale[h.name]) / float64(max(samples, 1)), Fate: fate})
		r.Granted += st.Refreshes
		r.Reuses += st.Reuses
		if h.failed > 0 {
			t.Logf("%s: %d of %d codex runs failed; the last: %s", h.name, h.failed, h.runs, h.lastFailure)
		}
	}
	sort.SliceStable(r.Holders, func(i, j int) bool { return r.Holders[i].Name < r.Holders[j].Name })
	return r
}

func (s fleetSpec) name() string {
	count := map[kind]int{}
	var order []kind
	for _, k := range s.kinds {
		if count[k] == 0 {
			order = append(order, k)
		}
		count[k]++
	}
	var parts []string
	for _, k := range order {
		parts = append(parts, fmt.Sprintf("%d %s", count[k], k))
	}
	how := "one shared directory, no broker"
	if s.broker != noBroker {
		how = string(s.broker)
	}
	return fmt.Sprintf("%s (%s, %v, fresh %v)", strings.Join(parts, " + "), how, s.duration, s.fresh)
}

// secrets are substrings of every token the fake server issues.
var secrets = []string{"FAKE", "eyJ", "rt_"}

func assertNoSecret(t *testing.T, what, out string) {
	t.Helper()
	for _, s := range secrets {
		if i := strings.Index(out, s); i >= 0 {
			t.Errorf("%s show a secret: %q at byte %d (output not repeated here)", what, s, i)
		}
	}
}

// waitFor polls cond every few milliseconds until it holds, and fails the
// test with cond's last word if it does not within timeout.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() (bool, string)) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		ok, why := cond()
		if ok {
			return time.Since(start)
		}
		if time.Since(start) > timeout {
			t.Fatalf("waited %v for %s: %s", timeout, what, why)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

var (
	buildOnce sync.Once
	binPath   string
	binErr    error
)

// mcBroker builds the real binary once.
func mcBroker(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "mc-broker-rotation-")
		if err != nil {
			binErr = err
			return
		}
		binPath = filepath.Join(dir, "mc-broker")
		// Static (as make build makes it): the binary is also the volume
		// copies' resident agent, which runs in an empty image.
		cmd := exec.Command("go", "build", "-o", binPath, "github.com/mc-broker/mc-broker/cmd/mc-broker")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			binErr = fmt.Errorf("building mc-broker: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binPath != "" {
		os.RemoveAll(filepath.Dir(binPath))
	}
	os.Exit(code)
}
