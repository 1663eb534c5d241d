package cli

import (
	"os"
	"strconv"

	"github.com/spf13/pflag"

	"github.com/sandboxd/sandboxd/internal/client"
	"github.com/sandboxd/sandboxd/internal/limits"
)

// addLimitFlags adds the limit flags of a run or, with perCell, of a
// session (whose time and output limits apply to each cell). A flag not
// given leaves its field zero, "not set", so that whoever runs it (the
// executor here, or a daemon) fills in its own defaults; the help shows
// limits.Defaults(), those of sandboxctl and of a daemon that sets none.
func addLimitFlags(fl *pflag.FlagSet, l *limits.Limits, perCell bool) {
	each := ""
	if perCell {
		each = ", per cell"
	}
	d := limits.Defaults()
	fl.Var(&l.Timeout, "timeout", "wall-clock limit"+each+" (e.g. 10s, 1.5s)")
	showDefault(fl, "timeout", d.Timeout.String())
	fl.Var(&l.CPUTime, "cpu-time", "CPU-time limit of all processes together"+each)
	showDefault(fl, "cpu-time", d.CPUTime.String())
	fl.Var(&l.Memory, "memory", "memory limit, page cache and tmpfs included (e.g. 256MiB)")
	showDefault(fl, "memory", d.Memory.String())
	fl.IntVar(&l.Pids, "pids", 0, "maximum processes and threads")
	showDefault(fl, "pids", strconv.Itoa(d.Pids))
	fl.Var(&l.Output, "output", "cap on stdout and on stderr, each"+each)
	showDefault(fl, "output", d.Output.String())
	fl.Var(&l.Tmpfs, "tmpfs", "size of the workspace and of /tmp, each")
	showDefault(fl, "tmpfs", d.Tmpfs.String())
	fl.Var(&l.FileSize, "file-size", "largest file the program may write")
	showDefault(fl, "file-size", d.FileSize.String())
	fl.IntVar(&l.OpenFiles, "open-files", 0, "open file limit per process")
	showDefault(fl, "open-files", strconv.Itoa(d.OpenFiles))
	fl.Float64Var(&l.CPUs, "cpus", 0, "CPU bandwidth in cores")
	showDefault(fl, "cpus", strconv.FormatFloat(d.CPUs, 'g', -1, 64))
}

// showDefault sets the default the help prints for flag name, once: def,
// the value that applies when the flag is not given, where the flag's
// variable holds zero for "not set". An empty def prints none (for a
// usage that says itself what the default is).
func showDefault(fl *pflag.FlagSet, name, def string) { fl.Lookup(name).DefValue = def }

// ceilingOwner is who sets the ceiling of the runs and sessions
// sandboxctl makes itself (limits.DefaultCeiling()), as errors name it:
// not a server.
const ceilingOwner = "sandboxctl"

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
		fl.StringVar(&f.server, "server", "", "use the sandboxd at `URL` instead of running here")
	} else {
		fl.StringVar(&f.server, "server", "", "`URL` of the sandboxd (default $SANDBOXD_SERVER, else "+defaultServer+")")
	}
	fl.StringVar(&f.token, "token", "", "bearer `TOKEN` for the sandboxd (default $SANDBOXD_TOKEN)")
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
