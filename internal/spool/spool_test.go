package spool

import (
	"math/rand/v2"
	"strings"
	"testing"
	"unicode/utf8"
)

// TestUTF8Check: UTF8 of a stream written in parts is utf8.Valid of the
// whole, wherever the parts are cut (runes cut between parts, invalid
// bytes, a rune incomplete at the end).
func TestUTF8Check(t *testing.T) {
	units := []string{"a", "<", "\u00e9", "\u20ac", "\U0001F600", "\xff", "\xe2\x82", "\x80", "\xed\xa0\x80", "\xf4\x90\x80\x80", "\uFFFD"}
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 3000 {
		var b strings.Builder
		for range rng.IntN(12) {
			b.WriteString(units[rng.IntN(len(units))])
		}
		if i%3 == 0 {
			// Mostly valid.
			b.Reset()
			for range rng.IntN(12) {
				b.WriteString(units[rng.IntN(5)])
			}
		}
		s := []byte(b.String())
		var c utf8Check
		for rest := s; len(rest) > 0; {
			n := 1 + rng.IntN(len(rest))
			c.write(rest[:n])
			rest = rest[n:]
		}
		if got, want := c.done(), utf8.Valid(s); got != want {
			t.Fatalf("%q: UTF-8 %v, want %v", s, got, want)
		}
	}
}
