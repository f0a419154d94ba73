package broker

import "context"

// The interfaces below are optional: a source or sink implements those that
// fit its store. The watcher (broker/watch) and write-back use them; a plain
// sync needs none of them.

// WritableSource is a source the broker can write a newer login back into:
// when a container's CLI refreshes its login in a copy, watch adopts it into
// the host's store. Update has Sink.Update's contract: it reads the host's
// current login (exists is false when there is none), writes what decide
// returns, and holds the CLI's own locks across the read and the write.
// decide may be called with bytes that are not a valid login.
type WritableSource interface {
	Source
	Update(ctx context.Context, decide Decide) error
}

// WatchedFiles is implemented by sources and sinks kept in files on this
// host. The watcher watches each file's directory with inotify/kqueue (so a
// file replaced by rename, or a directory deleted and created again, is
// still seen) and rechecks the owner when anything there changes.
type WatchedFiles interface {
	WatchedFiles() []string
}

// ChangePoller is implemented by sources and sinks whose changes cannot be
// watched as files on this host: a Keychain item, a file inside a Docker
// volume. The watcher calls Changed on an interval; it must be cheap (no
// secret read, no container created when nothing changed) and report true
// when the stored login may have changed since the previous call. The first
// call after creation may report true.
type ChangePoller interface {
	Changed(ctx context.Context) (bool, error)
}

// ChangeNotifier is implemented by stores whose changes are pushed rather
// than watched as files or polled (a Kubernetes Secret, through the API's
// watch). Changes starts watching and returns a channel that receives a
// value whenever the stored login may have changed: coalesced, carrying no
// content (read the store), the first when watching starts, closed when
// ctx ends. onError is called with each failure to watch; watching is
// retried. The watcher prefers it to ChangePoller.
type ChangeNotifier interface {
	Changes(ctx context.Context, onError func(error)) <-chan struct{}
}

// PushFallback is implemented by ChangeNotifiers whose pushes can stop for
// a while (a volume copy's resident agent that cannot run, or is being
// restarted): while Pushing reports false, the watcher polls the store
// (ChangePoller) as if it had no pushes, so following never gets worse
// than polling.
type PushFallback interface {
	Pushing() bool
}

// Closer is implemented by sources and sinks that hold resources between
// calls (a helper container kept for polling). The watcher closes them when
// it stops or reloads its config.
type Closer interface {
	Close() error
}
