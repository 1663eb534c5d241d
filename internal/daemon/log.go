package daemon

import (
	"fmt"
	"io"
	"log/slog"
)

// LogHandler returns the daemon's log handler: one JSON object per line
// (format "json") or slog's key=value text ("text"), at level. Durations
// print as Go writes them ("1.5s", "250µs") in both; slog's JSON handler
// would print nanoseconds.
func LogHandler(w io.Writer, format string, level slog.Leveler) (slog.Handler, error) {
	opts := &slog.HandlerOptions{Level: level, ReplaceAttr: readableDurations}
	switch format {
	case "json":
		return slog.NewJSONHandler(w, opts), nil
	case "text":
		return slog.NewTextHandler(w, opts), nil
	}
	return nil, fmt.Errorf("unknown log format %q: use json or text", format)
}

// readableDurations is a slog ReplaceAttr that writes a time.Duration as
// its String.
func readableDurations(_ []string, a slog.Attr) slog.Attr {
	if a.Value.Kind() == slog.KindDuration {
		a.Value = slog.StringValue(a.Value.Duration().String())
	}
	return a
}
