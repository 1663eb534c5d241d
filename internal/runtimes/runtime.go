// Package runtimes is the registry of languages the sandbox can run: how to
// find a runtime by name or file extension, the argv that compiles and runs
// an entry file inside the sandbox, and the version installed on the host.
//
// The registry only describes how to run; it never runs untrusted code. The
// one thing it executes is the version probe, a trusted host binary started
// directly with an argv (no shell).
package runtimes

import (
	"fmt"
	"path"
	"regexp"
	"strings"
)

// BinaryPath is the workspace-relative path the compile step writes its
// output to, and the run step of a compiled runtime executes. Its directory
// does not exist in a fresh workspace: the backend creates it before the
// compile step.
const BinaryPath = ".sandboxd/bin/program"

// Placeholders substituted in Compile and Run (not in the user's args).
const (
	EntryPlaceholder  = "{entry}"
	BinaryPlaceholder = "{binary}"
)

// Runtime describes one language. A Runtime held by a Registry must not be
// modified: the registry keys its version cache by the pointer.
type Runtime struct {
	// Name is the canonical name ("python"). Names, aliases and extensions
	// are matched case-insensitively.
	Name string `json:"name"`
	// Title is the language's name as people write it ("Python",
	// "JavaScript"), for prompts and Jupyter's display_name; empty means
	// Name.
	Title string `json:"title,omitempty"`
	// Aliases are other names Lookup accepts ("py", "python3").
	Aliases []string `json:"aliases,omitempty"`
	// Extensions are the file extensions ForFile maps to this runtime,
	// with the dot (".py").
	Extensions []string `json:"extensions,omitempty"`
	// Compile, if non-nil, is the argv that compiles the entry file inside
	// the sandbox. Placeholders: "{entry}" (the entry file's
	// workspace-relative name) and "{binary}" (BinaryPath).
	Compile []string `json:"compile,omitempty"`
	// Run is the argv that runs the program, with the same placeholders;
	// the user's args are appended after it. Run[0] is resolved inside the
	// sandbox, which has no PATH: it is absolute or starts with "./".
	Run []string `json:"run"`
	// Env are extra KEY=VALUE entries for the sandbox environment.
	Env []string `json:"env,omitempty"`
	// VersionCmd is the host argv that prints the version. Empty, or a
	// VersionCmd[0] that does not exist, gives the version "unknown".
	VersionCmd []string `json:"version_cmd,omitempty"`
	// VersionRegexp extracts the version from the probe's combined output:
	// its first group if it has one, else the whole match. Empty means the
	// first line of the output.
	VersionRegexp string `json:"version_regexp,omitempty"`
	// Binary is the absolute host path of the interpreter or compiler; the
	// runtime is available only if it exists and is executable.
	Binary string `json:"binary"`
	// Wasm says how the runtime runs on the wasm backend; nil when it does
	// not run there.
	Wasm *WasmBuild `json:"wasm,omitempty"`
	// Warm is the runner a warm pool keeps started ahead of a run; nil
	// when the runtime has none (its runs always start cold).
	Warm *Program `json:"-"`
	// Kernel is the session kernel (the protocol is in
	// kernel/PROTOCOL.md); nil when the runtime has no sessions.
	Kernel *Program `json:"-"`
	// Names are the runtime's names in the protocols sandboxd speaks.
	Names Names `json:"names,omitzero"`
}

// WasmBuild is a runtime's interpreter built for WASI
// (scripts/build-wasm-runtimes.sh).
type WasmBuild struct {
	// Module names the interpreter in the wasm backend's runtimes
	// directory ("python", "quickjs").
	Module string `json:"module"`
	// Argv0 is the interpreter's argv[0] ("python", "qjs").
	Argv0 string `json:"argv0"`
}

// Program is a program of sandboxd's own that a runtime's interpreter runs
// in the sandbox: a warm runner or a session kernel. Its source is
// embedded in sandboxd and written, read-only, into the workspace's
// reserved directory, so nothing is installed on the host.
type Program struct {
	// Name is its workspace-relative path (".sandboxd/kernel/python.py").
	Name string
	// Source is its text.
	Source []byte
	// Flags go to the interpreter before the program's file.
	Flags []string
	// StartEnv are prefixes of environment variables that act only at the
	// interpreter's start ("PYTHON"): a run that sets one cannot use a
	// runner started before it.
	StartEnv []string
	// Prime, for a kernel, is a cache its sessions start with; nil: none.
	Prime *Prime
	// Quit, for a kernel, is what a user types at a REPL to end the
	// session ("exit()": the kernel answers it as a SystemExit error);
	// empty when there is nothing but the end of input.
	Quit string
}

// DisplayName is Title, or Name when it has none.
func (r *Runtime) DisplayName() string {
	if r.Title != "" {
		return r.Title
	}
	return r.Name
}

// Prime is a one-time step whose output every session of a kernel starts
// with: a cache its interpreter would otherwise build in each session's
// first seconds (matplotlib's font list: about 0.6 s of a first plot).
// The session manager runs it once, in a sandbox of its own (which sees
// the same /usr as every session), and copies the file it wrote into each
// session's reserved directory. A session whose caller sets DirEnv goes
// without.
type Prime struct {
	// Needs is a host path without which the step is not worth running
	// (the library it primes is not installed).
	Needs string
	// Args follow the interpreter in the step's argv; Env is added to the
	// base environment.
	Args, Env []string
	// DirEnv names the variable that tells the interpreter its cache
	// directory (MPLCONFIGDIR): set to the step's output directory, and
	// in a session to Dir.
	DirEnv string
	// Dir is the cache's directory in a session's workspace, under the
	// reserved directory.
	Dir string
	// Pattern picks the file kept, by base name (path.Match:
	// "fontlist-*.json").
	Pattern string
}

// Names are a runtime's names in other protocols. Empty means the
// protocol has none for it (Piston: no "runtime" field) or takes Name.
type Names struct {
	// Piston is Piston's "runtime" field: the program behind the language
	// ("gcc" for c and c++, "node" for javascript).
	Piston string `json:"piston,omitempty"`
	// Jupyter is the kernelspec name a Jupyter client asks for ("python3").
	Jupyter string `json:"jupyter,omitempty"`
	// E2B is the language name of E2B's code interpreter ("js").
	E2B string `json:"e2b,omitempty"`
}

// Backends name the backends that offer this runtime: the process backend
// always, the wasm backend when it has a build for it.
func (r *Runtime) Backends() []string {
	if r.Wasm != nil {
		return []string{"process", "wasm"}
	}
	return []string{"process"}
}

// CompileArgv returns the compile argv for entry with the placeholders
// substituted, or nil when the runtime is not compiled.
func (r *Runtime) CompileArgv(entry string) []string {
	if r.Compile == nil {
		return nil
	}
	return substitute(r.Compile, entry, nil)
}

// RunArgv returns the run argv for entry with the placeholders substituted,
// followed by args verbatim: the user's args are never substituted.
func (r *Runtime) RunArgv(entry string, args []string) []string {
	return substitute(r.Run, entry, args)
}

// substitute expands the placeholders of tmpl in one pass, so an entry name
// that itself contains "{binary}" is not expanded again, and appends args
// untouched.
func substitute(tmpl []string, entry string, args []string) []string {
	// An entry named "-c.py" would be read as an option by the interpreter
	// or compiler; "./-c.py" names the same file and cannot be.
	if strings.HasPrefix(entry, "-") {
		entry = "./" + entry
	}
	rep := strings.NewReplacer(EntryPlaceholder, entry, BinaryPlaceholder, BinaryPath)
	argv := make([]string, 0, len(tmpl)+len(args))
	for _, a := range tmpl {
		argv = append(argv, rep.Replace(a))
	}
	return append(argv, args...)
}

// Validate reports whether r is well formed on its own; New and LoadFile
// also check that it does not clash with the other runtimes.
func (r *Runtime) Validate() error {
	if r == nil {
		return fmt.Errorf("%w: nil runtime", ErrInvalidRuntime)
	}
	checks := []func(*Runtime) error{
		checkName,
		checkExtensions,
		checkArgv,
		checkEnv,
		checkVersion,
		checkBinary,
		checkWasm,
	}
	for _, check := range checks {
		if err := check(r); err != nil {
			return fmt.Errorf("%w %q: %w", ErrInvalidRuntime, r.Name, err)
		}
	}
	return nil
}

func checkName(r *Runtime) error {
	if r.Name == "" {
		return fmt.Errorf("name is empty")
	}
	for _, n := range append([]string{r.Name}, r.Aliases...) {
		if n == "" || strings.ContainsFunc(n, isSpaceOrControl) || strings.Contains(n, ",") {
			return fmt.Errorf("name or alias %q: empty, or has a space, comma or control character", n)
		}
	}
	return nil
}

func checkExtensions(r *Runtime) error {
	for _, e := range r.Extensions {
		if len(e) < 2 || e[0] != '.' || strings.ContainsAny(e[1:], "./\\") || strings.ContainsFunc(e, isSpaceOrControl) {
			return fmt.Errorf("extension %q: want a dot and a suffix, as in \".py\"", e)
		}
	}
	return nil
}

func checkArgv(r *Runtime) error {
	if len(r.Run) == 0 {
		return fmt.Errorf("run is empty")
	}
	if err := checkArgv0("run", r.Run[0]); err != nil {
		return err
	}
	if r.Compile != nil {
		if len(r.Compile) == 0 {
			return fmt.Errorf("compile is empty; omit it for an interpreted runtime")
		}
		if err := checkArgv0("compile", r.Compile[0]); err != nil {
			return err
		}
	}
	return nil
}

// checkArgv0 refuses a program name the sandbox would have to look up in
// PATH, which its clean environment does not have.
func checkArgv0(what, arg0 string) error {
	if !path.IsAbs(arg0) && !strings.HasPrefix(arg0, "./") {
		return fmt.Errorf("%s[0] %q: want an absolute path or one starting with \"./\"", what, arg0)
	}
	return nil
}

func checkEnv(r *Runtime) error {
	for _, kv := range r.Env {
		k, _, ok := strings.Cut(kv, "=")
		if !ok || k == "" || strings.ContainsRune(kv, 0) {
			return fmt.Errorf("env %q: want KEY=VALUE", kv)
		}
	}
	return nil
}

func checkVersion(r *Runtime) error {
	if len(r.VersionCmd) > 0 && !path.IsAbs(r.VersionCmd[0]) {
		return fmt.Errorf("version_cmd[0] %q: want an absolute path", r.VersionCmd[0])
	}
	if _, err := regexp.Compile(r.VersionRegexp); err != nil {
		return fmt.Errorf("version_regexp: %w", err)
	}
	return nil
}

func checkBinary(r *Runtime) error {
	if !path.IsAbs(r.Binary) || path.Clean(r.Binary) != r.Binary {
		return fmt.Errorf("binary %q: want a clean absolute host path", r.Binary)
	}
	return nil
}

func checkWasm(r *Runtime) error {
	if r.Wasm != nil && (r.Wasm.Module == "" || r.Wasm.Argv0 == "" || strings.ContainsAny(r.Wasm.Module, "/.") || strings.ContainsFunc(r.Wasm.Module, isSpaceOrControl)) {
		return fmt.Errorf("wasm: module %q, argv0 %q: want a plain module name and an argv0", r.Wasm.Module, r.Wasm.Argv0)
	}
	return nil
}

func isSpaceOrControl(c rune) bool { return c <= ' ' || c == 0x7f }
