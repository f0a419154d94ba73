// Package resident is the in-engine side of a volume copy's resident agent:
// `mc-broker vol-agent`, mc-broker's own static Linux binary running in
// a container (no network, read-only root, no capabilities, the copies'
// user) that mounts mc-broker's volumes on one engine. It is a transport,
// not a decider: it reports each login file's bytes and changes (inotify),
// and performs conditional writes (the write happens only if the file
// still holds what the host decided on) with the directory sink's code:
// temp file + fsync + rename, the CLI's own locks, O_NOFOLLOW bounded
// reads. Every decision (newest wins, never a broken login, the trust
// rules) stays on the host, in broker.Plan, which judges whatever the
// agent reports like any other untrusted copy.
//
// The protocol is JSON lines on stdin (requests) and stdout (answers and
// events), each line at most MaxLine bytes. docs/VOLUMES.md describes it.
package resident

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"path"
	"strings"
)

// Version is the protocol's version, sent in the hello line: a host that
// speaks another one does not use the agent.
const Version = 1

// MaxLine caps one protocol line, either way: a read returns at most
// credential.MaxSize+1 bytes (1 MiB and one: an oversized file is judged
// broken by the host, never read whole), base64 makes that about 1.4 MiB.
const MaxLine = 2 << 20

// Request is one line from the host.
type Request struct {
	ID int `json:"id"`
	// Op is "read", "write", "add", or one on Claude's refresh lock in
	// the file's directory (lockmirror.Local does them): "lockstat",
	// "lockmk", "lockrm", "ownerw" (Data: the owner's JSON), "ownerr",
	// "ownerrm".
	Op string `json:"op"`
	// File is the index of the login file (the order of --file).
	File int `json:"file"`
	// Data is what to write (write, add).
	Data []byte `json:"data,omitempty"`
	// Expect is what the file must hold for a write to happen: Absent, or
	// the SHA-256 (hex) of its bytes (Sum).
	Expect string `json:"expect,omitempty"`
	// Name is the companion file's name (add).
	Name string `json:"name,omitempty"`
}

// Absent is Request.Expect for "no file there".
const Absent = "absent"

// Reply is one line to the host: an answer (ID > 0) or an event (Event
// set).
type Reply struct {
	ID int `json:"id,omitempty"`
	// Event is "hello" (first line: Version and the files), or "changed"
	// (File may have changed: read it).
	Event   string `json:"ev,omitempty"`
	Version int    `json:"v,omitempty"`
	Files   int    `json:"files,omitempty"`
	File    int    `json:"file"`
	// Err is a failure of the request, said for people (never content).
	Err string `json:"err,omitempty"`
	// NotExist is set when Err is because the file (or its directory) is
	// not there.
	NotExist bool `json:"notexist,omitempty"`
	// Exists and Data are the file (read; write when Changed).
	Exists bool   `json:"exists,omitempty"`
	Data   []byte `json:"data,omitempty"`
	// Written: the write (or add) happened. Changed: the file no longer
	// held what Expect said, nothing was written, and Exists/Data are what
	// it holds now: decide again.
	Written bool `json:"written,omitempty"`
	Changed bool `json:"changed,omitempty"`
	// Exist is set when Err is because something is there already
	// (lockmk).
	Exist bool `json:"exist,omitempty"`
	// Lock is the refresh lock directory beside the file (lockstat); nil
	// when there is none.
	Lock *Lock `json:"lock,omitempty"`
}

// Lock identifies Claude's refresh lock directory (lockmirror.LockID), and
// says whether it is a directory.
type Lock struct {
	Dev, Ino    uint64
	Ctime, Born int64
	IsDir       bool
}

// Sum is Request.Expect for a file holding data.
func Sum(data []byte) string {
	h := sha256.Sum256(data)
	return hex.EncodeToString(h[:])
}

// FileSpec is one login file the agent serves: an absolute path, the
// CLI's lock files and mkdir-style write lock in its directory.
type FileSpec struct {
	Path      string
	LockFiles []string
	WriteLock string
}

// String is the spec as --file takes it: PATH[;flock=A,B][;dirlock=D].
func (f FileSpec) String() string {
	s := f.Path
	if len(f.LockFiles) > 0 {
		s += ";flock=" + strings.Join(f.LockFiles, ",")
	}
	if f.WriteLock != "" {
		s += ";dirlock=" + f.WriteLock
	}
	return s
}

// ParseFileSpec reads a --file value.
func ParseFileSpec(v string) (FileSpec, error) {
	parts := strings.Split(v, ";")
	f := FileSpec{Path: parts[0]}
	if !path.IsAbs(f.Path) || path.Clean(f.Path) != f.Path || path.Base(f.Path) == "/" {
		return f, fmt.Errorf("--file %q: not a clean absolute file path", parts[0])
	}
	for _, p := range parts[1:] {
		k, val, _ := strings.Cut(p, "=")
		switch k {
		case "flock":
			for _, n := range strings.Split(val, ",") {
				if !plainName(n) {
					return f, fmt.Errorf("--file %q: lock file %q is not a plain name", parts[0], n)
				}
				f.LockFiles = append(f.LockFiles, n)
			}
		case "dirlock":
			if !plainName(val) {
				return f, fmt.Errorf("--file %q: lock %q is not a plain name", parts[0], val)
			}
			f.WriteLock = val
		default:
			return f, fmt.Errorf("--file %q: unknown part %q", parts[0], k)
		}
	}
	return f, nil
}

func plainName(n string) bool {
	return n != "" && n != "." && n != ".." && !strings.ContainsAny(n, "/\x00")
}
