package daemon

import (
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/sandboxd/sandboxd/internal/limits"
)

// fakeHost makes hostMemory report n (or fail) for one test.
func fakeHost(t *testing.T, n limits.Bytes, err error) {
	t.Helper()
	old := hostMemory
	hostMemory = func() (limits.Bytes, string, error) { return n, "a fake host", err }
	t.Cleanup(func() { hostMemory = old })
}

func TestResolveBudget(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	for _, c := range []struct {
		name        string
		host        limits.Bytes
		hostErr     error
		flag        limits.Bytes
		maxMemory   limits.Bytes
		want        limits.Bytes
		wantCeiling limits.Bytes
		wantErr     string
	}{
		{name: "large host: 1GiB reserved", host: 24 * limits.GiB, want: 23 * limits.GiB, wantCeiling: 4 * limits.GiB},
		{name: "small host: an eighth reserved, the ceiling lowered", host: 2 * limits.GiB, want: 1792 * limits.MiB, wantCeiling: 1792 * limits.MiB},
		{name: "the operator's budget, below the host", host: 24 * limits.GiB, flag: 600 * limits.MiB, want: 600 * limits.MiB, wantCeiling: 600 * limits.MiB},
		{name: "the operator may overcommit on purpose", host: 8 * limits.GiB, flag: 64 * limits.GiB, want: 64 * limits.GiB, wantCeiling: 4 * limits.GiB},
		{name: "an operator's budget needs no host figure", hostErr: errors.New("no /proc"), flag: limits.GiB, want: limits.GiB, wantCeiling: limits.GiB},
		{name: "no host figure and no flag", hostErr: errors.New("no /proc"), wantErr: "--memory-budget"},
		{name: "a budget below the default run", host: 24 * limits.GiB, flag: 128 * limits.MiB, wantErr: "default memory limit of a run (256MiB) is more than the memory budget (128MiB)"},
		{name: "an explicit ceiling below the budget stays", host: 24 * limits.GiB, maxMemory: limits.GiB, want: 23 * limits.GiB, wantCeiling: limits.GiB},
	} {
		t.Run(c.name, func(t *testing.T) {
			fakeHost(t, c.host, c.hostErr)
			cfg := Config{MemoryBudget: c.flag}
			cfg.Executor.Ceiling.Memory = c.maxMemory
			got, err := resolveBudget(&cfg, log)
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("resolveBudget = %s, %v; want an error naming %q", got, err, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != c.want || cfg.Executor.Isolate.MemoryLimit != c.want {
				t.Errorf("budget %s, parent limit %s; want %s for both", got, cfg.Executor.Isolate.MemoryLimit, c.want)
			}
			if cfg.Executor.Ceiling.Memory != c.wantCeiling {
				t.Errorf("ceiling on a run's memory %s, want %s", cfg.Executor.Ceiling.Memory, c.wantCeiling)
			}
		})
	}
}
