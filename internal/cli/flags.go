package cli

import (
	"os"

	"github.com/spf13/pflag"

	"github.com/sandboxd/sandboxd/internal/client"
	"github.com/sandboxd/sandboxd/internal/limits"
)

// addLimitFlags adds the limit flags of a run or, with perCell, of a
// session (whose time and output limits apply to each cell).
func addLimitFlags(fl *pflag.FlagSet, l *limits.Limits, perCell bool) {
	each := ""
	if perCell {
		each = ", per cell"
	}
	fl.Var(&l.Timeout, "timeout", "wall-clock limit"+each+" (e.g. 10s, 1.5s) [default 10s]")
	fl.Var(&l.CPUTime, "cpu-time", "CPU-time limit of all processes together"+each+" [default 10s]")
	fl.Var(&l.Memory, "memory", "memory limit, page cache and tmpfs included (e.g. 256MiB) [default 256MiB]")
	fl.IntVar(&l.Pids, "pids", 0, "maximum processes and threads [default 64]")
	fl.Var(&l.Output, "output", "cap on stdout and on stderr, each"+each+" [default 1MiB]")
	fl.Var(&l.Tmpfs, "tmpfs", "size of the workspace and of /tmp, each [default 64MiB]")
	fl.Var(&l.FileSize, "file-size", "largest file the program may write [default 64MiB]")
	fl.IntVar(&l.OpenFiles, "open-files", 0, "open file limit per process [default 256]")
	fl.Float64Var(&l.CPUs, "cpus", 0, "CPU bandwidth in cores [default 1]")
}

// defaultServer is the daemon the session commands talk to without
// --server.
const defaultServer = "http://127.0.0.1:8080"

// serverFlags name a daemon and the token to show it.
type serverFlags struct {
	server, token string
}

// add adds --server and --token; with local, no --server means no daemon.
func (f *serverFlags) add(fl *pflag.FlagSet, local bool) {
	if local {
		fl.StringVar(&f.server, "server", "", "use the sandboxd at URL instead of running here")
	} else {
		fl.StringVar(&f.server, "server", "", "URL of the sandboxd (default $SANDBOXD_SERVER, else "+defaultServer+")")
	}
	fl.StringVar(&f.token, "token", "", "bearer token for the sandboxd (default $SANDBOXD_TOKEN)")
}

// client is a client of the daemon the flags name.
func (f *serverFlags) client() *client.Client {
	c := &client.Client{Base: f.server, Token: f.token}
	if c.Base == "" {
		c.Base = os.Getenv("SANDBOXD_SERVER")
	}
	if c.Base == "" {
		c.Base = defaultServer
	}
	if c.Token == "" {
		c.Token = os.Getenv("SANDBOXD_TOKEN")
	}
	return c
}
