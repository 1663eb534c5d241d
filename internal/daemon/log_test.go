package daemon

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// TestLogDurations: durations read as "1.5s" in both formats, at the top
// level and in a group; other values are left alone.
func TestLogDurations(t *testing.T) {
	for _, format := range []string{"json", "text"} {
		t.Run(format, func(t *testing.T) {
			var b bytes.Buffer
			h, err := LogHandler(&b, format, slog.LevelInfo)
			if err != nil {
				t.Fatal(err)
			}
			slog.New(h).Info("run", "wall", 1500*time.Millisecond, "took", 250*time.Microsecond,
				slog.Group("queue", "waited", 2*time.Second), "exit_code", 3)
			line := b.String()
			if format == "json" {
				var m map[string]any
				if err := json.Unmarshal(b.Bytes(), &m); err != nil {
					t.Fatalf("not JSON: %v: %s", err, line)
				}
				if m["wall"] != "1.5s" || m["took"] != "250µs" || m["queue"].(map[string]any)["waited"] != "2s" || m["exit_code"] != 3.0 {
					t.Errorf("line %s", line)
				}
				return
			}
			for _, want := range []string{"wall=1.5s", "took=250µs", "queue.waited=2s", "exit_code=3"} {
				if !strings.Contains(line, want) {
					t.Errorf("line %q lacks %s", line, want)
				}
			}
		})
	}
	if _, err := LogHandler(&bytes.Buffer{}, "yaml", slog.LevelInfo); err == nil {
		t.Error("LogHandler accepted the format yaml")
	}
}
