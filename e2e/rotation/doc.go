// Package rotation holds end-to-end tests of refresh-token rotation with the
// real Codex CLI: codex processes on the host and in containers, each in its
// own copy of one ChatGPT login (host directories, bind-mounted directories,
// Docker named volumes), refresh against a local single-use token server
// while the real `mc-broker watch` keeps the copies in step. The tests
// count refresh-token reuses at the server and check, at the end, which
// holders still hold the one refresh token that works.
//
// The package has only tests; docs/LOCKMIRROR.md and docs/BENCHMARKS.md
// give the facts they rely on and the figures they produced. Linux only:
// the holders run the Linux codex binary, on the host and in containers.
package rotation
