package engine

// UseSockets moves the default Docker socket and rootful Podman's socket
// until restore is called, so that a test can see what happens when no
// Docker engine answers at the default place.
func UseSockets(docker, rootfulPodman string) (restore func()) {
	oldD, oldP := defaultHost, rootfulPodmanSocket
	defaultHost, rootfulPodmanSocket = docker, rootfulPodman
	return func() { defaultHost, rootfulPodmanSocket = oldD, oldP }
}
