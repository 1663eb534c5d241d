package wasm

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/sandboxd/sandboxd/internal/run"
)

// TestHostileModuleNames: a module that names an import, or exports, with
// a MiB of text is refused with an error, and a result, that do not carry
// the name whole.
func TestHostileModuleNames(t *testing.T) {
	t.Parallel()
	huge := strings.Repeat("m", 1<<20)
	cases := []struct {
		name   string
		module []byte
	}{
		// A function import from a module of a MiB's name: compiles, and
		// is refused for importing something other than WASI.
		{"import module", wasmModule(importSection(huge, "f"))},
		{"import name", wasmModule(importSection("env", huge))},
		{"import name with newlines", wasmModule(importSection("env", strings.Repeat("\n", 1<<20)))},
		// Two exports of one huge name: wazero refuses to compile it and
		// names the export.
		{"duplicate export", wasmModule(funcSection(), exportSection(huge, huge), codeSection())},
	}
	eachMode(t, func(t *testing.T, r *Runner) {
		for _, c := range cases {
			res, err := r.Run(context.Background(), Exec{ModuleBytes: c.module, Argv: []string{"prog.wasm"}, Limits: testLimits()})
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("%s: %.300v; want ErrInvalid", c.name, err)
				continue
			}
			const bound = run.MaxMessage + 200
			if msg := err.Error(); len(msg) > bound || strings.Contains(msg, "\n") {
				t.Errorf("%s: an error of %d bytes: %.300q", c.name, len(msg), msg)
			}
			if res != nil && (len(res.Error) > bound || len(res.Reason) > bound) {
				t.Errorf("%s: a result with an error of %d bytes and a reason of %d", c.name, len(res.Error), len(res.Reason))
			}
		}
	})
}

// wasmModule is a module of the given sections (each id and content).
func wasmModule(sections ...[]byte) []byte {
	b := []byte("\x00asm\x01\x00\x00\x00")
	// Type 0: a function of no parameters and no results.
	b = append(b, section(1, []byte{1, 0x60, 0, 0})...)
	for _, s := range sections {
		b = append(b, s...)
	}
	return b
}

func importSection(module, name string) []byte {
	c := []byte{1}
	c = append(c, wasmName(module)...)
	c = append(c, wasmName(name)...)
	c = append(c, 0x00, 0) // a function of type 0
	return section(2, c)
}

func funcSection() []byte { return section(3, []byte{1, 0}) }

func exportSection(names ...string) []byte {
	c := uleb(len(names))
	for _, n := range names {
		c = append(c, wasmName(n)...)
		c = append(c, 0x00, 0) // function 0
	}
	return section(7, c)
}

func codeSection() []byte { return section(10, []byte{1, 2, 0, 0x0b}) }

func section(id byte, content []byte) []byte {
	return append(append([]byte{id}, uleb(len(content))...), content...)
}

func wasmName(s string) []byte { return append(uleb(len(s)), s...) }

func uleb(n int) []byte {
	var b []byte
	for {
		c := byte(n & 0x7f)
		n >>= 7
		if n == 0 {
			return append(b, c)
		}
		b = append(b, c|0x80)
	}
}
