package limits

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
)

// JSON and text forms. A size or duration is written as a string in human
// units ("256MiB", "1.5s") and read from such a string or from a JSON number:
// bytes for Bytes, seconds for Duration (fractions allowed). JSON null leaves
// the value unchanged, as encoding/json does for plain numbers.
//
// Set, String and Type make *Bytes and *Duration flag values
// (github.com/spf13/pflag.Value), so they can be command-line flags.

// MarshalJSON writes b as a string, "256MiB".
func (b Bytes) MarshalJSON() ([]byte, error) { return json.Marshal(b.String()) }

// UnmarshalJSON reads a string in the units of ParseBytes or a number of bytes.
func (b *Bytes) UnmarshalJSON(data []byte) error {
	v, ok, err := decodeJSON(data, "size", 1, func(s string) (int64, error) {
		v, err := ParseBytes(s)
		return int64(v), err
	})
	if ok {
		*b = Bytes(v)
	}
	return err
}

// MarshalText writes b as in String.
func (b Bytes) MarshalText() ([]byte, error) { return []byte(b.String()), nil }

// UnmarshalText reads b as ParseBytes does.
func (b *Bytes) UnmarshalText(text []byte) error { return b.Set(string(text)) }

// Set parses s as ParseBytes does and stores it in b; b is unchanged on error.
func (b *Bytes) Set(s string) error {
	v, err := ParseBytes(s)
	if err != nil {
		return err
	}
	*b = v
	return nil
}

// Type names the flag value's type: "bytes".
func (b *Bytes) Type() string { return "bytes" }

// MarshalJSON writes d as a string, "1.5s".
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(d.String()) }

// UnmarshalJSON reads a string in the syntax of ParseDuration or a number of
// seconds.
func (d *Duration) UnmarshalJSON(data []byte) error {
	v, ok, err := decodeJSON(data, "duration", 1e9, func(s string) (int64, error) {
		v, err := ParseDuration(s)
		return int64(v), err
	})
	if ok {
		*d = Duration(v)
	}
	return err
}

// MarshalText writes d as in String.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText reads d as ParseDuration does.
func (d *Duration) UnmarshalText(text []byte) error { return d.Set(string(text)) }

// Set parses s as ParseDuration does and stores it in d; d is unchanged on
// error.
func (d *Duration) Set(s string) error {
	v, err := ParseDuration(s)
	if err != nil {
		return err
	}
	*d = v
	return nil
}

// Type names the flag value's type: "duration".
func (d *Duration) Type() string { return "duration" }

// decodeJSON decodes a JSON string with parse, or a JSON number times unit,
// rounded down. ok is false for null and on error. A number must stand
// alone: units belong in strings.
func decodeJSON(data []byte, kind string, unit int64, parse func(string) (int64, error)) (v int64, ok bool, err error) {
	text := string(bytes.TrimSpace(data))
	switch {
	case text == "null":
		return 0, false, nil
	case strings.HasPrefix(text, `"`):
		var s string
		if err := json.Unmarshal(data, &s); err != nil {
			return 0, false, fmt.Errorf("decode %s: %w", kind, err)
		}
		v, err := parse(s)
		return v, err == nil, err
	}
	fail := func(reason string) (int64, bool, error) {
		return 0, false, &ParseError{Kind: kind, Input: text, Reason: reason}
	}
	if len(text) > maxInput {
		return fail("too long")
	}
	d, neg, rest, ok := scanDecimal(text, true)
	switch {
	case !ok || rest != "":
		return fail("neither a string nor a number")
	case neg && !d.isZero():
		return fail("is negative")
	}
	if v, ok = d.times(unit); !ok {
		return fail("too large")
	}
	return v, true, nil
}
