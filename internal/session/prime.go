package session

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"sync"
	"time"

	"github.com/sandboxd/sandboxd/internal/isolate"
	"github.com/sandboxd/sandboxd/internal/limits"
	"github.com/sandboxd/sandboxd/internal/run"
	"github.com/sandboxd/sandboxd/internal/runtimes"
	"github.com/sandboxd/sandboxd/internal/workspace"
)

// primed is one kernel's prime (runtimes.Prime): built once, in the
// background, at the first session of its runtime; sessions that start
// before it is done go without.
type primed struct {
	once sync.Once
	// done is closed once the build has ended, built or not.
	done chan struct{}
	mu   sync.Mutex
	file *run.File // nil until built; stays nil when the step cannot run
}

// primes holds each runtime's primed cache, by runtime name.
type primes struct {
	mu sync.Mutex
	m  map[string]*primed
}

// get returns rt's cache file if it is built, and starts building it
// (once) if not; wg waits for the build.
func (ps *primes) get(ctx context.Context, wg *sync.WaitGroup, r *isolate.Runner, rt *runtimes.Runtime) *run.File {
	p := rt.Kernel.Prime
	ps.mu.Lock()
	if ps.m == nil {
		ps.m = map[string]*primed{}
	}
	c := ps.m[rt.Name]
	if c == nil {
		c = &primed{done: make(chan struct{})}
		ps.m[rt.Name] = c
	}
	ps.mu.Unlock()
	c.once.Do(func() {
		if _, err := os.Stat(p.Needs); err != nil {
			close(c.done)
			return
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer close(c.done)
			f, err := buildPrime(ctx, r, rt.Binary, p)
			if err != nil {
				return
			}
			c.mu.Lock()
			c.file = f
			c.mu.Unlock()
		}()
	})
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.file
}

// wait is get, but waits for the build to end (or ctx to): a kernel
// started ahead must be what a session started after the build gets.
func (ps *primes) wait(ctx context.Context, wg *sync.WaitGroup, r *isolate.Runner, rt *runtimes.Runtime) *run.File {
	if f := ps.get(ctx, wg, r, rt); f != nil {
		return f
	}
	ps.mu.Lock()
	c := ps.m[rt.Name]
	ps.mu.Unlock()
	select {
	case <-c.done:
	case <-ctx.Done():
	}
	return ps.get(ctx, wg, r, rt)
}

// primeOut is where the step writes, in its own workspace.
const primeOut = "prime"

func buildPrime(ctx context.Context, r *isolate.Runner, binary string, p *runtimes.Prime) (*run.File, error) {
	ws, err := r.NewWorkspace(16 * limits.MiB)
	if err != nil {
		return nil, err
	}
	defer ws.Close()
	env, err := runtimes.BuildEnv(append([]string{p.DirEnv + "=" + path.Join(workspace.Dir, primeOut)}, p.Env...), nil)
	if err != nil {
		return nil, err
	}
	l := limits.Defaults()
	l.Timeout, l.CPUTime, l.Memory = limits.Duration(time.Minute), limits.Duration(time.Minute), 512*limits.MiB
	res, err := r.Run(ctx, ws, isolate.Exec{Argv: append([]string{binary}, p.Args...), Env: env, Limits: l})
	if err != nil {
		return nil, err
	}
	if res.Status != run.StatusOK {
		return nil, fmt.Errorf("prime the kernel: %s: %s", res.Status, res.Stderr)
	}
	files, _, err := ws.ListFiles(primeOut, 100)
	if err != nil {
		return nil, err
	}
	for _, fi := range files {
		base := path.Base(fi.Name)
		if ok, _ := path.Match(p.Pattern, base); fi.Type != "file" || !ok {
			continue
		}
		fh, _, err := ws.OpenFile(fi.Name)
		if err != nil {
			return nil, err
		}
		b, err := io.ReadAll(io.LimitReader(fh, 8<<20))
		fh.Close()
		if err != nil {
			return nil, err
		}
		return &run.File{Name: path.Join(p.Dir, base), Content: b, Mode: 0o644}, nil
	}
	return nil, errors.New("prime the kernel: the step wrote no " + p.Pattern)
}
