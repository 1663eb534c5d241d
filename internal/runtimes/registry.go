package runtimes

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/sandboxd/sandboxd/internal/run"
)

// probeTimeout bounds one version probe.
const probeTimeout = 5 * time.Second

// Registry is a set of runtimes, looked up by name, alias or file
// extension. It is safe for concurrent use, LoadFile included.
type Registry struct {
	mu     sync.RWMutex
	byName map[string]*Runtime // lower-cased names and aliases
	byExt  map[string]*Runtime // lower-cased extensions
	sorted []*Runtime          // by name

	vmu      sync.Mutex
	versions map[*Runtime]*probe

	// probeTimeout bounds one version probe; tests shorten it.
	probeTimeout time.Duration
}

// Default returns a new registry of the built-in runtimes: bash, c, c++,
// javascript, python and sh. Whether each is installed is a separate
// question (Available).
//
// The built-ins are not validated here: every start of sandboxctl builds
// this registry, and Runtime.Validate compiles each version pattern.
// TestBuiltinsValid validates them.
func Default() *Registry {
	g, err := newRegistry(builtin(), false)
	if err != nil {
		panic("runtimes: built-in set is invalid: " + err.Error())
	}
	return g
}

// New returns a registry of rts. Each runtime must be valid
// (Runtime.Validate), and names, aliases and extensions must be unique
// across all of them, ignoring case.
func New(rts ...*Runtime) (*Registry, error) { return newRegistry(rts, true) }

func newRegistry(rts []*Runtime, validate bool) (*Registry, error) {
	g := &Registry{
		versions:     make(map[*Runtime]*probe),
		probeTimeout: probeTimeout,
	}
	if err := g.set(rts, validate); err != nil {
		return nil, err
	}
	return g, nil
}

// set validates (when validate is set) and indexes rts and, if they are
// all good, makes them the registry's content. The caller holds g.mu for writing (or g is new).
func (g *Registry) set(rts []*Runtime, validate bool) error {
	byName := make(map[string]*Runtime)
	byExt := make(map[string]*Runtime)
	for _, rt := range rts {
		if validate {
			if err := rt.Validate(); err != nil {
				return err
			}
		}
		for _, n := range append([]string{rt.Name}, rt.Aliases...) {
			k := strings.ToLower(n)
			if other, ok := byName[k]; ok {
				return fmt.Errorf("%w %q: name or alias %q already used by %q", ErrInvalidRuntime, rt.Name, n, other.Name)
			}
			byName[k] = rt
		}
		for _, e := range rt.Extensions {
			k := strings.ToLower(e)
			if other, ok := byExt[k]; ok {
				return fmt.Errorf("%w %q: extension %q already used by %q", ErrInvalidRuntime, rt.Name, e, other.Name)
			}
			byExt[k] = rt
		}
	}
	sorted := slices.Clone(rts)
	slices.SortFunc(sorted, func(a, b *Runtime) int {
		return strings.Compare(strings.ToLower(a.Name), strings.ToLower(b.Name))
	})
	g.byName, g.byExt, g.sorted = byName, byExt, sorted
	return nil
}

// Lookup returns the runtime with the given name or alias, ignoring case.
// If there is none, the error wraps ErrUnknownRuntime and lists the
// registered runtimes.
func (g *Registry) Lookup(name string) (*Runtime, error) {
	g.mu.RLock()
	defer g.mu.RUnlock()
	if rt, ok := g.byName[strings.ToLower(name)]; ok {
		return rt, nil
	}
	return nil, fmt.Errorf("%w %s: available: %s", ErrUnknownRuntime, run.Quote(name, run.MaxName), g.namesLocked())
}

// ForFile returns the runtime for the extension of path's file name,
// ignoring case. If there is none, the error wraps ErrUnknownRuntime, names
// the extension and suggests --runtime.
func (g *Registry) ForFile(path string) (*Runtime, error) {
	base := filepath.Base(path)
	ext := filepath.Ext(base)
	g.mu.RLock()
	defer g.mu.RUnlock()
	if rt, ok := g.byExt[strings.ToLower(ext)]; ok {
		return rt, nil
	}
	what := "file extension " + run.Quote(ext, run.MaxName)
	if ext == "" {
		what = "no file extension"
	}
	return nil, fmt.Errorf("%w for %s: %s is not recognised; name one with --runtime (available: %s)",
		ErrUnknownRuntime, run.Quote(path, run.MaxName), what, g.namesLocked())
}

// All returns the registered runtimes sorted by name.
func (g *Registry) All() []*Runtime {
	g.mu.RLock()
	defer g.mu.RUnlock()
	return slices.Clone(g.sorted)
}

// Names lists the names of the runtimes that have what has, in name
// order ("the runtimes with a session kernel").
func (g *Registry) Names(has func(*Runtime) bool) []string {
	var names []string
	for _, rt := range g.All() {
		if has(rt) {
			names = append(names, rt.Name)
		}
	}
	return names
}

func (g *Registry) namesLocked() string {
	names := make([]string, len(g.sorted))
	for i, rt := range g.sorted {
		names[i] = rt.Name
	}
	return strings.Join(names, ", ")
}

// LoadFile adds the runtimes of a JSON config file to the registry. The file
// holds a JSON array of Runtime objects; an unknown field is an error, not a
// silently ignored setting. An entry whose name matches a registered
// runtime's name (ignoring case) replaces it whole; the others are added.
// The result must be valid as for New; on any error the registry is left
// unchanged.
func (g *Registry) LoadFile(path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("load runtimes: %w", err)
	}
	loaded, err := decodeConfig(data)
	if err != nil {
		return fmt.Errorf("load runtimes from %s: %w", path, err)
	}

	g.mu.Lock()
	defer g.mu.Unlock()
	replaced := make(map[string]bool)
	for _, rt := range loaded {
		k := strings.ToLower(rt.Name)
		if replaced[k] {
			return fmt.Errorf("load runtimes from %s: %w %q: listed twice", path, ErrInvalidRuntime, rt.Name)
		}
		replaced[k] = true
	}
	var merged, dropped []*Runtime
	for _, rt := range g.sorted {
		if replaced[strings.ToLower(rt.Name)] {
			dropped = append(dropped, rt)
			continue
		}
		merged = append(merged, rt)
	}
	merged = append(merged, loaded...)
	if err := g.set(merged, true); err != nil {
		return fmt.Errorf("load runtimes from %s: %w", path, err)
	}

	g.vmu.Lock()
	for _, rt := range dropped {
		delete(g.versions, rt)
	}
	g.vmu.Unlock()
	return nil
}

// decodeConfig parses a runtimes config: one JSON array, nothing after it.
func decodeConfig(data []byte) ([]*Runtime, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var rts []*Runtime
	if err := dec.Decode(&rts); err != nil {
		return nil, fmt.Errorf("decode: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("decode: %w: data after the JSON array", ErrInvalidRuntime)
	}
	for i, rt := range rts {
		if rt == nil {
			return nil, fmt.Errorf("entry %d: %w: null", i, ErrInvalidRuntime)
		}
	}
	return rts, nil
}
