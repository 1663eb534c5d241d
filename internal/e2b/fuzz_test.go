package e2b

import (
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzWorkspaceName: whatever path a client sends, the name it maps to
// is the workspace itself or a relative name that cannot leave it (the
// workspace's file calls then check the rest: NUL bytes, lengths).
func FuzzWorkspaceName(f *testing.F) {
	for _, s := range []string{"/home/user/a", "a/../../b", "/home/user/../x", "/workspace//x/./y", "", "/", "..", "/home/userx"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		name, err := workspaceName(p)
		if err != nil {
			return
		}
		if name == "." {
			return
		}
		if strings.HasPrefix(name, "/") || name == ".." || strings.HasPrefix(name, "../") || strings.Contains(name, "/../") {
			t.Fatalf("workspaceName(%q) = %q: not inside the workspace", p, name)
		}
	})
}

// FuzzHostRoute: a host name either names a sandbox of the domain, by
// one label, or nothing.
func FuzzHostRoute(f *testing.F) {
	for _, s := range []string{"49983-vm-a.e2b.test", "e2b.test", "x.y.e2b.test", "49983-.e2b.test:1", "[::1]:80"} {
		f.Add(s)
	}
	s := &Server{cfg: Config{Domain: "e2b.test"}}
	f.Fuzz(func(t *testing.T, host string) {
		id := s.hostRoute(host)
		if id != "" && (strings.Contains(id, ".") || !strings.Contains(strings.ToLower(host), id)) {
			t.Fatalf("hostRoute(%q) = %q", host, id)
		}
	})
}

// FuzzTextStream: however the bytes are cut into writes, the events'
// texts join to the stream (as JSON carries it: valid UTF-8 goes through
// unchanged).
func FuzzTextStream(f *testing.F) {
	f.Add([]byte("first\nsecond ☃ third\n"), uint8(3))
	f.Fuzz(func(t *testing.T, data []byte, cut uint8) {
		if !utf8.Valid(data) {
			return
		}
		var writes []string
		step := int(cut%16) + 1
		for i := 0; i < len(data); i += step {
			writes = append(writes, string(data[i:min(i+step, len(data))]))
		}
		if got := strings.Join(streamEvents(t, writes, 0), ""); got != string(data) {
			t.Fatalf("events joined %q, want %q", got, data)
		}
	})
}
