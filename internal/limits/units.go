package limits

import (
	"math"
	"strconv"
	"strings"
	"time"
	"unicode"
)

const tib Bytes = 1 << 40

// byteUnits maps the units ParseBytes accepts to their size. Single letters
// are 1024-based, as in docker ("-m 256m"); two-letter SI forms are
// 1000-based, as on a disk's label. A lowercase b is refused: it means bits.
var byteUnits = map[string]int64{
	"": 1, "B": 1,
	"K": int64(KiB), "k": int64(KiB), "Ki": int64(KiB), "KiB": int64(KiB),
	"M": int64(MiB), "m": int64(MiB), "Mi": int64(MiB), "MiB": int64(MiB),
	"G": int64(GiB), "g": int64(GiB), "Gi": int64(GiB), "GiB": int64(GiB),
	"T": int64(tib), "t": int64(tib), "Ti": int64(tib), "TiB": int64(tib),
	"KB": 1e3, "kB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12,
}

const knownByteUnits = "known are B, K or KiB, M or MiB, G or GiB, T or TiB (1024-based) " +
	"and KB, MB, GB, TB (1000-based)"

// byteUnit returns the size of unit u, or why u is not one.
func byteUnit(u string) (int64, string) {
	if n, ok := byteUnits[u]; ok {
		return n, ""
	}
	// "KIB", "kiB": the IEC forms are unambiguous in any case but the B.
	if len(u) == 3 && (u[1] == 'i' || u[1] == 'I') && u[2] == 'B' {
		if n, ok := byteUnits[strings.ToUpper(u[:1])+"iB"]; ok {
			return n, ""
		}
	}
	if strings.HasSuffix(u, "b") {
		if strings.EqualFold(u, "b") {
			return 0, "ambiguous unit \"b\" (b is for bits): use B for bytes"
		}
		p := strings.ToUpper(u[:1])
		if _, ok := byteUnits[p+"iB"]; ok && (len(u) == 2 || len(u) == 3 && (u[1] == 'i' || u[1] == 'I')) {
			return 0, "ambiguous unit " + strconv.Quote(u) + " (b is for bits): use " +
				p + "B (1000-based) or " + p + "iB (1024-based)"
		}
	}
	return 0, "unknown unit " + strconv.Quote(u) + ": " + knownByteUnits
}

// ParseBytes parses a size: a number, optionally with a fraction or an
// exponent, optionally followed by spaces and a unit. Without a unit the
// number is in bytes. Units:
//
//	B                        bytes
//	K, k, Ki, KiB            1024 bytes (also KIB, kiB)
//	M, m, Mi, MiB            1024² bytes
//	G, g, Gi, GiB            1024³ bytes
//	T, t, Ti, TiB            1024⁴ bytes
//	KB (kB), MB, GB, TB      1000, 1000², 1000³, 1000⁴ bytes
//
// So "10m" is 10MiB, "1.5GiB" is 1610612736 and "1e3" is 1000. Units spelled
// with a lowercase b ("mb", "Kb") are refused as ambiguous: b means bits. The
// result is rounded down to whole bytes, computed exactly. Empty, negative,
// non-finite and out-of-range inputs are errors, all *ParseError.
func ParseBytes(s string) (Bytes, error) {
	in := strings.TrimSpace(s)
	fail := func(reason string) (Bytes, error) {
		return 0, &ParseError{Kind: "size", Input: in, Reason: reason}
	}
	switch {
	case in == "":
		return fail("empty")
	case len(in) > maxInput:
		return fail("too long")
	}
	d, neg, rest, ok := scanDecimal(in, true)
	if !ok {
		if isNonFinite(in) {
			return fail("not a finite number")
		}
		return fail("does not start with a number")
	}
	unit, reason := byteUnit(strings.TrimLeftFunc(rest, unicode.IsSpace))
	if reason != "" {
		return fail(reason)
	}
	if neg && !d.isZero() {
		return fail("is negative")
	}
	n, ok := d.times(unit)
	if !ok {
		return fail("too large: the maximum is " + strconv.FormatInt(math.MaxInt64, 10) + " bytes")
	}
	return Bytes(n), nil
}

// String prints b exactly, in the unit that gives the smaller number: the
// largest binary unit that holds it exactly ("256MiB", "1536KiB") or the
// largest decimal one ("10TB", not "9765625000KiB"), the binary one on a
// tie; "100B" and "0B" when neither holds it. ParseBytes reads it back.
func (b Bytes) String() string {
	u := uint64(b)
	sign := ""
	if b < 0 {
		u = -u // two's complement: right for math.MinInt64 too
		sign = "-"
	}
	n, suffix := exactIn(u, binaryUnits)
	if dn, dsuffix := exactIn(u, decimalUnits); dn < n {
		n, suffix = dn, dsuffix
	}
	return sign + strconv.FormatUint(n, 10) + suffix
}

// printUnit is a unit String may print.
type printUnit struct {
	size   uint64
	suffix string
}

// binaryUnits and decimalUnits are the units String picks from, largest
// first.
var (
	binaryUnits  = []printUnit{{uint64(tib), "TiB"}, {uint64(GiB), "GiB"}, {uint64(MiB), "MiB"}, {uint64(KiB), "KiB"}}
	decimalUnits = []printUnit{{1e12, "TB"}, {1e9, "GB"}, {1e6, "MB"}, {1e3, "KB"}}
)

// exactIn returns u in the largest of units that holds it exactly, or in
// bytes.
func exactIn(u uint64, units []printUnit) (uint64, string) {
	if u != 0 {
		for _, unit := range units {
			if u%unit.size == 0 {
				return u / unit.size, unit.suffix
			}
		}
	}
	return u, "B"
}

// durationUnits maps the units of Go's duration syntax to nanoseconds.
var durationUnits = map[string]int64{
	"ns": 1,
	"us": 1e3, "µs": 1e3 /* U+00B5 */, "μs": 1e3, /* U+03BC */
	"ms": 1e6,
	"s":  1e9,
	"m":  60e9,
	"h":  3600e9,
}

// ParseDuration parses a duration in Go's syntax ("1.5s", "250ms", "1h30m";
// see time.ParseDuration), or a bare number of seconds ("2", "0.5", "1e3").
// Spaces may separate a number from its unit and one part from the next.
// The result is rounded down to whole nanoseconds. Empty, negative,
// non-finite and out-of-range inputs are errors, all *ParseError.
func ParseDuration(s string) (Duration, error) {
	in := strings.TrimSpace(s)
	fail := func(reason string) (Duration, error) {
		return 0, &ParseError{Kind: "duration", Input: in, Reason: reason}
	}
	tooLarge := "too large: the maximum is " + time.Duration(math.MaxInt64).String()
	switch {
	case in == "":
		return fail("empty")
	case len(in) > maxInput:
		return fail("too long")
	case isNonFinite(in):
		return fail("not a finite number")
	}

	// A bare number: seconds.
	if d, neg, rest, ok := scanDecimal(in, true); ok && rest == "" {
		n, ok := d.times(1e9)
		switch {
		case neg && !d.isZero():
			return fail("is negative")
		case !ok:
			return fail(tooLarge)
		}
		return Duration(n), nil
	}

	// Go's syntax: [sign] (number unit)+.
	rest := in
	neg := false
	if rest[0] == '+' || rest[0] == '-' {
		neg = rest[0] == '-'
		rest = rest[1:]
	}
	if rest == "" {
		return fail("missing number")
	}
	var total int64
	for rest != "" {
		d, _, r, ok := scanDecimal(rest, false)
		if !ok {
			return fail("expected a number at " + strconv.Quote(rest))
		}
		num := rest[:len(rest)-len(r)]
		r = strings.TrimLeftFunc(r, unicode.IsSpace)
		end := strings.IndexFunc(r, func(c rune) bool {
			return c == '.' || '0' <= c && c <= '9' || unicode.IsSpace(c)
		})
		if end < 0 {
			end = len(r)
		}
		u := r[:end]
		if u == "" {
			return fail("missing unit after " + strconv.Quote(num) + ": known are ns, us (µs), ms, s, m, h")
		}
		unit, ok := durationUnits[u]
		if !ok {
			return fail("unknown unit " + strconv.Quote(u) + ": known are ns, us (µs), ms, s, m, h")
		}
		n, ok := d.times(unit)
		if !ok || total > math.MaxInt64-n {
			if neg {
				return fail("is negative")
			}
			return fail(tooLarge)
		}
		total += n
		rest = strings.TrimLeftFunc(r[end:], unicode.IsSpace)
	}
	if neg && total != 0 {
		return fail("is negative")
	}
	return Duration(total), nil
}

// String prints d as time.Duration does ("1.5s", "1h30m0s", "0s").
// ParseDuration reads it back.
func (d Duration) String() string { return time.Duration(d).String() }
