package runtimes

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const allNames = "bash, c, c++, javascript, python, ruby, sh"

func TestLookup(t *testing.T) {
	g := Default()
	tests := []struct {
		query string
		want  string // runtime name; "" means unknown
	}{
		{"python", "python"},
		{"py", "python"},
		{"python3", "python"},
		{"PyThOn", "python"},
		{"PY", "python"},
		{"javascript", "javascript"},
		{"js", "javascript"},
		{"node", "javascript"},
		{"ruby", "ruby"},
		{"rb", "ruby"},
		{"Ruby", "ruby"},
		{"bash", "bash"},
		{"sh", "sh"},
		{"c", "c"},
		{"C", "c"},
		{"c++", "c++"},
		{"cpp", "c++"},
		{"CXX", "c++"},
		{"cobol", ""},
		{"", ""},
		{".py", ""}, // an extension is not a name
	}
	for _, tt := range tests {
		t.Run(tt.query, func(t *testing.T) {
			rt, err := g.Lookup(tt.query)
			if tt.want == "" {
				if !errors.Is(err, ErrUnknownRuntime) {
					t.Fatalf("Lookup(%q) = %v, %v; want ErrUnknownRuntime", tt.query, rt, err)
				}
				if want := `unknown runtime "` + tt.query + `": available: ` + allNames; err.Error() != want {
					t.Errorf("Lookup(%q) error = %q, want %q", tt.query, err, want)
				}
				return
			}
			if err != nil {
				t.Fatalf("Lookup(%q): %v", tt.query, err)
			}
			if rt.Name != tt.want {
				t.Errorf("Lookup(%q) = %q, want %q", tt.query, rt.Name, tt.want)
			}
		})
	}
}

func TestForFile(t *testing.T) {
	g := Default()
	tests := []struct {
		path    string
		want    string // runtime name; "" means unknown
		wantErr string // substring of the error
	}{
		{path: "main.py", want: "python"},
		{path: "dir/sub/MAIN.PY", want: "python"},
		{path: "/workspace/a.b.py", want: "python"},
		{path: "x.js", want: "javascript"},
		{path: "x.mjs", want: "javascript"},
		{path: "x.cjs", want: "javascript"},
		{path: "lib/main.rb", want: "ruby"},
		{path: "X.RB", want: "ruby"},
		{path: "x.bash", want: "bash"},
		{path: "x.sh", want: "sh"},
		{path: "x.c", want: "c"},
		{path: "x.cpp", want: "c++"},
		{path: "x.cc", want: "c++"},
		{path: "x.cxx", want: "c++"},
		{path: "main.cob", wantErr: `unknown runtime for "main.cob": file extension ".cob" is not recognised; name one with --runtime (available: ` + allNames + ")"},
		{path: "Makefile", wantErr: `no file extension is not recognised; name one with --runtime`},
		{path: "py", wantErr: "no file extension"},
		{path: "dir.py/main", wantErr: "no file extension"},
		{path: "x.", wantErr: `file extension "."`},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			rt, err := g.ForFile(tt.path)
			if tt.want == "" {
				if !errors.Is(err, ErrUnknownRuntime) {
					t.Fatalf("ForFile(%q) = %v, %v; want ErrUnknownRuntime", tt.path, rt, err)
				}
				if !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("ForFile(%q) error = %q, want it to contain %q", tt.path, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ForFile(%q): %v", tt.path, err)
			}
			if rt.Name != tt.want {
				t.Errorf("ForFile(%q) = %q, want %q", tt.path, rt.Name, tt.want)
			}
		})
	}
}

func TestAllSorted(t *testing.T) {
	var names []string
	for _, rt := range Default().All() {
		names = append(names, rt.Name)
	}
	if got := strings.Join(names, ", "); got != allNames {
		t.Fatalf("All() = %s, want %s", got, allNames)
	}
}

func TestDefaultIsFresh(t *testing.T) {
	a, _ := Default().Lookup("python")
	b, _ := Default().Lookup("python")
	if a == b {
		t.Fatal("two Default registries share a *Runtime")
	}
}

func rt(name string, aliases, exts []string) *Runtime {
	return &Runtime{
		Name: name, Aliases: aliases, Extensions: exts,
		Run: []string{"/usr/bin/" + name, "{entry}"}, Binary: "/usr/bin/" + name,
	}
}

func TestNewDuplicates(t *testing.T) {
	tests := []struct {
		name    string
		rts     []*Runtime
		wantErr string // substring; "" means valid
	}{
		{"distinct", []*Runtime{rt("a", []string{"aa"}, []string{".a"}), rt("b", nil, []string{".b"})}, ""},
		{"empty set", nil, ""},
		{"same name", []*Runtime{rt("a", nil, nil), rt("a", nil, nil)}, `name or alias "a" already used by "a"`},
		{"name case", []*Runtime{rt("a", nil, nil), rt("A", nil, nil)}, `name or alias "A" already used by "a"`},
		{"alias vs name", []*Runtime{rt("a", nil, nil), rt("b", []string{"A"}, nil)}, `name or alias "A" already used by "a"`},
		{"alias vs alias", []*Runtime{rt("a", []string{"x"}, nil), rt("b", []string{"X"}, nil)}, `name or alias "X" already used by "a"`},
		{"alias repeats own name", []*Runtime{rt("a", []string{"a"}, nil)}, `name or alias "a" already used by "a"`},
		{"extension", []*Runtime{rt("a", nil, []string{".x"}), rt("b", nil, []string{".X"})}, `extension ".X" already used by "a"`},
		{"invalid", []*Runtime{{Name: "a"}}, "run is empty"},
		{"nil", []*Runtime{nil}, "nil runtime"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g, err := New(tt.rts...)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("New: %v", err)
				}
				if len(g.All()) != len(tt.rts) {
					t.Fatalf("All() has %d runtimes, want %d", len(g.All()), len(tt.rts))
				}
				return
			}
			if !errors.Is(err, ErrInvalidRuntime) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("New = %v, want ErrInvalidRuntime containing %q", err, tt.wantErr)
			}
		})
	}
}

func writeFile(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "runtimes.json")
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadFile(t *testing.T) {
	tests := []struct {
		name    string
		config  string
		wantErr string            // substring; "" means it loads
		check   map[string]string // after loading: lookup query -> runtime name, or "" for unknown
	}{
		{
			name: "override python",
			config: `[{"name": "Python", "aliases": ["py3"], "extensions": [".py", ".pyw"],
				"run": ["/usr/bin/python3", "-I", "{entry}"], "binary": "/usr/bin/python3",
				"version_cmd": ["/usr/bin/python3", "-V"], "version_regexp": "(\\d+\\.\\d+)", "wasm": {"module": "python", "argv0": "python"}}]`,
			// The override replaces the entry whole: its old aliases go.
			check: map[string]string{"python": "Python", "py3": "Python", "py": "", "python3": "", "bash": "bash"},
		},
		{
			name: "add lua",
			config: `[{"name": "lua", "aliases": ["lua5.4"], "extensions": [".lua"],
				"run": ["/usr/bin/lua5.4", "{entry}"], "binary": "/usr/bin/lua5.4"}]`,
			check: map[string]string{"lua": "lua", "lua5.4": "lua", "python": "python", "rb": "ruby"},
		},
		{
			name:   "empty array",
			config: `[]`,
			check:  map[string]string{"python": "python"},
		},
		{
			name:    "unknown field",
			config:  `[{"name": "ruby", "run": ["/usr/bin/ruby"], "binary": "/usr/bin/ruby", "memory_limit": 5}]`,
			wantErr: `unknown field "memory_limit"`,
		},
		{
			name:    "misspelt field",
			config:  `[{"name": "ruby", "run": ["/usr/bin/ruby"], "binary": "/usr/bin/ruby", "versionCmd": ["/usr/bin/ruby", "-v"]}]`,
			wantErr: `unknown field "versionCmd"`,
		},
		{
			name:    "not an array",
			config:  `{"name": "ruby"}`,
			wantErr: "decode",
		},
		{
			name:    "trailing data",
			config:  `[] []`,
			wantErr: "data after the JSON array",
		},
		{
			name:    "null entry",
			config:  `[null]`,
			wantErr: "entry 0",
		},
		{
			name:    "alias clashes with builtin",
			config:  `[{"name": "ruby", "aliases": ["py"], "run": ["/usr/bin/ruby"], "binary": "/usr/bin/ruby"}]`,
			wantErr: `name or alias "py" already used by "python"`,
		},
		{
			name:    "extension clashes with builtin",
			config:  `[{"name": "zsh", "extensions": [".sh"], "run": ["/usr/bin/zsh"], "binary": "/usr/bin/zsh"}]`,
			wantErr: `extension ".sh" already used by "sh"`,
		},
		{
			name:    "listed twice",
			config:  `[{"name": "r", "run": ["/usr/bin/r"], "binary": "/usr/bin/r"}, {"name": "R", "run": ["/usr/bin/r"], "binary": "/usr/bin/r"}]`,
			wantErr: "listed twice",
		},
		{
			name:    "invalid entry",
			config:  `[{"name": "ruby", "run": ["ruby", "{entry}"], "binary": "/usr/bin/ruby"}]`,
			wantErr: "run[0]",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := Default()
			before := g.All()
			err := g.LoadFile(writeFile(t, tt.config))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("LoadFile = %v, want an error containing %q", err, tt.wantErr)
				}
				after := g.All()
				if len(after) != len(before) {
					t.Fatalf("failed LoadFile changed the registry: %d runtimes, was %d", len(after), len(before))
				}
				for i := range after {
					if after[i] != before[i] {
						t.Fatalf("failed LoadFile changed the registry at %d", i)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("LoadFile: %v", err)
			}
			for query, want := range tt.check {
				got, err := g.Lookup(query)
				switch {
				case want == "" && !errors.Is(err, ErrUnknownRuntime):
					t.Errorf("Lookup(%q) = %v, %v; want ErrUnknownRuntime", query, got, err)
				case want != "" && err != nil:
					t.Errorf("Lookup(%q): %v", query, err)
				case want != "" && got.Name != want:
					t.Errorf("Lookup(%q) = %q, want %q", query, got.Name, want)
				}
			}
		})
	}
}

func TestLoadFileOverrideFields(t *testing.T) {
	g := Default()
	err := g.LoadFile(writeFile(t, `[{"name": "python", "extensions": [".py"],
		"compile": ["/usr/bin/python3", "-m", "py_compile", "{entry}"],
		"run": ["/usr/bin/python3", "-I", "{entry}"], "env": ["PYTHONUNBUFFERED=1"],
		"binary": "/usr/bin/python3"}]`))
	if err != nil {
		t.Fatal(err)
	}
	rt, err := g.ForFile("main.py")
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(rt.RunArgv("main.py", []string{"a"}), " "); got != "/usr/bin/python3 -I main.py a" {
		t.Errorf("RunArgv = %s", got)
	}
	if got := strings.Join(rt.CompileArgv("main.py"), " "); got != "/usr/bin/python3 -m py_compile main.py" {
		t.Errorf("CompileArgv = %s", got)
	}
	if len(rt.Env) != 1 || len(rt.VersionCmd) != 0 {
		t.Errorf("override kept old fields: env %q, version_cmd %q", rt.Env, rt.VersionCmd)
	}
}

func TestLoadFileMissing(t *testing.T) {
	err := Default().LoadFile(filepath.Join(t.TempDir(), "nope.json"))
	if !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("LoadFile of a missing file = %v, want os.ErrNotExist", err)
	}
}

// TestBuiltinsValid: Default does not validate the built-ins (every
// sandboxctl start would compile their version patterns); this does.
func TestBuiltinsValid(t *testing.T) {
	if _, err := New(builtin()...); err != nil {
		t.Fatal(err)
	}
}
