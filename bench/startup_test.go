package bench

import (
	"bytes"
	"fmt"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// packageInit is one line of GODEBUG=inittrace=1: a package's
// initialisation, its clock time and what it allocated.
type packageInit struct {
	pkg   string
	ms    float64
	bytes int
}

// initTrace runs `mc-broker version` with GODEBUG=inittrace=1 and returns
// what each package's initialisation cost.
func initTrace(tb testing.TB, bin, home string) []packageInit {
	tb.Helper()
	cmd := exec.Command(bin, "version")
	cmd.Env = []string{"HOME=" + home, "GODEBUG=inittrace=1"}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		tb.Fatalf("mc-broker version: %v\n%s", err, stderr.Bytes())
	}
	var inits []packageInit
	for _, line := range strings.Split(stderr.String(), "\n") {
		// init PKG @0.12 ms, 0.034 ms clock, 1234 bytes, 5 allocs
		f := strings.Fields(line)
		if len(f) < 11 || f[0] != "init" || f[6] != "clock," || f[8] != "bytes," {
			continue
		}
		ms, err1 := strconv.ParseFloat(f[4], 64)
		n, err2 := strconv.Atoi(f[7])
		if err1 != nil || err2 != nil {
			tb.Fatalf("cannot read inittrace line %q", line)
		}
		inits = append(inits, packageInit{f[1], ms, n})
	}
	if len(inits) == 0 {
		tb.Fatalf("no inittrace lines:\n%s", stderr.Bytes())
	}
	return inits
}

// Init-time allocation budgets. Time is what a user waits for, but it
// varies with the machine's load; what a package allocates while it
// initialises does not, and follows its time (compiled regexps, schema
// tables). compose-go's schema library allocated 1.7 MB, distribution/
// reference 0.4 MB, go-digest 90 kB, yaml v3 25 kB (the last three now
// patched in third_party); everything mc-broker links allocates about
// 0.1 MB, encoding/xml (18 kB, through the launchd plist) the most.
const (
	initBytesBudget       = 128 << 10
	packageInitBytesLimit = 24 << 10
)

// TestStartupInitBudget keeps package initialisation, which every
// command (and so every pre-run hook) pays before it does anything, from
// growing back: a dependency that compiles a schema or a pile of regexps
// at init shows up here.
func TestStartupInitBudget(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	inits := initTrace(t, mcBroker(t), t.TempDir())
	sort.Slice(inits, func(i, j int) bool { return inits[i].bytes > inits[j].bytes })
	total := 0
	for _, in := range inits {
		total += in.bytes
	}
	top := func() string {
		var b strings.Builder
		for _, in := range inits[:min(5, len(inits))] {
			fmt.Fprintf(&b, "\n  %s: %d kB, %.2f ms", in.pkg, in.bytes>>10, in.ms)
		}
		return b.String()
	}
	if total > initBytesBudget {
		t.Errorf("package initialisation allocates %d kB, budget %d kB (GODEBUG=inittrace=1 mc-broker version); largest:%s",
			total>>10, initBytesBudget>>10, top())
	}
	if in := inits[0]; in.bytes > packageInitBytesLimit {
		t.Errorf("%s allocates %d kB when it initialises (limit %d kB): every mc-broker start pays for it; largest:%s",
			in.pkg, in.bytes>>10, packageInitBytesLimit>>10, top())
	}
}

// BenchmarkStartupInit reports package initialisation as
// GODEBUG=inittrace=1 sees it: the clock time summed over packages
// (init-ms/op) and what they allocate (init-B/op), per `mc-broker
// version`. ns/op includes writing the trace.
func BenchmarkStartupInit(b *testing.B) {
	bin, home := mcBroker(b), b.TempDir()
	var ms float64
	var allocated int
	for b.Loop() {
		for _, in := range initTrace(b, bin, home) {
			ms += in.ms
			allocated += in.bytes
		}
	}
	b.ReportMetric(ms/float64(b.N), "init-ms/op")
	b.ReportMetric(float64(allocated)/float64(b.N), "init-B/op")
}
