package runtimes

// matplotlibFonts primes Python sessions with matplotlib's font list, when
// Debian's python3-matplotlib is installed.
var matplotlibFonts = &Prime{
	Needs:   "/usr/lib/python3/dist-packages/matplotlib",
	Args:    []string{"-c", "import matplotlib.font_manager"},
	Env:     []string{"MPLBACKEND=Agg"},
	DirEnv:  "MPLCONFIGDIR",
	Dir:     ".sandboxd/matplotlib",
	Pattern: "fontlist-*.json",
}

// builtin returns fresh copies of the built-in runtimes. The paths are
// Debian's: the sandbox mounts the host's /usr, /lib, /lib64, /bin and /sbin,
// so a binary elsewhere (a pyenv shim, /usr/local, /opt) would not be there.
// On Debian /bin is a symlink to /usr/bin; the /usr/bin paths work with or
// without the merged-/usr layout.
func builtin() []*Runtime {
	// "Python 3.11.2"; "v20.20.2"; "ruby 3.1.2p20 (2022-04-12 revision
	// 4491bb740a) [x86_64-linux-gnu]"; "GNU bash, version 5.2.15(1)-release";
	// "gcc (Debian 12.2.0-14+deb12u1) 12.2.0" (the version after the
	// parenthesis, not the Debian package revision inside it).
	const gnuVersion = `^\S+ \([^)]*\) (\d+(?:\.\d+)+)`
	return []*Runtime{
		{
			Name:       "python",
			Title:      "Python",
			Aliases:    []string{"py", "python3"},
			Extensions: []string{".py"},
			Run:        []string{"/usr/bin/python3", EntryPlaceholder},
			// Unbuffered so output streams live; no bytecode so no
			// __pycache__ lands in the workspace among the produced files.
			Env:           []string{"PYTHONUNBUFFERED=1", "PYTHONDONTWRITEBYTECODE=1"},
			VersionCmd:    []string{"/usr/bin/python3", "--version"},
			VersionRegexp: `Python (\d+(?:\.\d+)+)`,
			Binary:        "/usr/bin/python3",
			// CPython built for WASI (scripts/build-wasm-runtimes.sh).
			Wasm: &WasmBuild{Module: "python", Argv0: "python"},
			// PYTHON* variables act at start-up, which a warm runner is
			// past: a run that sets one starts cold.
			Warm: warmProgram("python.py", warmPython, "PYTHON"),
			// The same holds for a session kernel started ahead.
			Kernel: kernelProgram("python.py", kernelPython, Program{Prime: matplotlibFonts, Quit: "exit()", StartEnv: []string{"PYTHON"}}),
			Names:  Names{Jupyter: "python3"},
		},
		{
			Name:          "javascript",
			Title:         "JavaScript",
			Aliases:       []string{"js", "node"},
			Extensions:    []string{".js", ".mjs", ".cjs"},
			Run:           []string{"/usr/bin/node", EntryPlaceholder},
			VersionCmd:    []string{"/usr/bin/node", "--version"},
			VersionRegexp: `v(\d+(?:\.\d+)+)`,
			Binary:        "/usr/bin/node",
			// QuickJS built for WASI, not node.
			Wasm: &WasmBuild{Module: "quickjs", Argv0: "qjs"},
			// The kernel rewrites a top-level await with node's REPL's own
			// code, an internal module (see kernel/node.js).
			Kernel: kernelProgram("node.js", kernelNode, Program{Flags: []string{"--expose-internals"}}),
			Names:  Names{Piston: "node", Jupyter: "javascript", E2B: "js"},
		},
		{
			Name:       "ruby",
			Title:      "Ruby",
			Aliases:    []string{"rb"},
			Extensions: []string{".rb"},
			// No Env: ruby writes no cache, and its user gem directory
			// (~/.local/share/gem, in the workspace) only on a gem install,
			// which has no network here. Its stdout to a pipe is buffered
			// (flushed at exit): no variable turns that off as
			// PYTHONUNBUFFERED does.
			Run:           []string{"/usr/bin/ruby", EntryPlaceholder},
			VersionCmd:    []string{"/usr/bin/ruby", "--version"},
			VersionRegexp: `^ruby (\d+(?:\.\d+)+)`,
			Binary:        "/usr/bin/ruby",
			Kernel:        kernelProgram("ruby.rb", kernelRuby, Program{}),
			// IRuby registers its kernelspec as "ruby" plus the major
			// version (lib/iruby/application.rb); older IRuby, plain "ruby".
			// Piston's ruby package provides no other language, so its
			// runtimes list has no "runtime" for it; E2B has no Ruby.
			Names: Names{Jupyter: "ruby3"},
		},
		{
			Name:          "bash",
			Title:         "Bash",
			Extensions:    []string{".bash"},
			Run:           []string{"/usr/bin/bash", EntryPlaceholder},
			VersionCmd:    []string{"/usr/bin/bash", "--version"},
			VersionRegexp: `version (\d+(?:\.\d+)+)`,
			Binary:        "/usr/bin/bash",
		},
		{
			// sh is dash on Debian, which has no --version: ask dpkg. The
			// "${Version}" is dpkg-query's own format, passed in an argv,
			// not a shell expansion.
			Name:          "sh",
			Extensions:    []string{".sh"},
			Run:           []string{"/usr/bin/sh", EntryPlaceholder},
			VersionCmd:    []string{"/usr/bin/dpkg-query", "-W", "-f=${Version}", "dash"},
			VersionRegexp: `^(\d+(?:\.\d+)+)`,
			Binary:        "/usr/bin/sh",
		},
		{
			Name:       "c",
			Title:      "C",
			Extensions: []string{".c"},
			Compile:    []string{"/usr/bin/gcc", "-O2", "-std=gnu17", "-o", BinaryPlaceholder, EntryPlaceholder, "-lm"},
			// "./" so argv[0] resolves from the cwd, /workspace.
			Run:           []string{"./" + BinaryPlaceholder},
			VersionCmd:    []string{"/usr/bin/gcc", "--version"},
			VersionRegexp: gnuVersion,
			Binary:        "/usr/bin/gcc",
			Names:         Names{Piston: "gcc"},
		},
		{
			Name:          "c++",
			Title:         "C++",
			Aliases:       []string{"cpp", "cxx"},
			Extensions:    []string{".cpp", ".cc", ".cxx"},
			Compile:       []string{"/usr/bin/g++", "-O2", "-std=gnu++17", "-o", BinaryPlaceholder, EntryPlaceholder},
			Run:           []string{"./" + BinaryPlaceholder},
			VersionCmd:    []string{"/usr/bin/g++", "--version"},
			VersionRegexp: gnuVersion,
			Binary:        "/usr/bin/g++",
			Names:         Names{Piston: "gcc"},
		},
	}
}
