package tests

import (
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/sandboxd/sandboxd/"

// The layers of the module, by package (module-relative). The rules of
// TestArchitecture are stated over them.
var (
	// engine runs code: the backends and what plans and dispatches runs.
	engine = []string{
		"internal/isolate", "internal/isolate/nsinit", "internal/wasm", "internal/executor",
		"internal/pool", "internal/session", "internal/output",
	}
	// frontEnds speak to people, programs and agents.
	frontEnds = []string{
		"internal/api", "internal/mcpserver", "internal/e2b", "internal/cli", "internal/client",
		"internal/daemon", "internal/wire", "internal/metrics",
	}
	// contract is the floor both backends and every front end stand on.
	contract = []string{"internal/run", "internal/limits", "internal/errdefs", "internal/workspace", "internal/runtimes"}
)

// archRule forbids the packages matching from from depending, directly or
// not, on any package whose path has one of the prefixes in to.
type archRule struct {
	why  string
	from []string
	to   []string
}

var archRules = []archRule{
	{"the wasm backend does not know the process backend", []string{"internal/wasm"}, []string{module + "internal/isolate"}},
	{"the engine imports no front end", engine, prefixed(frontEnds)},
	{"the contract imports no engine and no front end", contract, prefixed(append(slices.Clone(engine), frontEnds...))},
	{"a client links no engine code (no cgroups, seccomp or wazero)", []string{"internal/client", "internal/wire"},
		append(prefixed(engine), "github.com/containerd/cgroups", "github.com/elastic/go-seccomp-bpf", "github.com/tetratelabs/wazero")},
	{"limits is a leaf: it imports nothing internal", []string{"internal/limits"}, []string{module + "internal/"}},
	{"jsonstream is a leaf: it imports nothing internal", []string{"internal/jsonstream"}, []string{module + "internal/"}},
	{"spool is a leaf: the contract names its types", []string{"internal/spool"}, []string{module + "internal/"}},
	{"the init stage imports nothing of the daemon", []string{"internal/isolate/nsinit"}, []string{module}},
	{"the init binary links nsinit alone: every run pays its start-up", []string{"cmd/sandboxd-init"},
		append(prefixed([]string{"internal/isolate/seccomp", "internal/run", "internal/limits", "internal/workspace"}),
			"github.com/prometheus", "github.com/spf13/cobra", "github.com/modelcontextprotocol", "github.com/tetratelabs/wazero",
			"google.golang.org/protobuf", "github.com/containerd", "github.com/elastic/go-seccomp-bpf", "golang.org/x/net")},
}

func prefixed(pkgs []string) []string {
	out := make([]string, len(pkgs))
	for i, p := range pkgs {
		out[i] = module + p
	}
	return out
}

// TestArchitecture reads the module's import graph with go list and fails
// on an import that breaks a layering rule, naming the chain of imports
// that leads to it.
func TestArchitecture(t *testing.T) {
	imports := importGraph(t)
	for _, rule := range archRules {
		for _, from := range rule.from {
			pkg := module + from
			if _, ok := imports[pkg]; !ok {
				t.Errorf("rule %q names %s, which is not a package of the module", rule.why, from)
				continue
			}
			if chain := forbiddenChain(imports, pkg, rule.to); chain != nil {
				t.Errorf("%s: %s", rule.why, strings.ReplaceAll(strings.Join(chain, " -> "), module, ""))
			}
		}
	}
}

// TestInitBinaryDeps: beyond the deny list of archRules, the init binary
// links the standard library, golang.org/x/sys and nsinit, and nothing
// else, so that a new dependency of nsinit is a choice made here.
func TestInitBinaryDeps(t *testing.T) {
	imports := importGraph(t)
	allowed := func(p string) bool {
		first, _, _ := strings.Cut(p, "/")
		return !strings.Contains(first, ".") || strings.HasPrefix(p, "golang.org/x/sys/") ||
			p == module+"internal/isolate/nsinit" || p == module+"cmd/sandboxd-init"
	}
	seen := map[string]bool{}
	queue := []string{module + "cmd/sandboxd-init"}
	if _, ok := imports[queue[0]]; !ok {
		t.Fatal("cmd/sandboxd-init is not a package of the module")
	}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		if seen[p] {
			continue
		}
		seen[p] = true
		if !allowed(p) {
			t.Errorf("cmd/sandboxd-init links %s: only the standard library, golang.org/x/sys and nsinit belong in the init binary", p)
		}
		queue = append(queue, imports[p]...)
	}
}

// TestArchitectureCatchesABreak: the check finds a forbidden import in a
// graph that has one, so a passing TestArchitecture means something.
func TestArchitectureCatchesABreak(t *testing.T) {
	g := map[string][]string{
		module + "internal/wasm":    {module + "internal/run", module + "internal/helper"},
		module + "internal/helper":  {module + "internal/isolate"},
		module + "internal/isolate": nil,
		module + "internal/run":     nil,
	}
	chain := forbiddenChain(g, module+"internal/wasm", []string{module + "internal/isolate"})
	want := []string{module + "internal/wasm", module + "internal/helper", module + "internal/isolate"}
	if !slices.Equal(chain, want) {
		t.Errorf("chain %v, want %v", chain, want)
	}
	if c := forbiddenChain(g, module+"internal/run", []string{module + "internal/isolate"}); c != nil {
		t.Errorf("a clean package has chain %v", c)
	}
}

// importGraph is every package of the module and of its dependencies,
// with its imports (test imports left out: the rules are about what the
// binaries link).
func importGraph(t *testing.T) map[string][]string {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), "go", "list", "-deps", "-json=ImportPath,Imports", "./...")
	cmd.Dir = ".."
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	g := map[string][]string{}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for {
		var p struct {
			ImportPath string
			Imports    []string
		}
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("go list output: %v", err)
		}
		g[p.ImportPath] = p.Imports
	}
	return g
}

// forbiddenChain returns the shortest chain of imports from pkg to a
// package with one of the prefixes, or nil.
func forbiddenChain(g map[string][]string, pkg string, prefixes []string) []string {
	prev := map[string]string{pkg: ""}
	queue := []string{pkg}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		for _, q := range g[p] {
			if _, seen := prev[q]; seen {
				continue
			}
			prev[q] = p
			if slices.ContainsFunc(prefixes, func(pre string) bool { return strings.HasPrefix(q, pre) }) {
				var chain []string
				for c := q; c != ""; c = prev[c] {
					chain = append(chain, c)
				}
				slices.Reverse(chain)
				return chain
			}
			queue = append(queue, q)
		}
	}
	return nil
}

// TestReadmeLayout: README's Layout names every package directory under
// internal/ and cmd/, and nothing that is not there.
func TestReadmeLayout(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, layout, ok := strings.Cut(string(readme), "## Layout\n\n```\n")
	if !ok {
		t.Fatal("README has no Layout block")
	}
	layout, _, _ = strings.Cut(layout, "```")
	listed := map[string]bool{}
	for _, line := range strings.Split(layout, "\n") {
		if f := strings.Fields(line); len(f) > 0 {
			listed[strings.TrimSuffix(f[0], "/")] = true
		}
	}
	for _, top := range []string{"internal", "cmd"} {
		ents, err := os.ReadDir("../" + top)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ents {
			if e.IsDir() && !listed[top+"/"+e.Name()] {
				t.Errorf("README's Layout does not list %s/%s", top, e.Name())
			}
		}
	}
	for dir := range listed {
		if st, err := os.Stat("../" + dir); err != nil || !st.IsDir() {
			t.Errorf("README's Layout lists %s, which is not a directory", dir)
		}
	}
}
