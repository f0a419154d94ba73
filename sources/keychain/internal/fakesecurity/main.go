// Command fakesecurity stands in for macOS's /usr/bin/security in tests, on
// any OS. It keeps generic passwords in a JSON file, prints what the real
// program prints for the commands mc-broker runs, and records each call's
// argv so that tests can prove no secret is ever passed there.
//
// Environment:
//
//	FAKE_SECURITY_STORE  the JSON store (see store); required
//	FAKE_SECURITY_LOG    append one line per call: the arguments, space-joined
//
// The store's "simulate" member makes every call fail the way the real
// program does: "locked" (errSecInteractionNotAllowed, exit 36), "denied"
// (errSecUserCanceled, exit 128), "hang" (never answers; starts a child that
// also hangs, whose pid goes to STORE.hangpid), "corrupt-write" (a write
// stores other bytes than it was given).
package main

import (
	"bufio"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"time"
)

type item struct {
	Service string `json:"service"`
	Account string `json:"account"`
	Label   string `json:"label"`
	Secret  string `json:"secret"` // the stored bytes (a JSON string keeps any text)
	Cdat    string `json:"cdat"`
	Mdat    string `json:"mdat"`
}

type store struct {
	Simulate string  `json:"simulate,omitempty"`
	Items    []*item `json:"items"`
}

const (
	exitNotFound      = 44
	exitNoInteraction = 36
	exitUserCanceled  = 128
	// lineCap is security -i's line buffer (fgets with 4096 bytes): a
	// longer line is cut, and both parts run as commands.
	lineCap = 4096
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "--hang-child" {
		time.Sleep(time.Hour)
		return
	}
	path := os.Getenv("FAKE_SECURITY_STORE")
	if path == "" {
		fmt.Fprintln(os.Stderr, "fakesecurity: FAKE_SECURITY_STORE is not set")
		os.Exit(2)
	}
	if log := os.Getenv("FAKE_SECURITY_LOG"); log != "" {
		f, err := os.OpenFile(log, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
		if err == nil {
			fmt.Fprintln(f, strings.Join(os.Args[1:], " "))
			f.Close()
		}
	}
	st := load(path)
	switch st.Simulate {
	case "locked":
		fmt.Fprintln(os.Stderr, "security: SecKeychainSearchCopyNext: User interaction is not allowed.")
		os.Exit(exitNoInteraction)
	case "denied":
		fmt.Fprintln(os.Stderr, "security: SecKeychainItemCopyContent: The user name or passphrase you entered is not correct.")
		os.Exit(exitUserCanceled)
	case "hang":
		child := exec.Command(os.Args[0], "--hang-child")
		child.Stdout = os.Stdout // holds the pipe open, as a prompt helper would
		if err := child.Start(); err == nil {
			os.WriteFile(path+".hangpid", []byte(fmt.Sprint(child.Process.Pid)), 0o600)
		}
		time.Sleep(time.Hour)
	}
	args := os.Args[1:]
	if len(args) == 1 && args[0] == "-i" {
		os.Exit(interactive(st, path))
	}
	os.Exit(command(st, path, args))
}

func load(path string) *store {
	st := &store{}
	data, err := os.ReadFile(path)
	if err == nil {
		err = json.Unmarshal(data, st)
	}
	if err != nil && !os.IsNotExist(err) {
		fmt.Fprintln(os.Stderr, "fakesecurity: bad store:", err)
		os.Exit(2)
	}
	return st
}

// save replaces the store by rename, as the real Keychain commits a write
// at once: a test or a concurrent call never reads it half-written.
func save(path string, st *store) {
	data, _ := json.MarshalIndent(st, "", "  ")
	tmp := fmt.Sprintf("%s.%d.tmp", path, os.Getpid())
	err := os.WriteFile(tmp, data, 0o600)
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "fakesecurity:", err)
		os.Exit(2)
	}
}

// interactive runs one command per line of standard input, reading lines
// the way the real program does: at most lineCap-1 bytes at a time.
func interactive(st *store, path string) int {
	r := bufio.NewReaderSize(os.Stdin, lineCap)
	code := 0
	for {
		line, err := readCapped(r)
		if line != "" {
			args, perr := split(strings.TrimRight(line, "\n"))
			if perr != nil {
				fmt.Fprintln(os.Stderr, "security:", perr)
				code = 1
			} else if len(args) > 0 {
				if c := command(st, path, args); c != 0 {
					code = c
				}
			}
		}
		if err != nil {
			return code
		}
	}
}

func readCapped(r *bufio.Reader) (string, error) {
	var b strings.Builder
	for b.Len() < lineCap-1 {
		c, err := r.ReadByte()
		if err != nil {
			return b.String(), err
		}
		b.WriteByte(c)
		if c == '\n' {
			break
		}
	}
	return b.String(), nil
}

// split breaks a line into words: whitespace separates, double quotes
// group, a backslash escapes the next byte.
func split(line string) ([]string, error) {
	var words []string
	var cur strings.Builder
	inWord, quoted := false, false
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case c == '\\' && i+1 < len(line):
			i++
			cur.WriteByte(line[i])
			inWord = true
		case c == '"':
			quoted = !quoted
			inWord = true
		case (c == ' ' || c == '\t') && !quoted:
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteByte(c)
			inWord = true
		}
	}
	if quoted {
		return nil, fmt.Errorf("unterminated quote")
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words, nil
}

type flags struct {
	values map[string]string
	bools  map[string]bool
}

func parse(args []string) (flags, error) {
	f := flags{values: map[string]string{}, bools: map[string]bool{}}
	for i := 0; i < len(args); i++ {
		switch a := args[i]; a {
		case "-s", "-a", "-l", "-X", "-D", "-j", "-c", "-C":
			if i+1 >= len(args) {
				return f, fmt.Errorf("option %s needs a value", a)
			}
			f.values[a] = args[i+1]
			i++
		case "-w":
			// add-generic-password -w VALUE; find-generic-password -w (a flag).
			if i+1 < len(args) && !strings.HasPrefix(args[i+1], "-") {
				f.values[a] = args[i+1]
				i++
			} else {
				f.bools[a] = true
			}
		case "-U", "-g":
			f.bools[a] = true
		default:
			return f, fmt.Errorf("unknown option %q", a)
		}
	}
	return f, nil
}

func (s *store) find(service, account string) *item {
	for _, it := range s.Items {
		if it.Service == service && it.Account == account {
			return it
		}
	}
	return nil
}

func command(st *store, path string, args []string) int {
	if len(args) == 0 {
		fmt.Fprintln(os.Stderr, "usage: security command [options]")
		return 2
	}
	f, err := parse(args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "security:", err)
		return 2
	}
	switch args[0] {
	case "find-generic-password":
		it := st.find(f.values["-s"], f.values["-a"])
		if it == nil {
			fmt.Fprintln(os.Stderr, "security: SecKeychainSearchCopyNext: The specified item could not be found in the keychain.")
			return exitNotFound
		}
		if f.bools["-w"] {
			printPassword(os.Stdout, []byte(it.Secret))
			return 0
		}
		printAttributes(os.Stdout, it)
		return 0
	case "add-generic-password":
		secret := []byte(f.values["-w"])
		if x, ok := f.values["-X"]; ok {
			secret, err = hex.DecodeString(x)
			if err != nil {
				fmt.Fprintln(os.Stderr, "security: -X: not hex")
				return 2
			}
		}
		if st.Simulate == "corrupt-write" && len(secret) > 0 {
			secret = secret[:len(secret)-1]
		}
		it := st.find(f.values["-s"], f.values["-a"])
		if it != nil && !f.bools["-U"] {
			fmt.Fprintln(os.Stderr, "security: SecKeychainItemCreateFromContent: The specified item already exists in the keychain.")
			return 45
		}
		if it == nil {
			it = &item{Service: f.values["-s"], Account: f.values["-a"], Cdat: "20260101000000Z"}
			st.Items = append(st.Items, it)
		}
		if l, ok := f.values["-l"]; ok {
			it.Label = l
		} else if it.Label == "" {
			it.Label = it.Service
		}
		it.Secret = string(secret)
		it.Mdat = nextDate(it.Mdat)
		save(path, st)
		return 0
	}
	fmt.Fprintf(os.Stderr, "security: unknown command %q\n", args[0])
	return 2
}

// nextDate moves the modification date one second on, as a write does.
func nextDate(prev string) string {
	t, err := time.Parse("20060102150405Z", prev)
	if err != nil {
		t = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	}
	return t.Add(time.Second).Format("20060102150405Z")
}

// printPassword prints the value as -w does: as text when every byte is
// printable ASCII, else as hex.
func printPassword(w io.Writer, secret []byte) {
	for _, c := range secret {
		if c < 0x20 || c > 0x7e {
			fmt.Fprintln(w, hex.EncodeToString(secret))
			return
		}
	}
	fmt.Fprintf(w, "%s\n", secret)
}

func printAttributes(w io.Writer, it *item) {
	date := func(d string) string {
		return fmt.Sprintf("0x%s  \"%s\\000\"", strings.ToUpper(hex.EncodeToString(append([]byte(d), 0))), d)
	}
	fmt.Fprintf(w, "keychain: \"/Users/dev/Library/Keychains/login.keychain-db\"\nversion: 512\nclass: \"genp\"\nattributes:\n")
	fmt.Fprintf(w, "    0x00000007 <blob>=\"%s\"\n", it.Label)
	fmt.Fprintf(w, "    0x00000008 <blob>=<NULL>\n")
	fmt.Fprintf(w, "    \"acct\"<blob>=\"%s\"\n", it.Account)
	fmt.Fprintf(w, "    \"cdat\"<timedate>=%s\n", date(it.Cdat))
	fmt.Fprintf(w, "    \"crtr\"<uint32>=<NULL>\n    \"cusi\"<sint32>=<NULL>\n    \"desc\"<blob>=<NULL>\n    \"gena\"<blob>=<NULL>\n    \"icmt\"<blob>=<NULL>\n    \"invi\"<sint32>=<NULL>\n")
	fmt.Fprintf(w, "    \"mdat\"<timedate>=%s\n", date(it.Mdat))
	fmt.Fprintf(w, "    \"nega\"<sint32>=<NULL>\n    \"prot\"<blob>=<NULL>\n    \"scrp\"<sint32>=<NULL>\n")
	fmt.Fprintf(w, "    \"svce\"<blob>=\"%s\"\n    \"type\"<uint32>=<NULL>\n", it.Service)
}
