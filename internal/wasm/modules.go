package wasm

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"

	"github.com/sandboxd/sandboxd/internal/limits"
	"github.com/sandboxd/sandboxd/internal/run"
)

// Interpreter is a language runtime compiled to WASI by
// scripts/build-wasm-runtimes.sh.
type Interpreter struct {
	// Name is what Exec.Module names it by: "python" or "quickjs".
	Name string
	// Path is the .wasm file, relative to the runtimes directory.
	Path string
	// VersionKey is its line in the VERSIONS file.
	VersionKey string
	// ReadOnly are host directories, relative to the runtimes directory,
	// mounted read-only at a guest path (the stdlib).
	ReadOnly []Mount
}

// Mount shows a host directory to the guest.
type Mount struct {
	Host  string
	Guest string
}

// Interpreters are the runtimes the build script installs.
var Interpreters = []Interpreter{
	{
		Name: "python", Path: "python/python.wasm", VersionKey: "python",
		// CPython's getpath finds no landmark next to an executable it
		// cannot see, and falls back to its compiled-in prefix,
		// /usr/local: the stdlib is looked for at /usr/local/lib/python3.11.
		ReadOnly: []Mount{{Host: "python/lib", Guest: "/usr/local/lib"}},
	},
	{Name: "quickjs", Path: "quickjs/qjs.wasm", VersionKey: "quickjs"},
}

// LookupInterpreter returns the interpreter named name, if there is one.
func LookupInterpreter(name string) (Interpreter, bool) {
	for _, in := range Interpreters {
		if in.Name == name {
			return in, true
		}
	}
	return Interpreter{}, false
}

// Available reports whether the interpreter is built in the runner's
// runtimes directory; the error says what is missing and how to build it.
func (r *Runner) Available(name string) error {
	_, _, err := r.resolve(name)
	return err
}

// Warm compiles the modules (paths, or "python" and "quickjs") and, in
// ModeWorker, has a worker load them, so that their first run does not wait
// for a compilation (seconds for python.wasm on a cold cache) or a load
// (about 100 ms). The tests call it; a run that finds an interpreter not
// yet compiled starts its compilation, which outlives the run (compiledFor).
func (r *Runner) Warm(ctx context.Context, modules ...string) error {
	if err := r.begin(); err != nil {
		return err
	}
	defer r.runs.Done()
	var paths []string
	for _, m := range modules {
		path, _, err := r.resolve(m)
		if err != nil {
			return err
		}
		_, release, err := r.compiled(ctx, path, warmLimits)
		if err != nil {
			return err
		}
		release()
		paths = append(paths, path)
	}
	return r.exec.warm(ctx, paths)
}

// Versions reads the VERSIONS file the build script wrote: name=version.
func (r *Runner) Versions() (map[string]string, error) {
	p := filepath.Join(r.cfg.RuntimesDir, "VERSIONS")
	f, err := os.Open(p)
	if err != nil {
		return nil, fmt.Errorf("read the wasm runtimes' versions: %w", err)
	}
	defer f.Close()
	v := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, val, ok := strings.Cut(strings.TrimSpace(sc.Text()), "="); ok {
			v[k] = val
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read %s: %w", p, err)
	}
	return v, nil
}

// Built reports whether interpreter name ("python", "quickjs") is built
// in the runtimes directory dir (see RuntimesDir), as Runner.Available
// does, without a Runner; the error says what is missing and how to
// build it.
func Built(dir, name string) error {
	if _, ok := LookupInterpreter(name); !ok {
		return fmt.Errorf("%w: no interpreter %q", ErrInvalid, name)
	}
	_, _, err := resolveIn(RuntimesDir(dir), name)
	return err
}

// RuntimesDir is the runtimes directory of a Runner whose
// Config.RuntimesDir is dir: dir, else $SANDBOXD_WASM_DIR, else
// DefaultRuntimesDir.
func RuntimesDir(dir string) string {
	if dir == "" {
		dir = os.Getenv(RuntimesDirEnv)
	}
	if dir == "" {
		dir = DefaultRuntimesDir
	}
	return dir
}

// resolve maps Exec.Module to a .wasm path and the read-only mounts it
// needs.
func (r *Runner) resolve(module string) (string, []Mount, error) {
	return resolveIn(r.cfg.RuntimesDir, module)
}

// resolveIn is resolve in runtimes directory dir.
func resolveIn(dir, module string) (string, []Mount, error) {
	in, ok := LookupInterpreter(module)
	if !ok {
		if module == "" {
			return "", nil, fmt.Errorf("%w: no module to run", ErrInvalid)
		}
		if _, err := os.Stat(module); err != nil {
			return "", nil, fmt.Errorf("%w: module %q: %w", ErrInvalid, module, err)
		}
		return module, nil, nil
	}
	path := filepath.Join(dir, in.Path)
	missing := path
	_, err := os.Stat(path)
	var mounts []Mount
	for _, m := range in.ReadOnly {
		host := filepath.Join(dir, m.Host)
		if err == nil {
			if _, err = os.Stat(host); err != nil {
				missing = host
			}
		}
		mounts = append(mounts, Mount{Host: host, Guest: m.Guest})
	}
	if err != nil {
		return "", nil, &NotBuiltError{Interpreter: module, Missing: missing, Dir: dir, Err: err}
	}
	return path, mounts, nil
}

// storeUpload writes module bytes to the runner's uploads directory under
// their SHA-256, once, and returns the path: from there on an upload is a
// module file like any other, compiled once per content and loaded by
// workers by path.
func (r *Runner) storeUpload(b []byte) (string, error) {
	r.uploadsOnce.Do(func() {
		dir, err := os.MkdirTemp(r.cfg.TempDir, "sandboxd-wasm-uploads-")
		if err == nil {
			// Workers (other uids) open uploads by name, a hash; nobody
			// can list them.
			err = os.Chmod(dir, 0o711)
		}
		// Under mu: evictLocked reads it without going through the Once.
		r.mu.Lock()
		r.uploads, r.uploadsErr = dir, err
		r.mu.Unlock()
	})
	if r.uploadsErr != nil {
		return "", fmt.Errorf("create the uploads directory: %w", r.uploadsErr)
	}
	sum := sha256.Sum256(b)
	path := filepath.Join(r.uploads, hex.EncodeToString(sum[:])+".wasm")
	if _, err := os.Stat(path); err == nil {
		return path, nil
	}
	// Written aside and renamed: a concurrent run of the same upload sees
	// the whole file or none.
	f, err := os.CreateTemp(r.uploads, "upload-")
	if err != nil {
		return "", fmt.Errorf("store the module: %w", err)
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Chmod(0o644)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		os.Remove(f.Name())
		return "", fmt.Errorf("store the module: %w", err)
	}
	return path, nil
}

// moduleKey identifies one version of a module file: a rebuilt
// interpreter is compiled again.
type moduleKey struct {
	path  string
	size  int64
	mtime time.Time
}

// moduleEntry is a compiled module, or the compilation in progress that
// concurrent runs of the same module wait for.
type moduleEntry struct {
	done     chan struct{}
	compiled wazero.CompiledModule
	err      error
	// minPages is the initial size of its memory, which a memory limit
	// must leave room for.
	minPages uint32
	lastUse  time.Time
	refs     int
}

// maxModules bounds the compiled modules a Runner keeps in memory; the
// least recently used one not in use goes first. The interpreters are two;
// the rest are user modules, each compiled once while it stays in the
// cache.
const maxModules = 32

// compileLimits bound a compilation in ModeWorker: the memory it may use
// (above the compile worker's own) and the time it may take. A run's
// compilation gets the run's memory and wall-clock limits.
type compileLimits struct {
	memory  uint64
	timeout time.Duration
}

// warmLimits bound the compilation of the modules an operator names to
// Warm (the interpreters): python.wasm takes seconds and hundreds of MB.
var warmLimits = compileLimits{memory: 4 << 30, timeout: loadGrace}

// compiledFor returns the compiled module a run of e needs.
//
// A module the run brings (a path or uploaded bytes) is the tenant's: it
// compiles under the run's memory and wall-clock limits, and a compilation
// stopped at one is dropped. An interpreter is the operator's: it compiles
// under warmLimits whichever run asks first, and a run waits for it only
// as long as its own wall-clock limit. The run that gives up reports a
// timeout, but the compilation goes on into the caches, so a loaded host
// does not kill the same compilation at every run's deadline, forever.
func (r *Runner) compiledFor(ctx context.Context, e Exec, path string, l limits.Limits) (*moduleEntry, func(), error) {
	if _, ok := LookupInterpreter(e.Module); !ok || len(e.ModuleBytes) > 0 {
		return r.compiled(ctx, path, compileLimits{memory: uint64(l.Memory), timeout: l.Timeout.Std()})
	}
	wait, cancel := context.WithTimeoutCause(ctx, l.Timeout.Std(), errTimeout)
	defer cancel()
	mod, release, err := r.compiled(wait, path, warmLimits)
	if err != nil && ctx.Err() == nil && errors.Is(context.Cause(wait), errTimeout) {
		return nil, nil, &compileLimitError{cause: errTimeout}
	}
	return mod, release, err
}

// compiled returns the compiled module at path, compiling it once for all
// concurrent callers, under the first caller's limits. release must be
// called when the run is done with it.
func (r *Runner) compiled(ctx context.Context, path string, lim compileLimits) (e *moduleEntry, release func(), err error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: module: %w", ErrInvalid, err)
	}
	if !st.Mode().IsRegular() {
		return nil, nil, fmt.Errorf("%w: module %s is not a regular file", ErrInvalid, path)
	}
	key := moduleKey{path: path, size: st.Size(), mtime: st.ModTime()}
	r.mu.Lock()
	e, ok := r.modules[key]
	if !ok {
		e = &moduleEntry{done: make(chan struct{})}
		r.modules[key] = e
		r.evictLocked(ctx)
		// The compilation is shared: a caller that gives up must not fail
		// it for the others, so it runs without the caller's cancellation.
		r.compiles.Add(1)
		go r.compile(context.WithoutCancel(ctx), key, e, lim)
	}
	e.refs++
	e.lastUse = time.Now()
	r.mu.Unlock()
	release = func() {
		r.mu.Lock()
		e.refs--
		r.mu.Unlock()
	}
	select {
	case <-e.done:
	case <-ctx.Done():
		release()
		return nil, nil, ctx.Err()
	}
	if e.err != nil {
		release()
		return nil, nil, e.err
	}
	return e, release, nil
}

// compile compiles the module for e: in a compile worker in ModeWorker,
// here otherwise. Close waits for it (r.compiles).
func (r *Runner) compile(ctx context.Context, key moduleKey, e *moduleEntry, lim compileLimits) {
	defer r.compiles.Done()
	defer close(e.done)
	if pool, ok := r.exec.(*workerPool); ok {
		r.compileInWorker(ctx, pool, key, e, lim)
		return
	}
	path := key.path
	t := time.Now()
	b, err := os.ReadFile(path)
	if err != nil {
		e.err = fmt.Errorf("%w: read module: %w", ErrInvalid, err)
		return
	}
	cm, err := r.rt.CompileModule(ctx, b)
	if err != nil {
		// wazero's messages can name what the module declares (its
		// imports, exports, custom sections): text the module chose.
		e.err = fmt.Errorf("%w: compile %s: %w", ErrInvalid, filepath.Base(path), run.ClipError(err, run.MaxMessage))
		return
	}
	if err := checkModule(cm); err != nil {
		_ = cm.Close(ctx)
		e.err = fmt.Errorf("%w: %s: %w", ErrInvalid, filepath.Base(path), err)
		return
	}
	e.minPages = minPages(cm)
	r.log.Debug("wasm module compiled", "module", path, "bytes", len(b), "took", time.Since(t))
	r.tidyCache(t)
	e.compiled = cm
}

// compileInWorker has a compile worker compile the module into the disk
// cache, under lim. A compilation stopped at a limit is the caller's run's
// result, not the module's: the entry is dropped, so that a run with
// limits of its own tries again.
func (r *Runner) compileInWorker(ctx context.Context, pool *workerPool, key moduleKey, e *moduleEntry, lim compileLimits) {
	t := time.Now()
	info, err := pool.compile(ctx, key.path, lim)
	var cle *compileLimitError
	switch {
	case errors.As(err, &cle):
		e.err = err
		r.mu.Lock()
		if r.modules[key] == e {
			delete(r.modules, key)
		}
		r.mu.Unlock()
		return
	case err != nil:
		e.err = fmt.Errorf("compile %s: %w", filepath.Base(key.path), err)
		return
	case info.Err != "":
		// wazero's messages can name what the module declares: text the
		// module chose, clipped again after crossing the pipe.
		e.err = fmt.Errorf("%w: %s: %s", ErrInvalid, filepath.Base(key.path), run.Clip(info.Err, run.MaxMessage))
		return
	}
	e.minPages = info.MinPages
	r.log.Debug("wasm module compiled by a worker", "module", key.path, "took", time.Since(t))
	r.tidyCache(t)
}

// tidyCache bounds the disk cache and makes it readable to the workers
// after a compilation that started at t.
func (r *Runner) tidyCache(t time.Time) {
	if r.cfg.NoDiskCache {
		return
	}
	if n, err := tidyCache(r.cfg.CacheDir, r.cfg.CacheMaxBytes, t); err != nil {
		r.log.Warn("tidy the wasm compilation cache", "err", err)
	} else if n > 0 {
		r.log.Debug("wasm compilation cache evicted", "files", n)
	}
}

// minPages is the initial size of the module's memory, in pages.
func minPages(cm wazero.CompiledModule) uint32 {
	var n uint32
	for _, m := range cm.ExportedMemories() {
		n = max(n, m.Min())
	}
	for _, m := range cm.ImportedMemories() {
		n = max(n, m.Min())
	}
	return n
}

// checkModule refuses what the sandbox cannot run: a module that imports
// anything but WASI preview1 (there is nothing else to link it to), or a
// module without _start (a reactor or a library, not a command).
func checkModule(cm wazero.CompiledModule) error {
	for _, f := range cm.ImportedFunctions() {
		if mod, name, _ := f.Import(); mod != wasi_snapshot_preview1.ModuleName {
			// Both names are the module's: quoted, and bounded.
			return fmt.Errorf("imports %s: only %s is provided", run.Quote(mod+"."+name, run.MaxName), wasi_snapshot_preview1.ModuleName)
		}
	}
	if _, ok := cm.ExportedFunctions()["_start"]; !ok {
		return errors.New("exports no _start function: only WASI commands can run")
	}
	return nil
}

// evictLocked drops the least recently used compiled modules not in use
// while there are more than maxModules. r.mu is held.
func (r *Runner) evictLocked(ctx context.Context) {
	for len(r.modules) > maxModules {
		var oldest moduleKey
		var victim *moduleEntry
		for k, e := range r.modules {
			select {
			case <-e.done:
			default:
				continue // still compiling
			}
			if e.refs == 0 && (victim == nil || e.lastUse.Before(victim.lastUse)) {
				oldest, victim = k, e
			}
		}
		if victim == nil {
			return // every one is in use: let the map grow for now
		}
		delete(r.modules, oldest)
		if victim.compiled != nil {
			_ = victim.compiled.Close(ctx)
		}
		if r.uploads != "" && filepath.Dir(oldest.path) == r.uploads {
			// An upload nobody runs any more; stored again if it comes
			// back.
			_ = os.Remove(oldest.path)
		}
	}
}

// instantiateWASI adds WASI preview1 to the runtime, once for all runs.
func instantiateWASI(ctx context.Context, rt wazero.Runtime) error {
	if _, err := wasi_snapshot_preview1.Instantiate(ctx, rt); err != nil {
		return fmt.Errorf("instantiate WASI preview1: %w", err)
	}
	return nil
}
