package testenv

import (
	"context"
	"log/slog"
	"sync"
)

// LogSizes is a slog handler that keeps the size of the longest record
// (its message, and each attribute's key and value): a test's check that
// nothing a sandbox or a client chose makes a log line large.
type LogSizes struct {
	mu  sync.Mutex
	max int
}

func (h *LogSizes) Enabled(context.Context, slog.Level) bool { return true }
func (h *LogSizes) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *LogSizes) WithGroup(string) slog.Handler            { return h }

// Handle records r's size.
func (h *LogSizes) Handle(_ context.Context, r slog.Record) error {
	n := len(r.Message)
	r.Attrs(func(a slog.Attr) bool {
		n += len(a.Key) + len(a.Value.String())
		return true
	})
	h.mu.Lock()
	h.max = max(h.max, n)
	h.mu.Unlock()
	return nil
}

// Longest is the size of the longest record so far (0: none).
func (h *LogSizes) Longest() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.max
}
