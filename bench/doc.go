// Package bench holds mc-broker's benchmarks: a sync pass over 1, 10 and
// 100 directory copies (in sync already, or all behind the host), the shell
// loops a user would write instead, and the built binary run as a pre-run
// hook; how long a Claude refresh lock takes to be mirrored into every copy
// directory, and a refresh-token simulation that counts logouts with and
// without lock mirroring (locksim_test.go). Everything works on real files
// in temporary directories. Run them
// with `make bench`; docs/BENCHMARKS.md explains the method and the figures.
// Process start: BenchmarkProcessStart, BenchmarkStartupInit and
// TestStartupInitBudget (startup_test.go), and bench/startup.sh, which
// times it with hyperfine next to `true`.
package bench
