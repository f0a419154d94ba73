package cli

import (
	"context"
	"os"
	"os/exec"
	"runtime"
	"strconv"

	"github.com/moby/moby/client"

	"github.com/mc-broker/mc-broker/broker/config"
	"github.com/mc-broker/mc-broker/cmd/internal/doctor"
	"github.com/mc-broker/mc-broker/launch/compose"
	"github.com/mc-broker/mc-broker/launch/service"
	"github.com/mc-broker/mc-broker/sinks/volume"
	"github.com/mc-broker/mc-broker/sinks/volume/engine"
)

// realDoctorProbes wires doctor to the Docker engine, the service manager
// and the compose checker.
func realDoctorProbes(f *Factory) *doctorProbes {
	return &doctorProbes{
		engine: func(ctx context.Context) doctor.Engine {
			env, err := f.Env()
			if err != nil {
				return doctor.Engine{Err: err}
			}
			ep, err := engine.Resolve(env.Getenv, env.Home)
			out := doctor.Engine{Endpoint: ep.Host, Context: ep.Context, Err: err}
			if err != nil {
				return out
			}
			// Connect, not Dial: with nothing chosen it falls back to
			// Podman's socket, as sync does.
			e, err := engine.Connect(ctx, env.Getenv, env.Home)
			if err == nil {
				defer e.Close()
				out.Endpoint = e.Endpoint.Host
				if v, verr := e.Client().ServerVersion(ctx, client.ServerVersionOptions{}); verr == nil {
					out.Version = v.Version
				}
				out.Agent, out.AgentErr = volume.AgentBinaryFor(ctx, e)
			}
			out.Err = err
			return out
		},
		service: func(ctx context.Context) doctor.Service {
			opts := &LaunchOptions{
				f: f, Action: "status",
				GOOS: runtime.GOOS, UID: os.Getuid(),
				Executable: os.Executable, LookPath: exec.LookPath, Runner: service.ExecRunner{},
				TempDirs: service.TempDirs(),
			}
			svc, err := opts.service()
			if err != nil {
				return doctor.Service{Err: err}
			}
			st := svc.Status(ctx)
			out := doctor.Service{Installed: st.Installed, Running: st.State == service.StateRunning, Detail: st.File, Logs: st.Logs.String(), Warnings: st.Warnings}
			if st.Installed && st.ManagerErr != nil {
				out.Err = st.ManagerErr
			} else if st.ManagerErr != nil {
				out.Unreachable = st.ManagerErr
			}
			return out
		},
		compose: func(files []string) ([]doctor.Finding, error) {
			found, err := compose.CheckOptions{Overrides: overrideVariables()}.Check(files...)
			var out []doctor.Finding
			for _, fd := range found {
				out = append(out, doctor.Finding{Where: fd.File + ":" + itoa(fd.Line), Service: fd.Service, Problem: fd.Message, Fix: fd.Fix})
			}
			return out, err
		},
	}
}

func itoa(n int) string {
	if n <= 0 {
		return "?"
	}
	return strconv.Itoa(n)
}

// volumeCopies counts the configured Docker volume copies.
func volumeCopies(cfg *config.Config) int {
	n := 0
	for _, sk := range cfg.Sinks {
		if sk.Volume != "" {
			n++
		}
	}
	return n
}
