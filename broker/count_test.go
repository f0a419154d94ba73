package broker_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mc-broker/mc-broker/broker"
)

// countingSource and countingSink count what a pass asks of them.
type countingSource struct {
	broker.Source
	reads atomic.Int32
}

func (c *countingSource) Read(ctx context.Context) ([]byte, error) {
	c.reads.Add(1)
	return c.Source.Read(ctx)
}

type countingSink struct {
	broker.Sink
	reads, updates atomic.Int32
}

func (c *countingSink) Read(ctx context.Context) ([]byte, error) {
	c.reads.Add(1)
	return c.Sink.Read(ctx)
}

func (c *countingSink) Update(ctx context.Context, d broker.Decide) error {
	c.updates.Add(1)
	return c.Sink.Update(ctx, d)
}

// A pass reads the host's store once and each copy once, and updates only
// the copies that need a write.
func TestAPassReadsEachStoreOnce(t *testing.T) {
	w := newWorld(t, "a", "b", "c", "d")
	put(t, w.source, loginAt(t, 4*time.Hour, 1))
	put(t, w.copyFile("b"), forCopy(t, loginAt(t, 4*time.Hour, 1))) // in step already
	put(t, w.copyFile("c"), forCopy(t, loginAt(t, 2*time.Hour, 0))) // older
	put(t, w.copyFile("d"), forCopy(t, loginAt(t, 8*time.Hour, 2))) // newer: taken back
	src := &countingSource{Source: w.b.Sources[0]}
	w.b.Sources[0] = src
	sinks := map[string]*countingSink{}
	for i, c := range w.b.Copies {
		cs := &countingSink{Sink: c.Sink}
		w.b.Copies[i].Sink = cs
		sinks[string("abcd"[i])] = cs
	}
	r := w.b.Sync(context.Background(), broker.Options{})
	if n := src.reads.Load(); n != 1 {
		t.Errorf("the host's store was read %d times in one pass, want once", n)
	}
	wantUpdates := map[string]int32{"a": 1, "b": 0, "c": 1, "d": 0}
	for name, s := range sinks {
		if n := s.reads.Load(); n != 1 {
			t.Errorf("copy %s was read %d times in one pass, want once", name, n)
		}
		if n := s.updates.Load(); n != wantUpdates[name] {
			t.Errorf("copy %s was updated %d times, want %d (%s)", name, n, wantUpdates[name], outcomes(r)[name])
		}
	}
}
