package file

// WithoutLockMirror keeps watch from mirroring Claude Code's refresh lock
// into this source's own directory (config: mirror_refresh_lock: false),
// for a host where Claude Code does not take its lock there.
func (s *Source) WithoutLockMirror() *Source {
	s.noLockMirror = true
	return s
}

// MirrorRefreshLock reports whether watch may mirror Claude Code's refresh
// lock into the source's directory (watch.RefreshLockMirroring).
func (s *Source) MirrorRefreshLock() bool { return !s.noLockMirror }
