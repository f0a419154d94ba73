package volume

// UseHelperImage makes helper containers come from image instead of
// HelperImage until restore is called, so that a test can remove its
// image without disturbing other runs on the same engine.
func UseHelperImage(image string) (restore func()) {
	old := helperImage
	helperImage = image
	return func() { helperImage = old }
}

// WriteDockerStyleOnPodman makes writes to Podman unpack the archive at the
// helper container's root, as mc-broker once did (the write lands in the
// never-started container's own layer), until restore is called.
func WriteDockerStyleOnPodman() (restore func()) {
	dockerStyleOnPodman = true
	return func() { dockerStyleOnPodman = false }
}

// WakeAgent wakes the supervisor of the agent that serves s, as a volume
// created while that agent started does.
func WakeAgent(s *Sink) {
	s.supMu.Lock()
	a := s.sup
	s.supMu.Unlock()
	if a != nil {
		a.poke()
	}
}
