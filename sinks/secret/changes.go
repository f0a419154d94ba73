package secret

import (
	"context"
	"crypto/sha256"
	"sync"
	"time"

	"github.com/mc-broker/mc-broker/broker"

	"github.com/mc-broker/mc-broker/sinks/secret/kube"
)

// Notifier is broker.ChangeNotifier: changes pushed through the API's
// watch. The watcher uses it rather than Changed.
type Notifier = broker.ChangeNotifier

var _ broker.ChangeNotifier = (*Sink)(nil)

// Backoff bounds for a watch that fails (unreachable server, RBAC).
const (
	minBackoff = 100 * time.Millisecond
	maxBackoff = 30 * time.Second
)

// Changes watches the Secret through the API (one long-lived request,
// renewed when the server ends it; never polling) and signals when the
// sink's key is created, changed or removed, or the Secret is deleted.
// Changes to other keys or to metadata alone are not signalled.
func (s *Sink) Changes(ctx context.Context, onError func(error)) <-chan struct{} {
	ch := make(chan struct{}, 1)
	go s.watch(ctx, ch, onError)
	return ch
}

func (s *Sink) watch(ctx context.Context, ch chan struct{}, onError func(error)) {
	defer close(ch)
	notify := func() {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
	notify()
	var (
		known, present bool
		last           [32]byte
		rv             string
		backoff        = minBackoff
	)
	seen := func(sec *kube.Secret) {
		data, ok := sec.Data[s.o.Key]
		h := sha256.Sum256(data)
		if !known || ok != present || h != last {
			known, present, last = true, ok, h
			notify()
		}
		backoff = minBackoff
	}
	for ctx.Err() == nil {
		started := time.Now()
		c, err := s.client()
		if err == nil {
			err = c.WatchSecret(ctx, s.o.Namespace, s.o.Name, rv, func(ev kube.SecretEvent) error {
				rv = ev.ResourceVersion
				switch ev.Type {
				case kube.Added, kube.Modified:
					seen(ev.Secret)
				case kube.Deleted:
					seen(&kube.Secret{})
				}
				return nil
			})
		}
		if ctx.Err() != nil {
			return
		}
		if err == nil && time.Since(started) > time.Second {
			continue // the server ended the watch (it does every few minutes): go on from rv
		}
		if kube.IsGone(err) {
			// Too far behind for the server's history: start from the
			// current state; seen compares it with the last one.
			rv = ""
			continue
		}
		if err != nil && onError != nil {
			onError(s.fail("watch", err))
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, maxBackoff)
	}
}

// poller adapts Changes to broker.ChangePoller for a caller that polls
// (mc-broker's own watcher uses Changes):
// Changed costs no request, it only reports whether the API watch saw a
// change since the previous call.
type poller struct {
	mu     sync.Mutex
	stop   context.CancelFunc
	signal <-chan struct{}
	err    error
}

// Changed reports whether the Secret's key may have changed since the
// previous call, from a watch started on the first call (which may report
// true) and ended by Close. It sends no request of its own.
func (s *Sink) Changed(ctx context.Context) (bool, error) {
	p := &s.poll
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.signal == nil {
		wctx, cancel := context.WithCancel(context.Background())
		p.stop = cancel
		p.signal = s.Changes(wctx, func(err error) {
			p.mu.Lock()
			p.err = err
			p.mu.Unlock()
		})
	}
	select {
	case _, ok := <-p.signal:
		return ok, nil
	default:
	}
	err := p.err
	p.err = nil
	return false, err
}

// Close ends the watch Changed started, and drops the connection's idle
// sockets.
func (s *Sink) Close() error {
	s.poll.mu.Lock()
	defer s.poll.mu.Unlock()
	if s.poll.stop != nil {
		s.poll.stop()
		s.poll.stop, s.poll.signal = nil, nil
	}
	return nil
}
