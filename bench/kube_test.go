package bench

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mc-broker/mc-broker/broker/testenv"
	"github.com/mc-broker/mc-broker/broker/watch"
	"github.com/mc-broker/mc-broker/sinks/secret"
	"github.com/mc-broker/mc-broker/sinks/secret/kube"
	"github.com/mc-broker/mc-broker/sinks/secret/kubetest"
)

// The Kubernetes benchmarks run against a real kube-apiserver and etcd
// (scripts/k8s-env.sh builds them; kubetest starts a private pair per
// benchmark), on this machine's loopback.

// kubeEnv is a host login (env), a namespace on a fresh API server and
// the Secret copy the host keeps there.
type kubeEnv struct {
	*env
	srv  *kubetest.Server
	ns   string
	sink *secret.Sink
}

func newKubeEnv(tb testing.TB) *kubeEnv {
	tb.Helper()
	srv := kubetest.New(tb)
	k := &kubeEnv{env: newEnv(tb, 0), srv: srv, ns: srv.Namespace(tb)}
	k.sink = secret.New(secret.Options{
		Namespace: k.ns, Name: "logins", Key: copyFile, Kubeconfig: srv.Kubeconfig,
		Clients: secret.NewClients(func(string) string { return "" }, ""),
	})
	return k
}

// secretWrite is one host write of a newer login into the Secret, as a
// sync pass makes it: read, decide, conditional update.
func (k *kubeEnv) secretWrite(ctx context.Context) (time.Duration, error) {
	k.expiry++
	want := k.loginBytes(k.expiry)
	start := time.Now()
	err := k.sink.Update(ctx, func([]byte, bool) ([]byte, bool) { return want, true })
	took := time.Since(start)
	if err != nil {
		return 0, err
	}
	got, err := k.sink.Read(ctx)
	if err != nil || !bytes.Equal(got, want) {
		return 0, fmt.Errorf("the Secret does not hold the login written (%v)", err)
	}
	return took, nil
}

// BenchmarkSecretWrite: the host writes a newer login into the Secret (GET
// and a resourceVersion-conditioned PUT through the real API server, which
// stores it in etcd with fsync).
func BenchmarkSecretWrite(b *testing.B) {
	k := newKubeEnv(b)
	ctx := context.Background()
	if _, err := k.secretWrite(ctx); err != nil { // creates it
		b.Fatal(err)
	}
	var lat latencies
	b.ResetTimer()
	for range b.N {
		d, err := k.secretWrite(ctx)
		if err != nil {
			b.Fatal(err)
		}
		lat = append(lat, d)
	}
	b.StopTimer()
	lat.report(b)
}

// BenchmarkKubectlApplySecret is what a user would do instead of a Secret
// copy: render the Secret from the login file with kubectl and apply it,
// two kubectl processes per write. MC_BROKER_BENCH_KUBECTL names the
// kubectl to use (default: kubectl on PATH).
func BenchmarkKubectlApplySecret(b *testing.B) {
	kubectl := os.Getenv("MC_BROKER_BENCH_KUBECTL")
	if kubectl == "" {
		var err error
		if kubectl, err = exec.LookPath("kubectl"); err != nil {
			b.Skip("no kubectl")
		}
	}
	k := newKubeEnv(b)
	script := `set -e; "$0" create secret generic logins -n "$1" --from-file=.credentials.json="$2" --dry-run=client -o yaml | "$0" apply -f - >/dev/null`
	var lat latencies
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		k.expiry++
		k.writeSource(b)
		b.StartTimer()
		start := time.Now()
		cmd := exec.Command("sh", "-c", script, kubectl, k.ns, k.source)
		cmd.Env = []string{"KUBECONFIG=" + k.srv.Kubeconfig, "PATH=" + os.Getenv("PATH"), "HOME=" + k.home}
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("kubectl: %v\n%s", err, out)
		}
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	lat.report(b)
}

// takeBack is a pod (a directory standing in for its emptyDir, with the
// real `mc-broker agent` sidecar) and the host's real `mc-broker watch`,
// both on one Secret.
type takeBack struct {
	*kubeEnv
	podDir  string
	arrived *arrivals        // the host's login directory
	secret  chan secretEvent // what the benchmark's own API watch saw
}

type secretEvent struct {
	at   time.Time
	data []byte
}

// pollInterval is the host watcher's --poll-interval: today's watcher asks
// the Secret copy whether its API watch saw a change on this interval (an
// in-memory check, no request), so it bounds the Secret-to-host leg.
const pollInterval = 10 * time.Millisecond

func newTakeBack(tb testing.TB) *takeBack {
	tb.Helper()
	k := newKubeEnv(tb)
	t := &takeBack{kubeEnv: k, podDir: filepath.Join(k.root, "pod", ".claude"), secret: make(chan secretEvent, 64)}
	if err := os.MkdirAll(t.podDir, 0o777); err != nil {
		tb.Fatal(err)
	}
	cfg := filepath.Join(k.root, "config.yaml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf("sources:\n  claude: {path: %s}\nsinks:\n  - {source: claude, secret: %s/logins, kubeconfig: %s}\n", k.source, k.ns, k.srv.Kubeconfig)), 0o600); err != nil {
		tb.Fatal(err)
	}
	bin := mcBroker(tb)
	run := func(args ...string) *exec.Cmd {
		cmd := exec.Command(bin, args...)
		cmd.Env = []string{"HOME=" + k.home, "PATH=" + os.Getenv("PATH"), "XDG_STATE_HOME=" + k.state}
		return cmd
	}
	if out, err := run("sync", "--config", cfg).CombinedOutput(); err != nil {
		tb.Fatalf("sync: %v\n%s", err, out)
	}
	agentArgs := []string{"agent", "--secret", k.ns + "/logins", "--cli", "claude=" + t.podDir, "--kubeconfig", k.srv.Kubeconfig, "--lock-dir", filepath.Join(k.root, "agent-locks")}
	if out, err := run(append(agentArgs, "--once")...).CombinedOutput(); err != nil {
		tb.Fatalf("agent --once: %v\n%s", err, out)
	}
	background := func(ready func(cmd *exec.Cmd, logs string) bool, args ...string) {
		cmd := run(args...)
		var logs testenv.Buffer
		cmd.Stderr = &logs
		if err := cmd.Start(); err != nil {
			tb.Fatal(err)
		}
		exited := make(chan struct{})
		go func() { _ = cmd.Wait(); close(exited) }()
		tb.Cleanup(func() { _ = cmd.Process.Kill(); <-exited })
		deadline := time.Now().Add(watchTimeout)
		for !ready(cmd, logs.String()) {
			select {
			case <-exited:
				tb.Fatalf("%s exited early:\n%s", args[0], logs.String())
			default:
			}
			if time.Now().After(deadline) {
				tb.Fatalf("%s not ready:\n%s", args[0], logs.String())
			}
			time.Sleep(time.Millisecond)
		}
	}
	background(func(_ *exec.Cmd, logs string) bool { return strings.Contains(logs, "watching 1 login(s)") }, agentArgs...)
	// The watcher is ready once its first pass is done: its state file
	// names its pid.
	background(func(cmd *exec.Cmd, _ string) bool {
		st, _ := watch.ReadState(filepath.Join(k.state, "mc-broker"))
		return st != nil && st.PID == cmd.Process.Pid
	}, "watch", "--config", cfg, "--log-format", "json", "--poll-interval", pollInterval.String())
	t.arrived = watchDirs(tb, filepath.Dir(k.source))

	ctx, cancel := context.WithCancel(context.Background())
	tb.Cleanup(cancel)
	go func() {
		_ = k.srv.Admin().WatchSecret(ctx, k.ns, "logins", "", func(ev kube.SecretEvent) error {
			if ev.Secret != nil {
				select {
				case t.secret <- secretEvent{time.Now(), ev.Secret.Data[copyFile]}:
				default:
				}
			}
			return nil
		})
	}()
	return t
}

// step is one refresh in the pod (a newer login renamed into its
// directory, as Claude Code writes it), timed until the Secret holds it and
// until the host's file does.
func (t *takeBack) step() (toSecret, toHost time.Duration, err error) {
	t.expiry++
	want := expiryKey(t.expiry)
	t.arrived.drain()
	start := time.Now()
	if err := replaceFile(filepath.Join(t.podDir, copyFile), t.loginBytes(t.expiry)); err != nil {
		return 0, 0, err
	}
	timeout := time.After(watchTimeout)
	for toSecret == 0 {
		select {
		case ev := <-t.secret:
			if bytes.Contains(ev.data, want) {
				toSecret = ev.at.Sub(start)
			}
		case <-timeout:
			return 0, 0, fmt.Errorf("the Secret did not get the pod's refresh within %v", watchTimeout)
		}
	}
	if err := t.arrived.wait([]string{t.source}, want); err != nil {
		return 0, 0, err
	}
	return toSecret, time.Since(start), nil
}

// BenchmarkSecretTakeBack: a refresh in a pod's directory, through the
// sidecar into the Secret, through the API watch to the host's watcher and
// into the host's login file. Reports both legs.
func BenchmarkSecretTakeBack(b *testing.B) {
	t := newTakeBack(b)
	var toSecret, toHost latencies
	b.ResetTimer()
	for range b.N {
		s, h, err := t.step()
		if err != nil {
			b.Fatal(err)
		}
		toSecret, toHost = append(toSecret, s), append(toHost, h)
	}
	b.StopTimer()
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	b.ReportMetric(ms(toSecret.percentile(0.50)), "to-secret-p50-ms")
	b.ReportMetric(ms(toSecret.percentile(0.99)), "to-secret-p99-ms")
	toHost.report(b)
}

// TestKubeScenarios runs the Kubernetes benchmarks' steps a few times, so
// that CI catches one that stopped measuring what it says.
func TestKubeScenarios(t *testing.T) {
	if testing.Short() {
		t.Skip("starts an API server and builds the binary")
	}
	k := newKubeEnv(t)
	for range 3 {
		d, err := k.secretWrite(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("secret write: %v", d)
	}
	tb := newTakeBack(t)
	for range 3 {
		s, h, err := tb.step()
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("take-back: Secret %v, host %v", s, h)
	}
}
