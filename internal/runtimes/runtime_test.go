package runtimes

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

func TestArgv(t *testing.T) {
	g := Default()
	tests := []struct {
		runtime     string
		entry       string
		args        []string
		wantCompile []string
		wantRun     []string
	}{
		{
			runtime: "python", entry: "main.py",
			wantRun: []string{"/usr/bin/python3", "main.py"},
		},
		{
			runtime: "python", entry: "dir with space/main.py",
			args:    []string{"two words", "", "--flag=x y"},
			wantRun: []string{"/usr/bin/python3", "dir with space/main.py", "two words", "", "--flag=x y"},
		},
		{
			// The user's args are data: placeholders in them stay as typed.
			runtime: "js", entry: "a.js",
			args:    []string{"{entry}", "{binary}", "x{entry}y"},
			wantRun: []string{"/usr/bin/node", "a.js", "{entry}", "{binary}", "x{entry}y"},
		},
		{
			runtime: "rb", entry: "main.rb", args: []string{"-w"},
			wantRun: []string{"/usr/bin/ruby", "main.rb", "-w"},
		},
		{
			// An entry name that looks like an option is made a path.
			runtime: "sh", entry: "-c.sh",
			wantRun: []string{"/usr/bin/sh", "./-c.sh"},
		},
		{
			// Substitution is one pass: a placeholder inside the entry
			// name is not expanded again.
			runtime: "bash", entry: "{binary}.bash",
			wantRun: []string{"/usr/bin/bash", "{binary}.bash"},
		},
		{
			runtime: "c", entry: "src/main.c", args: []string{"{entry}"},
			wantCompile: []string{"/usr/bin/gcc", "-O2", "-std=gnu17", "-o", BinaryPath, "src/main.c", "-lm"},
			wantRun:     []string{"./" + BinaryPath, "{entry}"},
		},
		{
			runtime: "CPP", entry: "main.cc",
			wantCompile: []string{"/usr/bin/g++", "-O2", "-std=gnu++17", "-o", BinaryPath, "main.cc"},
			wantRun:     []string{"./" + BinaryPath},
		},
	}
	for _, tt := range tests {
		t.Run(tt.runtime+"/"+tt.entry, func(t *testing.T) {
			rt, err := g.Lookup(tt.runtime)
			if err != nil {
				t.Fatal(err)
			}
			if got := rt.CompileArgv(tt.entry); !slices.Equal(got, tt.wantCompile) || (got == nil) != (tt.wantCompile == nil) {
				t.Errorf("CompileArgv(%q) = %q, want %q", tt.entry, got, tt.wantCompile)
			}
			if got := rt.RunArgv(tt.entry, tt.args); !slices.Equal(got, tt.wantRun) {
				t.Errorf("RunArgv(%q, %q) = %q, want %q", tt.entry, tt.args, got, tt.wantRun)
			}
		})
	}
}

func TestRunArgvDoesNotAlias(t *testing.T) {
	rt, err := Default().Lookup("python")
	if err != nil {
		t.Fatal(err)
	}
	args := make([]string, 1, 8)
	args[0] = "a"
	argv := rt.RunArgv("x.py", args)
	argv[0] = "changed"
	if rt.Run[0] != "/usr/bin/python3" {
		t.Fatalf("RunArgv result aliases Runtime.Run: Run[0] = %q", rt.Run[0])
	}
}

func TestValidate(t *testing.T) {
	ok := func() *Runtime {
		return &Runtime{Name: "x", Run: []string{"/usr/bin/x", "{entry}"}, Binary: "/usr/bin/x"}
	}
	tests := []struct {
		name    string
		mutate  func(*Runtime)
		wantErr string // substring; "" means valid
	}{
		{"valid", func(*Runtime) {}, ""},
		{"empty name", func(r *Runtime) { r.Name = "" }, "name is empty"},
		{"space in alias", func(r *Runtime) { r.Aliases = []string{"a b"} }, "alias"},
		{"empty run", func(r *Runtime) { r.Run = nil }, "run is empty"},
		{"relative run", func(r *Runtime) { r.Run = []string{"python3"} }, "run[0]"},
		{"dot-slash run", func(r *Runtime) { r.Run = []string{"./{binary}"} }, ""},
		{"empty compile", func(r *Runtime) { r.Compile = []string{} }, "compile is empty"},
		{"relative compile", func(r *Runtime) { r.Compile = []string{"gcc"} }, "compile[0]"},
		{"extension without dot", func(r *Runtime) { r.Extensions = []string{"py"} }, "extension"},
		{"extension with slash", func(r *Runtime) { r.Extensions = []string{"./py"} }, "extension"},
		{"bad env", func(r *Runtime) { r.Env = []string{"NOEQUALS"} }, "env"},
		{"empty env key", func(r *Runtime) { r.Env = []string{"=x"} }, "env"},
		{"relative binary", func(r *Runtime) { r.Binary = "x" }, "binary"},
		{"unclean binary", func(r *Runtime) { r.Binary = "/usr/../usr/bin/x" }, "binary"},
		{"relative version cmd", func(r *Runtime) { r.VersionCmd = []string{"x", "--version"} }, "version_cmd"},
		{"bad regexp", func(r *Runtime) { r.VersionRegexp = "(" }, "version_regexp"},
		{"wasm without a module", func(r *Runtime) { r.Wasm = &WasmBuild{Argv0: "x"} }, "wasm"},
		{"wasm module with a path", func(r *Runtime) { r.Wasm = &WasmBuild{Module: "../x", Argv0: "x"} }, "wasm"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := ok()
			tt.mutate(r)
			err := r.Validate()
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("Validate() = %v, want nil", err)
			case tt.wantErr != "" && err == nil:
				t.Fatalf("Validate() = nil, want an error containing %q", tt.wantErr)
			case err != nil && (!strings.Contains(err.Error(), tt.wantErr) || !errors.Is(err, ErrInvalidRuntime)):
				t.Fatalf("Validate() = %v, want ErrInvalidRuntime containing %q", err, tt.wantErr)
			}
		})
	}
}
