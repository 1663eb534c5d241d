package wasm

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/sandboxd/sandboxd/internal/output"

	"github.com/tetratelabs/wazero"

	"github.com/sandboxd/sandboxd/internal/limits"
	"github.com/sandboxd/sandboxd/internal/run"
)

func TestNotBuilt(t *testing.T) {
	t.Parallel()
	r, err := New(context.Background(), Config{Mode: ModeInProcess, NoDiskCache: true, RuntimesDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close(context.Background())
	res, err := r.Run(context.Background(), script("python", "main.py", "print(1)"))
	var nb *NotBuiltError
	if !errors.Is(err, ErrNotBuilt) || !errors.As(err, &nb) || !strings.Contains(err.Error(), BuildCommand) {
		t.Fatalf("err = %v, want a NotBuiltError naming %q", err, BuildCommand)
	}
	if res == nil || res.Status != run.StatusInternalError {
		t.Fatalf("result %+v", res)
	}
	if err := r.Available("quickjs"); !errors.Is(err, ErrNotBuilt) {
		t.Errorf("Available(quickjs) = %v", err)
	}
}

func TestInvalidModules(t *testing.T) {
	t.Parallel()
	r := runnerFor(t, ModeInProcess)
	tests := []struct {
		name string
		e    Exec
		want string
	}{
		{"missing file", Exec{Module: "testdata/nope.wasm", Argv: []string{"x"}}, "nope.wasm"},
		{"imports outside WASI", Exec{Module: testdata("imports.wasm"), Argv: []string{"x"}}, "env.launch_missiles"},
		{"not wasm", Exec{Module: "testdata/hello.wat", Argv: []string{"x"}}, "hello.wat"},
		{"empty argv", Exec{Module: testdata("hello.wasm")}, "empty argv"},
		{"bad env", Exec{Module: testdata("hello.wasm"), Argv: []string{"x"}, Env: []string{"NOEQUALS"}}, "KEY=VALUE"},
		{"bad file name", Exec{Module: testdata("hello.wasm"), Argv: []string{"x"}, Files: []run.File{{Name: "../x"}}}, "bad file name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.e.Limits = testLimits()
			res, err := r.Run(context.Background(), tt.e)
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want ErrInvalid mentioning %q", err, tt.want)
			}
			if res.Status != run.StatusInternalError {
				t.Errorf("status %s", res.Status)
			}
		})
	}
}

func TestCheck(t *testing.T) {
	t.Parallel()
	r := runnerFor(t, ModeInProcess)
	full := limits.Defaults()
	tests := []struct {
		name string
		set  limits.Limits
		want error
	}{
		{"defaults", limits.Limits{}, nil},
		{"pids set", limits.Limits{Pids: 500}, nil},
		{"one cpu", limits.Limits{CPUs: 1}, nil},
		{"two cpus", limits.Limits{CPUs: 2}, nil},
		{"half a cpu", limits.Limits{CPUs: 0.5}, ErrUnsupportedLimit},
		{"open files", limits.Limits{OpenFiles: 32}, nil},
		{"file size", limits.Limits{FileSize: limits.MiB}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := tt.set.Merge(full)
			err := r.Check(l, tt.set)
			if tt.want == nil && err != nil || tt.want != nil && !errors.Is(err, tt.want) {
				t.Fatalf("Check = %v, want %v", err, tt.want)
			}
		})
	}
	if err := r.Check(limits.Limits{}, limits.Limits{}); !errors.Is(err, ErrInvalid) {
		t.Errorf("Check of incomplete limits = %v", err)
	}
}

// TestTrapTexts pins wazero's trap messages this package maps to signals
// (classify.go): a wazero upgrade that rewords them fails here.
func TestTrapTexts(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ module, text string }{
		{"grow.wasm", "unreachable"}, {"oob.wasm", "out of bounds memory access"}, {"div0.wasm", "integer divide by zero"},
	} {
		cm := mustCompile(t, tt.module)
		l := testLimits()
		l.Memory = 8 * limits.MiB
		end := runGuest(context.Background(), runnerFor(t, ModeInProcess).rt, cm, &guestJob{
			Module: testdata(tt.module), Argv: []string{"x"}, Dir: t.TempDir(), Memory: uint64(l.Memory),
			MaxBytes: 1 << 20, MaxFile: 1 << 20, MaxEntries: 100, MaxOpen: 10,
		}, guestIO{stdin: strings.NewReader(""), stdout: output.New(100, nil, nil), stderr: output.New(100, nil, nil)}, guestHooks{})
		if end.Kind != endTrap || end.Trap != tt.text {
			t.Errorf("%s: end %+v, want the trap %q", tt.module, end, tt.text)
		}
	}
}

func mustCompile(t *testing.T, module string) wazero.CompiledModule {
	t.Helper()
	r := runnerFor(t, ModeInProcess)
	e, release, err := r.compiled(context.Background(), testdata(module), warmLimits)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(release)
	return e.compiled
}

func TestWarm(t *testing.T) {
	t.Parallel()
	eachMode(t, func(t *testing.T, r *Runner) {
		if err := r.Warm(context.Background(), testdata("hello.wasm")); err != nil {
			t.Fatal(err)
		}
		if err := r.Warm(context.Background(), "no-such-runtime.wasm"); !errors.Is(err, ErrInvalid) {
			t.Errorf("Warm of a missing module = %v", err)
		}
	})
}

// TestModuleBytes: a module given as bytes (a client's upload) runs like
// a module file, in both modes.
func TestModuleBytes(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile(testdata("hello.wasm"))
	if err != nil {
		t.Fatal(err)
	}
	eachMode(t, func(t *testing.T, r *Runner) {
		for range 2 {
			res := mustRun(t, r, Exec{ModuleBytes: b, Argv: []string{"prog.wasm"}, Limits: testLimits()})
			if res.Status != run.StatusOK || string(res.Stdout) != "hello\n" {
				t.Fatal(summary(res))
			}
		}
		_, err := r.Run(context.Background(), Exec{ModuleBytes: []byte("\x00asm junk"), Argv: []string{"x"}, Limits: testLimits()})
		if !errors.Is(err, ErrInvalid) {
			t.Errorf("junk module: %v", err)
		}
	})
}
