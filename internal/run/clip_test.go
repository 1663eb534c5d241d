package run

import (
	"errors"
	"io"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestClip(t *testing.T) {
	cases := []struct {
		s    string
		max  int
		want string
	}{
		{"", 10, ""},
		{"short", 10, "short"},
		{"exactly10!", 10, "exactly10!"},
		{"eleven byte", 10, "eleven byt… (11 bytes in all)"},
		// A rune is never split: é is 2 bytes.
		{"aaaaaaaaaé", 10, "aaaaaaaaa… (11 bytes in all)"},
		{"日本語", 4, "日… (9 bytes in all)"},
		// Invalid UTF-8 is replaced, cut or not.
		{"a\xffb", 10, "a\uFFFDb"},
		{"\xff\xff\xff\xff\xff\xff", 4, "\uFFFD"},
		{"\xff\xff\xff\xff\xff\xff\xff\xff\xff", 4, "\uFFFD… (9 bytes in all)"},
		// Newlines are kept: Clip bounds, it does not escape.
		{"a\nb", 10, "a\nb"},
	}
	for _, c := range cases {
		if got := Clip(c.s, c.max); got != c.want {
			t.Errorf("Clip(%q, %d) = %q; want %q", c.s, c.max, got, c.want)
		}
	}
}

func TestQuote(t *testing.T) {
	cases := []struct {
		s    string
		max  int
		want string
	}{
		{"", 10, `""`},
		{"name", 10, `"name"`},
		{"a\nb", 10, `"a\nb"`},
		{"12345678", 10, `"12345678"`},
		{"123456789", 10, `"12345678"… (9 bytes in all)`},
		// An escape is never split.
		{"1234567\x00", 10, `"1234567"… (8 bytes in all)`},
		{"12\x00", 10, `"12\x00"`},
		{"é\xff", 10, `"é\xff"`},
	}
	for _, c := range cases {
		if got := Quote(c.s, c.max); got != c.want {
			t.Errorf("Quote(%q, %d) = %s; want %s", c.s, c.max, got, c.want)
		}
	}
}

// TestClipHuge: a name of a MiB comes out at the cap, and the marker says
// how long it was.
func TestClipHuge(t *testing.T) {
	s := strings.Repeat("x", 1<<20)
	for _, got := range []string{Clip(s, MaxMessage), Quote(s, MaxName)} {
		if len(got) > MaxMessage+64 || !strings.HasSuffix(got, "… (1048576 bytes in all)") {
			t.Errorf("%d bytes: %.80q…", len(got), got)
		}
	}
}

func TestClipError(t *testing.T) {
	inner := &strconvErr{strings.Repeat("y", 5000)}
	err := ClipError(errors.Join(io.ErrUnexpectedEOF, inner), 100)
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Error("the clipped error does not unwrap")
	}
	var se *strconvErr
	if !errors.As(err, &se) {
		t.Error("errors.As does not see through the clipped error")
	}
	if len(err.Error()) > 100+len(marker(5100)) {
		t.Errorf("message of %d bytes", len(err.Error()))
	}
	if ClipError(nil, 10) != nil {
		t.Error("ClipError(nil) is not nil")
	}
}

type strconvErr struct{ s string }

func (e *strconvErr) Error() string { return e.s }

// FuzzClip: whatever the input, the result is valid UTF-8, at most the cap
// plus the marker, the input itself when it was short and valid, and else
// a prefix of the input with the marker; Quote's result unquotes to a
// prefix of the input's quoted form.
func FuzzClip(f *testing.F) {
	for _, s := range []string{"", "abc", "日本語", "a\xffb", "\x00\n\t", strings.Repeat("é", 40), "\xed\xa0\x80"} {
		f.Add(s, 5)
	}
	f.Fuzz(func(t *testing.T, s string, max int) {
		max = max % 300
		out := Clip(s, max)
		capped := limit(max)
		if !utf8.ValidString(out) {
			t.Fatalf("Clip(%q, %d) = %q: not UTF-8", s, max, out)
		}
		if len(out) > capped+len(marker(len(s))) {
			t.Fatalf("Clip(%q, %d) = %q: %d bytes", s, max, out, len(out))
		}
		body, cut := strings.CutSuffix(out, marker(len(s)))
		if utf8.ValidString(s) {
			switch {
			case len(s) <= capped && out != s:
				t.Fatalf("Clip(%q, %d) = %q; want it unchanged", s, max, out)
			case len(s) > capped && (!cut || !strings.HasPrefix(s, body) || len(body) <= capped-utf8.UTFMax):
				t.Fatalf("Clip(%q, %d) = %q; want a prefix of at most %d bytes and the marker", s, max, out, capped)
			}
		}

		q := Quote(s, max)
		if !utf8.ValidString(q) || len(q) > capped+len(marker(len(s))) {
			t.Fatalf("Quote(%q, %d) = %q", s, max, q)
		}
		qbody, _ := strings.CutSuffix(q, marker(len(s)))
		if strings.ContainsAny(qbody, "\n\r\x00") {
			t.Fatalf("Quote(%q, %d) = %q: not one line", s, max, q)
		}
		u, err := strconv.Unquote(qbody)
		if err != nil || !strings.HasPrefix(s, u) && utf8.ValidString(s) {
			t.Fatalf("Quote(%q, %d) = %s: unquotes to %q, %v", s, max, q, u, err)
		}
	})
}
