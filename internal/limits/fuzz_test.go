package limits

import (
	"encoding/json"
	"errors"
	"testing"
)

var bytesSeeds = []string{
	"0", "100", "1.5GiB", "256 MiB", "10m", "1e3", "-1", "", "12XB", "9999999999999TiB",
	"9223372036854775807", "8388607.999999999999TiB", "4.35MB", ".5k", "5.e2", "1e-400",
	"NaN", "-Inf", "1 B", "1kB", "1KIB", "1mb", "0x10", "1_000", "1e99999999999", "+0",
	"  7 t ", "1.2.3", "\u00a01K", "1\u00a0K",
}

var durationSeeds = []string{
	"0", "2", "0.5", "1e3", "1.5s", "250ms", "2m", "1h30m", "1h 30m", "-1s", "-0s",
	"2562047h47m16.854775807s", "2562048h", "9223372037", "NaN", "inf", "3µs", "3μs",
	"1e-10", "1h30", "1x", "+5m", "-", ".", "1s.", "1.5e3ms", "1e", "0.000000001",
}

func FuzzParseBytes(f *testing.F) {
	for _, s := range bytesSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		b, err := ParseBytes(s)
		if err != nil {
			if b != 0 || !errors.Is(err, ErrInvalid) {
				t.Fatalf("ParseBytes(%q) = %d, %v: want 0 and ErrInvalid on error", s, b, err)
			}
			return
		}
		if b < 0 {
			t.Fatalf("ParseBytes(%q) = %d < 0", s, b)
		}
		back, err := ParseBytes(b.String())
		if err != nil || back != b {
			t.Fatalf("ParseBytes(%q) = %d, but ParseBytes(%q) = %d, %v", s, b, b.String(), back, err)
		}
		data, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		var fromJSON Bytes
		if err := json.Unmarshal(data, &fromJSON); err != nil || fromJSON != b {
			t.Fatalf("JSON %s of %d came back as %d, %v", data, b, fromJSON, err)
		}
	})
}

func FuzzParseDuration(f *testing.F) {
	for _, s := range durationSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := ParseDuration(s)
		if err != nil {
			if d != 0 || !errors.Is(err, ErrInvalid) {
				t.Fatalf("ParseDuration(%q) = %d, %v: want 0 and ErrInvalid on error", s, d, err)
			}
			return
		}
		if d < 0 {
			t.Fatalf("ParseDuration(%q) = %d < 0", s, d)
		}
		back, err := ParseDuration(d.String())
		if err != nil || back != d {
			t.Fatalf("ParseDuration(%q) = %d, but ParseDuration(%q) = %d, %v", s, d, d.String(), back, err)
		}
		data, err := json.Marshal(d)
		if err != nil {
			t.Fatal(err)
		}
		var fromJSON Duration
		if err := json.Unmarshal(data, &fromJSON); err != nil || fromJSON != d {
			t.Fatalf("JSON %s of %d came back as %d, %v", data, d, fromJSON, err)
		}
	})
}
