package daemon

import (
	"errors"
	"log/slog"
	"testing"
	"time"
)

func TestConnsResolve(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	cases := []struct {
		name   string
		in     Conns
		nofile uint64
		known  bool
		max    int
		perIP  int
		ok     bool
	}{
		{"defaults", Conns{}, 1 << 20, true, 4096, 256, true},
		{"unknown rlimit", Conns{}, 0, false, 4096, 256, true},
		{"default lowered to fit", Conns{}, 4096, true, 4096 - 1024 - loopbackReserve, 256, true},
		{"small rlimit keeps half", Conns{}, 1024, true, 1024 - 512 - loopbackReserve, 256, true},
		{"explicit within", Conns{Max: 100, PerIP: 10}, 4096, true, 100, 10, true},
		{"explicit past the rlimit", Conns{Max: 4000}, 4096, true, 0, 0, false},
		{"no per-IP cap", Conns{PerIP: -1}, 1 << 20, true, 4096, -1, true},
		{"rlimit too small", Conns{}, 40, true, 0, 0, false},
		{"negative timeout", Conns{IdleTimeout: -time.Second}, 1 << 20, true, 0, 0, false},
	}
	for _, tc := range cases {
		got, err := tc.in.resolve(tc.nofile, tc.known, log)
		if (err == nil) != tc.ok || (err != nil && !errors.Is(err, ErrConns)) {
			t.Errorf("%s: err %v, want ok %v", tc.name, err, tc.ok)
			continue
		}
		if !tc.ok {
			continue
		}
		if got.Max != tc.max || got.PerIP != tc.perIP {
			t.Errorf("%s: max %d per IP %d, want %d, %d", tc.name, got.Max, got.PerIP, tc.max, tc.perIP)
		}
		if got.ReadHeaderTimeout != 10*time.Second || got.ReadTimeout != 3*time.Minute || got.WriteTimeout != 30*time.Second ||
			got.IdleTimeout != time.Minute || got.MaxHeaderBytes != 64<<10 {
			t.Errorf("%s: timeouts not defaulted: %+v", tc.name, got)
		}
	}
}
