package session

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/sandboxd/sandboxd/internal/isolate"
	"github.com/sandboxd/sandboxd/internal/limits"
	"github.com/sandboxd/sandboxd/internal/run"
	"github.com/sandboxd/sandboxd/internal/runtimes"
)

// matplotlib scans the host's fonts on its first import in a fresh config
// directory and writes the result as fontlist-vNNN.json: about 0.6 s of a
// session's first plot. fontCache builds that list once, in a sandbox of
// its own (the sandbox sees the same /usr as every session), and sessions
// start with a copy in their workspace's reserved directory. matplotlib
// checks the list's version and rebuilds a stale one itself.
type fontCache struct {
	once sync.Once
	mu   sync.Mutex
	file *run.File // nil until built; stays nil when there is no matplotlib
}

// mplConfigDir is MPLCONFIGDIR in a session: the workspace's reserved
// directory, which clients cannot list or name.
const mplConfigDir = ".sandboxd/matplotlib"

// matplotlibInstalled is where Debian's python3-matplotlib lives.
const matplotlibInstalled = "/usr/lib/python3/dist-packages/matplotlib"

// start builds the cache in the background, once; wg waits for it.
func (c *fontCache) start(ctx context.Context, wg *sync.WaitGroup, r *isolate.Runner, python string) {
	c.once.Do(func() {
		if _, err := os.Stat(matplotlibInstalled); err != nil {
			return
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			f, err := buildFontCache(ctx, r, python)
			if err != nil {
				return
			}
			c.mu.Lock()
			c.file = f
			c.mu.Unlock()
		}()
	})
}

// get returns the cache file when it is built.
func (c *fontCache) get() *run.File {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.file
}

func buildFontCache(ctx context.Context, r *isolate.Runner, python string) (*run.File, error) {
	ws, err := r.NewWorkspace(16 * limits.MiB)
	if err != nil {
		return nil, err
	}
	defer ws.Close()
	env, err := runtimes.BuildEnv([]string{"MPLCONFIGDIR=/workspace/mpl", "MPLBACKEND=Agg"}, nil)
	if err != nil {
		return nil, err
	}
	l := limits.Defaults()
	l.Timeout, l.CPUTime, l.Memory = limits.Duration(time.Minute), limits.Duration(time.Minute), 512*limits.MiB
	res, err := r.Run(ctx, ws, isolate.Exec{Argv: []string{python, "-c", "import matplotlib.font_manager"}, Env: env, Limits: l})
	if err != nil {
		return nil, err
	}
	if res.Status != run.StatusOK {
		return nil, fmt.Errorf("build the font cache: %s: %s", res.Status, res.Stderr)
	}
	files, _, err := ws.ListFiles("mpl", 100)
	if err != nil {
		return nil, err
	}
	for _, fi := range files {
		base := path.Base(fi.Name)
		if fi.Type != "file" || !strings.HasPrefix(base, "fontlist-") || !strings.HasSuffix(base, ".json") {
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
		return &run.File{Name: mplConfigDir + "/" + base, Content: b, Mode: 0o644}, nil
	}
	return nil, errors.New("build the font cache: matplotlib wrote no font list")
}
