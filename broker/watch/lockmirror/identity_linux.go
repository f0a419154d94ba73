package lockmirror

import (
	"os"
	"strconv"
	"strings"
)

// self follows claude 2.1.332 on Linux:
//   - procStart: field 22 (starttime, clock ticks since boot) of
//     /proc/<pid>/stat, as a string;
//   - pidDomain: "linux:" + /etc/machine-id (trimmed) + ":" +
//     readlink(/proc/self/ns/pid), each empty when unreadable;
//   - pidSpace: hostname + "#" + readlink(/proc/self/ns/pid), or the
//     hostname alone when the link cannot be read.
func self() Identity {
	pid := os.Getpid()
	ns, _ := os.Readlink("/proc/self/ns/pid")
	mid, _ := os.ReadFile("/etc/machine-id")
	host, _ := os.Hostname()
	space := host
	if ns != "" {
		space += "#" + ns
	}
	id := Identity{
		PID:       pid,
		PIDDomain: "linux:" + strings.TrimSpace(string(mid)) + ":" + ns,
		PIDSpace:  space,
	}
	if stat, err := os.ReadFile("/proc/self/stat"); err == nil {
		id.ProcStart = procStart(string(stat))
	}
	return id
}

// procStart is field 22 of a /proc/<pid>/stat line: the 20th field after
// the command name, which is in parentheses and may hold spaces.
func procStart(stat string) string {
	i := strings.LastIndex(stat, ")")
	if i < 0 || i+2 > len(stat) {
		return ""
	}
	fields := strings.Split(stat[i+2:], " ")
	if len(fields) < 20 {
		return ""
	}
	return fields[19]
}

// startOf is the procStart of a running pid; ok is false when there is no
// such process.
func startOf(pid int) (start string, ok bool) {
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return "", false
	}
	return procStart(string(stat)), true
}
