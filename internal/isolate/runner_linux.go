package isolate

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"

	"github.com/sandboxd/sandboxd/internal/isolate/nsinit"
	"github.com/sandboxd/sandboxd/internal/isolate/seccomp"
	"github.com/sandboxd/sandboxd/internal/workspace"
)

// Runner runs programs in sandboxes. It is safe for concurrent use; each
// Run is independent of every other.
type Runner struct {
	cfg Config
	log *slog.Logger
	cg  cgroupDriver
	// filter is the compiled seccomp filter every run's init installs.
	filter []byte
	// init is the init binary runs start, nil to re-execute this one
	// (initbin_linux.go). Held open for the Runner's life.
	initMu sync.Mutex
	init   *initBinary
	// shares divides the CPU among tenants (cpushares_linux.go).
	shares cpuShares
	// reaper is what init becomes once the program runs, nil where there
	// is none (reaper_linux.go). The process's, held open for its life.
	reaper *os.File
	// mounts is the namespace the runs' mounts are made in, nil to make
	// them in the process's own (mountns_linux.go).
	mounts *runMounts
	// spawnWarn says once that the spawner (spawner_linux.go) failed.
	spawnWarn sync.Once
}

// New checks that this host can run the process backend, creates the state
// directory and sweeps what crashed runs left behind.
func New(cfg Config) (*Runner, error) {
	if cfg.StateDir == "" {
		cfg.StateDir = "/run/sandboxd"
	}
	if cfg.CgroupParent == "" {
		cfg.CgroupParent = "sandboxd"
	}
	if cfg.HostUID == 0 {
		cfg.HostUID = DefaultHostUID
	}
	if cfg.HostGID == 0 {
		cfg.HostGID = DefaultHostUID
	}
	if cfg.IDSlots == 0 {
		cfg.IDSlots = DefaultIDSlots
	}
	if cfg.IDLockDir == "" {
		cfg.IDLockDir = DefaultIDLockDir
	}
	if cfg.Binds == nil {
		cfg.Binds = DefaultBinds
	}
	if cfg.Collect == (workspace.CollectLimits{}) {
		cfg.Collect = workspace.DefaultCollectLimits
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if err := CheckCgroupParent(cfg.CgroupParent); err != nil {
		return nil, err
	}
	if err := validIDPool(cfg); err != nil {
		return nil, err
	}
	if os.Geteuid() != 0 {
		return nil, fmt.Errorf("%w: it needs root to create cgroups and map the sandbox's uids (running as uid %d)", ErrUnsupported, os.Geteuid())
	}
	cg, err := detectCgroups(cfg.CgroupParent)
	if err != nil {
		return nil, err
	}
	if err := allowPerUserRlimits(); err != nil {
		return nil, err
	}
	r := &Runner{cfg: cfg, log: cfg.Logger, cg: cg}
	if !cfg.NoSeccomp {
		if r.filter, err = seccomp.Compile(); err != nil {
			return nil, fmt.Errorf("compile the seccomp filter: %w", err)
		}
	}
	// The state dir is root's; the sandbox's host uids may only traverse.
	for _, d := range []string{cfg.StateDir, r.runsDir(), r.uidsDir()} {
		if err := os.MkdirAll(d, 0o711); err != nil {
			return nil, fmt.Errorf("create state dir: %w", err)
		}
		if err := os.Chmod(d, 0o711); err != nil {
			return nil, fmt.Errorf("create state dir: %w", err)
		}
	}
	if err := reachable(cfg.StateDir); err != nil {
		return nil, err
	}
	// Init is the init binary or, as its fallback, this binary, executed
	// after the switch to the sandbox's setup uid: both must be executable
	// by others.
	if st, err := os.Stat("/proc/self/exe"); err != nil || st.Mode().Perm()&0o001 == 0 {
		return nil, fmt.Errorf("%w: this binary must be executable by others (chmod o+x): the sandbox re-executes it as an unprivileged uid", ErrUnsupported)
	}
	switch ib, err := openInit(cfg.Init); {
	case err != nil:
		r.log.Warn("not using the init binary: runs re-execute this binary instead, and start slower", "err", err)
	case ib == nil:
		r.log.Debug("no init binary: runs re-execute this binary")
	default:
		r.init = ib
	}
	if r.mounts, err = processMounts(); err != nil {
		r.log.Warn("the runs' mounts are made in this process's mount namespace, which every new sandbox copies", "err", err)
	}
	if r.reaper, err = processReaper(); err != nil {
		r.log.Warn("no reaper: each sandbox's init waits for its program itself, holding more memory", "err", err)
	}
	if err := r.Sweep(); err != nil {
		r.log.Warn("sweeping leftovers of earlier runs failed", "err", err)
	}
	// After the sweep, so that no leftover holds memory the new limit
	// must reclaim.
	if cfg.MemoryLimit > 0 {
		if err := cg.limitParent(int64(cfg.MemoryLimit)); err != nil {
			return nil, fmt.Errorf("limit the memory of every sandbox together to %s: %w", cfg.MemoryLimit, err)
		}
	}
	return r, nil
}

// CgroupVersion is "v1" or "v2", as detected at New.
func (r *Runner) CgroupVersion() string { return r.cg.version() }

// initConfig is the nsinit.Config for one execution.
func (r *Runner) initConfig(ws *Workspace, e Exec) nsinit.Config {
	return nsinit.Config{
		Argv:          e.Argv,
		Env:           e.Env,
		Dir:           workspace.Dir,
		UID:           SandboxUID,
		GID:           SandboxUID,
		Hostname:      "sandbox",
		Root:          filepath.Join(ws.dir.path, "root"),
		Workspace:     ws.work,
		WorkspaceDir:  workspace.Dir,
		TmpSize:       int64(e.Limits.Tmpfs),
		TmpInodes:     workspace.Inodes(int64(e.Limits.Tmpfs)),
		Binds:         r.cfg.Binds,
		DevDir:        filepath.Join(ws.gen, genDevDir),
		Files:         etcFiles(),
		Rlimits:       rlimits(e.Limits),
		Seccomp:       !r.cfg.NoSeccomp,
		SeccompFilter: r.filter,
		Reaper:        r.reaper != nil,
		Attach:        ws.attach(),
	}
}

// etcFiles are the generated /etc files: the sandbox user and nothing of
// the host's accounts, names or resolvers.
func etcFiles() []nsinit.RootFile {
	return []nsinit.RootFile{
		{Path: "/etc/passwd", Mode: 0o644, Content: fmt.Sprintf("root:x:0:0:root:/root:/usr/sbin/nologin\nsandbox:x:%d:%d:sandbox:%s:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n", SandboxUID, SandboxUID, workspace.Dir)},
		{Path: "/etc/group", Mode: 0o644, Content: fmt.Sprintf("root:x:0:\ntty:x:5:\nsandbox:x:%d:\nnogroup:x:65534:\n", SandboxUID)},
		{Path: "/etc/hosts", Mode: 0o644, Content: "127.0.0.1\tlocalhost sandbox\n::1\tlocalhost ip6-localhost ip6-loopback\n"},
		{Path: "/etc/hostname", Mode: 0o644, Content: "sandbox\n"},
		{Path: "/etc/nsswitch.conf", Mode: 0o644, Content: "passwd: files\ngroup: files\nhosts: files\n"},
		{Path: "/etc/resolv.conf", Mode: 0o644, Content: ""},
	}
}

// reachable checks that every directory on the way to dir can be traversed
// by others: init runs as the sandbox's host uid when it mounts the run's
// root under the state directory.
func reachable(dir string) error {
	for d := filepath.Clean(dir); ; d = filepath.Dir(d) {
		st, err := os.Stat(d)
		if err != nil {
			return fmt.Errorf("state dir: %w", err)
		}
		if st.Mode().Perm()&0o001 == 0 {
			return fmt.Errorf("state dir %s: %s has mode %v; the sandbox's uids must be able to traverse it (chmod o+x, or choose another state dir)", dir, d, st.Mode().Perm())
		}
		if d == "/" {
			return nil
		}
	}
}
