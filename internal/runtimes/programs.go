package runtimes

import (
	_ "embed"
	"path"

	"github.com/sandboxd/sandboxd/internal/run"
	"github.com/sandboxd/sandboxd/internal/workspace"
)

// The programs of sandboxd's own that the built-in runtimes run in the
// sandbox. A new language adds its kernel here (on the protocol of
// kernel/PROTOCOL.md) and names it in its entry in builtin.go.
var (
	//go:embed kernel/python.py
	kernelPython []byte
	//go:embed kernel/node.js
	kernelNode []byte
	//go:embed kernel/ruby.rb
	kernelRuby []byte
	//go:embed warm/python.py
	warmPython []byte
)

// File is p as the read-only file written into the workspace's reserved
// directory before the interpreter starts.
func (p *Program) File() run.File {
	return run.File{Name: p.Name, Content: p.Source, Mode: 0o444}
}

// Argv is the sandbox argv that runs p with rt's interpreter: its
// binary, p's flags, and p's file in the workspace. The source is never
// in argv, where every process listing of the host would show it whole.
func (p *Program) Argv(rt *Runtime) []string {
	argv := append([]string{rt.Binary}, p.Flags...)
	return append(argv, path.Join(workspace.Dir, p.Name))
}

// kernelProgram is a session kernel under the reserved directory, with
// opt's Prime, Flags and Quit.
func kernelProgram(file string, src []byte, opt Program) *Program {
	opt.Name, opt.Source = path.Join(workspace.ReservedDir, "kernel", file), src
	return &opt
}

// warmProgram is a warm runner under the reserved directory.
func warmProgram(file string, src []byte, startEnv ...string) *Program {
	return &Program{Name: path.Join(workspace.ReservedDir, "warm", file), Source: src, StartEnv: startEnv}
}
