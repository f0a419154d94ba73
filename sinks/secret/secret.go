// Package secret is the Kubernetes Secret sink: a copy of a login kept under
// one key of a Secret, which pods read through mc-broker's init container
// and sidecar (`mc-broker agent`, `mc-broker kube manifest`).
//
// Everything goes through the cluster's API (package kube): reads are GETs,
// writes are updates conditioned on the resourceVersion that was read, so a
// write never loses another writer's change (a pod's sidecar writing a
// refreshed login back, another mc-broker run, another key of the same
// Secret): on a conflict the sink reads again and decides again. Changes are
// seen through the API's watch, never by polling.
//
// A Secret's content can be written by every pod whose sidecar may update
// it: treat it like anything a container writes. Reads are bounded; the
// broker judges the bytes.
package secret

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/mc-broker/mc-broker/broker/config"

	"github.com/mc-broker/mc-broker/broker"
	"github.com/mc-broker/mc-broker/broker/credential"
	"github.com/mc-broker/mc-broker/sinks/secret/kube"
)

// Labels on every Secret mc-broker creates or writes:
// `kubectl get secrets -l org.mc-broker.managed=true` lists them.
const (
	LabelManaged = "org.mc-broker.managed"
	// LabelOwner names the host whose mc-broker created the Secret (its
	// host name, made a valid label value).
	LabelOwner = "org.mc-broker.owner"
)

// maxConflicts bounds how often Update reads and decides again after the
// Secret changed under it; between attempts it waits a random moment that
// grows with each attempt (up to maxConflictWait), so that writers racing
// each other fall out of step.
const (
	maxConflicts    = 20
	maxConflictWait = 100 * time.Millisecond
)

// conflictWait is the pause before attempt n (from 1) after conflicts.
func conflictWait(n int) time.Duration {
	ceiling := min(time.Millisecond<<min(n, 10), maxConflictWait)
	return time.Duration(rand.Int64N(int64(ceiling)) + 1)
}

// Options describe one Secret copy.
type Options struct {
	Namespace string
	Name      string
	// Key is the data key holding the login (the CLI's file name by
	// default: .credentials.json, auth.json, oauth_creds.json).
	Key string
	// Kubeconfig and Context say which cluster; empty: as kubectl
	// ($KUBECONFIG, ~/.kube/config, or the pod's service account).
	Kubeconfig string
	Context    string
	// Adopt lets mc-broker write into an existing Secret that it did not
	// create (no org.mc-broker.managed label) and that holds other keys.
	// Without it such a Secret is refused: it is somebody else's.
	Adopt bool
	// Owner is LabelOwner's value on Secrets this sink creates; the host
	// name when empty.
	Owner string
	// Clients is the run's shared connections (one per kubeconfig and
	// context). Required.
	Clients *Clients
}

// Sink is one Secret copy. It implements broker.Sink, broker.ChangePoller
// and broker.Closer, and Changes, a push notification through the API's
// watch.
type Sink struct {
	o    Options
	poll poller
}

var (
	_ broker.Sink         = (*Sink)(nil)
	_ broker.ChangePoller = (*Sink)(nil)
	_ broker.Closer       = (*Sink)(nil)
)

// New returns the sink for o; the options are checked when it is used.
func New(o Options) *Sink { return &Sink{o: o} }

// Location is how people see the copy: `secret NAMESPACE/NAME:KEY`, and the
// context when one is named.
func (s *Sink) Location() string {
	loc := "secret " + s.o.Namespace + "/" + s.o.Name + ":" + s.o.Key
	if s.o.Context != "" {
		loc += " (context " + s.o.Context + ")"
	}
	return loc
}

// CheckNames says what is wrong with a namespace, Secret name or key, in
// words for a config error; nil when the API accepts them.
func CheckNames(namespace, name, key string) error {
	return config.CheckSecretNames(namespace, name, key)
}

func (s *Sink) check() error {
	if s.o.Clients == nil {
		return errors.New(s.Location() + ": no Kubernetes client configured")
	}
	if s.o.Key == "" {
		return errors.New(s.Location() + ": no key")
	}
	return CheckNames(s.o.Namespace, s.o.Name, s.o.Key)
}

// Error is a failure of one Secret copy, naming it. It wraps the cause: a
// *kube.StatusError, *kube.UnreachableError, *kube.ConfigError, or
// *ForeignError.
type Error struct {
	Location string
	Op       string
	Err      error
}

func (e *Error) Error() string {
	var ce *kube.ConfigError
	if errors.As(e.Err, &ce) {
		return e.Location + ": " + e.Err.Error()
	}
	return e.Location + ": " + e.Op + ": " + e.Err.Error()
}

func (e *Error) Unwrap() error { return e.Err }

// Hint says what to do about the failure, where there is something.
func (e *Error) Hint() string {
	var fe *ForeignError
	switch {
	case errors.As(e.Err, &fe):
		return "give the copy a Secret of its own, or set adopt: true on the sink if mc-broker may share this one"
	case kube.IsForbidden(e.Err):
		return "the kubeconfig's user needs get, create, update and watch on this Secret (kubectl auth can-i update secret/NAME -n NAMESPACE)"
	case kube.IsNotFound(e.Err):
		return "create the namespace first (kubectl create namespace NAME)"
	}
	return ""
}

// ForeignError is a Secret mc-broker did not create that holds other keys.
type ForeignError struct {
	Keys []string
}

func (e *ForeignError) Error() string {
	return "the Secret exists without the " + LabelManaged + " label and holds other keys (" + strings.Join(e.Keys, ", ") + "): not writing into somebody else's Secret"
}

func (s *Sink) fail(op string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return &Error{Location: s.Location(), Op: op, Err: err}
}

func (s *Sink) client() (*kube.Client, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	c, err := s.o.Clients.For(s.o.Kubeconfig, s.o.Context)
	if err != nil {
		return nil, s.fail("connect", err)
	}
	return c, nil
}

// Read returns the login under the key, at most credential.MaxSize+1 bytes
// of it (more is judged broken, never used). A missing Secret or key is an
// error matching fs.ErrNotExist.
func (s *Sink) Read(ctx context.Context) ([]byte, error) {
	c, err := s.client()
	if err != nil {
		return nil, err
	}
	sec, err := c.GetSecret(ctx, s.o.Namespace, s.o.Name)
	if kube.IsNotFound(err) {
		return nil, fmt.Errorf("%s does not exist: %w", s.Location(), fs.ErrNotExist)
	}
	if err != nil {
		return nil, s.fail("read", err)
	}
	data, ok := sec.Data[s.o.Key]
	if !ok {
		return nil, fmt.Errorf("%s: no key %s: %w", s.Location(), s.o.Key, fs.ErrNotExist)
	}
	return bounded(data), nil
}

func bounded(data []byte) []byte {
	if len(data) > credential.MaxSize {
		return data[:credential.MaxSize+1]
	}
	return data
}

// Update reads the Secret, calls decide with the key's bytes and writes
// what it returns, on the condition that the Secret has not changed since
// the read; when it has, it reads and decides again. A missing Secret is
// created (labelled) only when there is something to write. Other keys
// and everything else in the Secret are kept.
func (s *Sink) Update(ctx context.Context, decide broker.Decide) error {
	c, err := s.client()
	if err != nil {
		return err
	}
	for attempt := 0; attempt < maxConflicts; attempt++ {
		if attempt > 0 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(conflictWait(attempt)):
			}
		}
		sec, err := c.GetSecret(ctx, s.o.Namespace, s.o.Name)
		if kube.IsNotFound(err) {
			next, write := decide(nil, false)
			if !write {
				return nil
			}
			_, err = c.CreateSecret(ctx, &kube.Secret{
				Namespace: s.o.Namespace,
				Name:      s.o.Name,
				Labels:    map[string]string{LabelManaged: "true", LabelOwner: s.owner()},
				Data:      map[string][]byte{s.o.Key: next},
			})
			if kube.IsAlreadyExists(err) {
				continue // created meanwhile: read it and decide again
			}
			return s.fail("create", err)
		}
		if err != nil {
			return s.fail("read", err)
		}
		if err := s.mayWrite(sec); err != nil {
			return s.fail("write", err)
		}
		current, exists := sec.Data[s.o.Key]
		if err := ctx.Err(); err != nil {
			return err
		}
		next, write := decide(bounded(current), exists)
		if !write {
			return nil
		}
		if sec.Data == nil {
			sec.Data = map[string][]byte{}
		}
		sec.Data[s.o.Key] = next
		if sec.Labels == nil {
			sec.Labels = map[string]string{}
		}
		if sec.Labels[LabelManaged] != "true" {
			sec.Labels[LabelManaged] = "true"
			if _, ok := sec.Labels[LabelOwner]; !ok {
				sec.Labels[LabelOwner] = s.owner()
			}
		}
		_, err = c.UpdateSecret(ctx, sec)
		if kube.IsConflict(err) {
			continue // changed since the read: read it and decide again
		}
		return s.fail("write", err)
	}
	return s.fail("write", fmt.Errorf("the Secret changed under every one of %d attempts to write it", maxConflicts))
}

var _ broker.Eraser = (*Sink)(nil)

// Erase takes the login's key out of the Secret when erase agrees
// (mc-broker revoke), on the condition that the Secret has not changed
// since the read, as Update writes. The Secret and its other keys are
// kept; a missing Secret or key is left as it is.
func (s *Sink) Erase(ctx context.Context, erase func(current []byte) bool) (bool, error) {
	c, err := s.client()
	if err != nil {
		return false, err
	}
	for attempt := 0; attempt < maxConflicts; attempt++ {
		if attempt > 0 {
			select {
			case <-ctx.Done():
				return false, ctx.Err()
			case <-time.After(conflictWait(attempt)):
			}
		}
		sec, err := c.GetSecret(ctx, s.o.Namespace, s.o.Name)
		if kube.IsNotFound(err) {
			return false, nil
		}
		if err != nil {
			return false, s.fail("read", err)
		}
		current, exists := sec.Data[s.o.Key]
		if !exists {
			return false, nil
		}
		if err := s.mayWrite(sec); err != nil {
			return false, s.fail("erase", err)
		}
		if !erase(bounded(current)) {
			return false, nil
		}
		delete(sec.Data, s.o.Key)
		_, err = c.UpdateSecret(ctx, sec)
		if kube.IsConflict(err) {
			continue
		}
		return err == nil, s.fail("erase", err)
	}
	return false, s.fail("erase", fmt.Errorf("the Secret changed under every one of %d attempts to erase the key", maxConflicts))
}

// mayWrite refuses a Secret somebody else made: no managed label, and keys
// other than the sink's, unless the config adopts it. An unlabelled Secret
// that holds nothing else (made with kubectl create secret for this login,
// or emptied) is taken over and labelled.
func (s *Sink) mayWrite(sec *kube.Secret) error {
	if sec.Labels[LabelManaged] == "true" || s.o.Adopt {
		return nil
	}
	var other []string
	for k := range sec.Data {
		if k != s.o.Key {
			other = append(other, k)
		}
	}
	if len(other) == 0 {
		return nil
	}
	sort.Strings(other)
	return &ForeignError{Keys: other}
}

func (s *Sink) owner() string {
	if s.o.Owner != "" {
		return LabelValue(s.o.Owner)
	}
	host, _ := os.Hostname()
	return LabelValue(host)
}

// LabelValue makes s a valid label value: letters, digits, '-', '_', '.',
// at most 63 characters, starting and ending with a letter or digit.
func LabelValue(s string) string {
	b := []byte(s)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			b[i] = '-'
		}
	}
	if len(b) > 63 {
		b = b[:63]
	}
	return strings.Trim(string(b), "-_.")
}
