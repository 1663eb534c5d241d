package limits

import (
	"errors"
	"math"
	"strings"
	"testing"
	"time"
)

func TestParseBytes(t *testing.T) {
	tests := []struct {
		in   string
		want Bytes
	}{
		{"0", 0},
		{"-0", 0},
		{"100", 100},
		{"+100", 100},
		{"100B", 100},
		{"1.9", 1}, // rounded down
		{"1e3", 1000},
		{"1E3", 1000},
		{"2.5e-1K", 256},
		{"1K", KiB},
		{"1k", KiB},
		{"1Ki", KiB},
		{"1KiB", KiB},
		{"1KIB", KiB},
		{"1kiB", KiB},
		{"10m", 10 * MiB},
		{"10M", 10 * MiB},
		{"256Mi", 256 * MiB},
		{"256MiB", 256 * MiB},
		{"256 MiB", 256 * MiB},
		{"  256\tMiB \n", 256 * MiB},
		{"1.5GiB", 1536 * MiB},
		{"1.5g", 1536 * MiB},
		{".5G", 512 * MiB},
		{"5.G", 5 * GiB},
		{"2T", 2 * tib},
		{"2t", 2 * tib},
		{"2TiB", 2 * tib},
		{"1KB", 1000},
		{"1kB", 1000},
		{"4.35MB", 4350000}, // float64 would give 4349999
		{"1GB", 1e9},
		{"3TB", 3e12},
		{"0.0001B", 0},
		{"1e-400", 0},
		{"9223372036854775807", math.MaxInt64},
		{"9223372036854775807B", math.MaxInt64},
		{"8388607.999999999999TiB", math.MaxInt64 - 1},
		{"0.000000000000000000000000000001TiB", 0},
	}
	for _, tt := range tests {
		got, err := ParseBytes(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("ParseBytes(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
		}
	}
}

func TestParseBytesErrors(t *testing.T) {
	tests := []struct {
		in   string
		want string // in the message
	}{
		{"", "empty"},
		{"   ", "empty"},
		{"-1", "is negative"},
		{"-1.5GiB", "is negative"},
		{"12XB", `unknown unit "XB": known are B, K or KiB`},
		{"1PiB", `unknown unit "PiB"`},
		{"1 B B", `unknown unit "B B"`},
		{"1e", `unknown unit "e"`},
		{"1mb", `ambiguous unit "mb" (b is for bits): use MB (1000-based) or MiB (1024-based)`},
		{"1Kb", `ambiguous unit "Kb"`},
		{"1gib", `ambiguous unit "gib"`},
		{"1b", `ambiguous unit "b"`},
		{"9999999999999TiB", "too large"},
		{"9223372036854775808", "too large"},
		{"8388608TiB", "too large"},
		{"1e19", "too large"},
		{"1e400", "too large"},
		{"1e99999999999999999999", "too large"},
		{"NaN", "not a finite number"},
		{"-Inf", "not a finite number"},
		{"infinity", "not a finite number"},
		{"MiB", "does not start with a number"},
		{".", "does not start with a number"},
		{"0x10", `unknown unit "x10"`},
		{"1_000", `unknown unit "_000"`},
		{"1.2.3", `unknown unit ".3"`},
		{strings.Repeat("1", 101), "too long"},
	}
	for _, tt := range tests {
		got, err := ParseBytes(tt.in)
		if err == nil {
			t.Errorf("ParseBytes(%q) = %d, want an error", tt.in, got)
			continue
		}
		if !strings.Contains(err.Error(), tt.want) {
			t.Errorf("ParseBytes(%q) error %q, want it to contain %q", tt.in, err, tt.want)
		}
		var pe *ParseError
		if !errors.As(err, &pe) || pe.Kind != "size" || !errors.Is(err, ErrInvalid) {
			t.Errorf("ParseBytes(%q) error %#v, want a *ParseError of kind size that is ErrInvalid", tt.in, err)
		}
	}
}

func TestBytesString(t *testing.T) {
	tests := []struct {
		in   Bytes
		want string
	}{
		{0, "0B"},
		{1, "1B"},
		{100, "100B"},
		{1000, "1KB"},
		{1500, "1500B"},
		{KiB, "1KiB"},
		{500 * KiB, "500KiB"},   // also 512KB: binary on a tie
		{1000 * MiB, "1000MiB"}, // not 1048576KB
		{1024e6, "1024MB"},      // not 1000000KiB
		{1e9, "1GB"},
		{10e12, "10TB"}, // not 9765625000KiB
		{3e12, "3TB"},
		{1536 * KiB, "1536KiB"},
		{256 * MiB, "256MiB"},
		{1536 * MiB, "1536MiB"},
		{4 * GiB, "4GiB"},
		{1024 * GiB, "1TiB"},
		{math.MaxInt64, "9223372036854775807B"},
		{-1, "-1B"},
		{-2 * MiB, "-2MiB"},
		{math.MinInt64, "-8388608TiB"},
	}
	for _, tt := range tests {
		if got := tt.in.String(); got != tt.want {
			t.Errorf("Bytes(%d).String() = %q, want %q", int64(tt.in), got, tt.want)
		}
	}
}

func TestBytesRoundTrip(t *testing.T) {
	values := []Bytes{0, 1, 2, 511, 512, 1000, 1023, 1024, 1025, 4096, 1e6, 1e9,
		MiB - 1, MiB + 1, 3 * MiB / 2, 4 * GiB, 5*GiB + 1, tib, 7 * tib, 1e15,
		math.MaxInt64, math.MaxInt64 - 1, math.MaxInt64 / 2, 1 << 62, 8388607 * tib}
	for i := 0; i < 63; i++ {
		values = append(values, 1<<i, 3<<i&math.MaxInt64)
	}
	for _, b := range values {
		got, err := ParseBytes(b.String())
		if err != nil || got != b {
			t.Errorf("ParseBytes(%q) = %d, %v; want %d", b.String(), got, err, b)
		}
	}
}

func TestParseDuration(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
	}{
		{"0", 0},
		{"-0", 0},
		{"0s", 0},
		{"-0s", 0},
		{"2", 2 * time.Second},
		{"0.5", 500 * time.Millisecond},
		{".5", 500 * time.Millisecond},
		{"1e3", 1000 * time.Second},
		{"1e-9", 1},
		{"1e-10", 0}, // rounded down
		{"1.5s", 1500 * time.Millisecond},
		{"+1.5s", 1500 * time.Millisecond},
		{"250ms", 250 * time.Millisecond},
		{"2m", 2 * time.Minute},
		{"1h30m", 90 * time.Minute},
		{"1h 30m", 90 * time.Minute},
		{" 10 s ", 10 * time.Second},
		{"1.5e3ms", 1500 * time.Millisecond},
		{"100ns", 100},
		{"3us", 3 * time.Microsecond},
		{"3µs", 3 * time.Microsecond},
		{"3μs", 3 * time.Microsecond},
		{"1.0000000009s", time.Second},
		{"9223372036", 9223372036 * time.Second},
		{"9223372036.854775807", math.MaxInt64},
		{"2562047h47m16.854775807s", math.MaxInt64},
		{"9223372036854775807ns", math.MaxInt64},
	}
	for _, tt := range tests {
		got, err := ParseDuration(tt.in)
		if err != nil || got != Duration(tt.want) {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
}

func TestParseDurationErrors(t *testing.T) {
	tests := []struct {
		in   string
		want string
	}{
		{"", "empty"},
		{"-1", "is negative"},
		{"-1s", "is negative"},
		{"-0.5", "is negative"},
		{"-1h30m", "is negative"},
		{"-9999999999999h", "is negative"},
		{"NaN", "not a finite number"},
		{"+Inf", "not a finite number"},
		{"9223372037", "too large: the maximum is 2562047h47m16.854775807s"},
		{"2562048h", "too large"},
		{"2562047h48m", "too large"},
		{"9223372036854775808ns", "too large"},
		{"1e400s", "too large"},
		{"1x", `unknown unit "x": known are ns, us (µs), ms, s, m, h`},
		{"1 sec", `unknown unit "sec"`},
		{"1d", `unknown unit "d"`},
		{"1e3xs", `unknown unit "xs"`},
		{"1h30", `missing unit after "30"`},
		{"-", "missing number"},
		{"s", `expected a number at "s"`},
		{"1s-1s", `unknown unit "s-"`},
		{"1s.", `expected a number at "."`},
		{strings.Repeat("1s", 51), "too long"},
	}
	for _, tt := range tests {
		got, err := ParseDuration(tt.in)
		if err == nil {
			t.Errorf("ParseDuration(%q) = %v, want an error", tt.in, got)
			continue
		}
		if !strings.Contains(err.Error(), tt.want) {
			t.Errorf("ParseDuration(%q) error %q, want it to contain %q", tt.in, err, tt.want)
		}
		var pe *ParseError
		if !errors.As(err, &pe) || pe.Kind != "duration" || !errors.Is(err, ErrInvalid) {
			t.Errorf("ParseDuration(%q) error %#v, want a *ParseError of kind duration that is ErrInvalid", tt.in, err)
		}
	}
}

func TestDurationRoundTrip(t *testing.T) {
	values := []time.Duration{0, 1, 999, time.Microsecond, 1500 * time.Microsecond,
		time.Millisecond, 250 * time.Millisecond, time.Second, 1500 * time.Millisecond,
		time.Minute, 90 * time.Minute, 25*time.Hour + 1, math.MaxInt64, math.MaxInt64 - 1}
	for i := 0; i < 63; i++ {
		values = append(values, 1<<i, 7<<i&math.MaxInt64)
	}
	for _, v := range values {
		d := Duration(v)
		if d.String() != v.String() {
			t.Errorf("Duration(%d).String() = %q, want %q", v, d.String(), v.String())
		}
		got, err := ParseDuration(d.String())
		if err != nil || got != d {
			t.Errorf("ParseDuration(%q) = %d, %v; want %d", d.String(), got, err, d)
		}
		// Every duration Go parses, we parse alike.
		if std, err := time.ParseDuration(v.String()); err != nil || Duration(std) != got {
			t.Errorf("time.ParseDuration(%q) = %v, %v; we got %v", v.String(), std, err, got)
		}
	}
}
