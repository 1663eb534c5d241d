package limits

import (
	"bytes"
	"encoding"
	"encoding/json"
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

var (
	_ pflag.Value              = (*Bytes)(nil)
	_ pflag.Value              = (*Duration)(nil)
	_ json.Marshaler           = Bytes(0)
	_ json.Unmarshaler         = (*Bytes)(nil)
	_ encoding.TextMarshaler   = Duration(0)
	_ encoding.TextUnmarshaler = (*Duration)(nil)
)

func TestJSONRoundTrip(t *testing.T) {
	in := Limits{
		Timeout:   Duration(1500 * time.Millisecond),
		CPUTime:   Duration(2 * time.Minute),
		Memory:    256 * MiB,
		Pids:      64,
		Output:    1536 * KiB,
		Tmpfs:     100,
		FileSize:  math.MaxInt64,
		OpenFiles: 256,
		CPUs:      1.5,
	}
	data, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	const want = `{"timeout":"1.5s","cpu_time":"2m0s","memory":"256MiB","pids":64,` +
		`"output":"1536KiB","tmpfs":"100B","file_size":"9223372036854775807B","open_files":256,"cpus":1.5}`
	if string(data) != want {
		t.Errorf("json.Marshal = %s\nwant %s", data, want)
	}
	var out Limits
	if err := json.Unmarshal(data, &out); err != nil || out != in {
		t.Errorf("json.Unmarshal(%s) = %+v, %v; want %+v", data, out, err, in)
	}
	if data, _ := json.Marshal(Limits{}); string(data) != "{}" {
		t.Errorf("json.Marshal(Limits{}) = %s, want {} (omitempty)", data)
	}
}

func TestUnmarshalJSON(t *testing.T) {
	tests := []struct {
		in   string
		want Limits
	}{
		{`{"memory": 1048576}`, Limits{Memory: MiB}},
		{`{"memory": 1.5e3}`, Limits{Memory: 1500}},
		{`{"memory": 1.9}`, Limits{Memory: 1}},
		{`{"memory": "256 MiB"}`, Limits{Memory: 256 * MiB}},
		{`{"memory": "1.5GiB"}`, Limits{Memory: 1536 * MiB}},
		{`{"memory": "10m"}`, Limits{Memory: 10 * MiB}},
		{`{"memory": "1\u004biB"}`, Limits{Memory: KiB}},
		{`{"timeout": 2}`, Limits{Timeout: Duration(2 * time.Second)}},
		{`{"timeout": 0.25}`, Limits{Timeout: Duration(250 * time.Millisecond)}},
		{`{"timeout": 1e-3}`, Limits{Timeout: Duration(time.Millisecond)}},
		{`{"timeout": "1.5s"}`, Limits{Timeout: Duration(1500 * time.Millisecond)}},
		{`{"timeout": "2"}`, Limits{Timeout: Duration(2 * time.Second)}},
		{`{"cpu_time": "1m30s"}`, Limits{CPUTime: Duration(90 * time.Second)}},
		{`{"memory": null, "timeout": null}`, Limits{}},
		{`{"memory": 0, "timeout": "0s"}`, Limits{}},
	}
	for _, tt := range tests {
		var got Limits
		if err := json.Unmarshal([]byte(tt.in), &got); err != nil || got != tt.want {
			t.Errorf("json.Unmarshal(%s) = %+v, %v; want %+v", tt.in, got, err, tt.want)
		}
	}
}

func TestUnmarshalJSONNullKeeps(t *testing.T) {
	b, d := 5*MiB, Duration(time.Second)
	if err := json.Unmarshal([]byte("null"), &b); err != nil || b != 5*MiB {
		t.Errorf("Bytes: null gave %v, %v; want it unchanged", b, err)
	}
	if err := d.UnmarshalJSON([]byte("null")); err != nil || d != Duration(time.Second) {
		t.Errorf("Duration: null gave %v, %v; want it unchanged", d, err)
	}
}

func TestUnmarshalJSONErrors(t *testing.T) {
	tests := []struct {
		in   string
		want string
	}{
		{`{"memory": -1}`, "is negative"},
		{`{"memory": "-1"}`, "is negative"},
		{`{"memory": "12XB"}`, `unknown unit "XB"`},
		{`{"memory": ""}`, "empty"},
		{`{"memory": 1e19}`, "too large"},
		{`{"memory": "9999999999999TiB"}`, "too large"},
		{`{"timeout": -0.5}`, "is negative"},
		{`{"timeout": 1e10}`, "too large"},
		{`{"timeout": "-1s"}`, "is negative"},
		{`{"timeout": "NaN"}`, "not a finite number"},
		{`{"timeout": "1 fortnight"}`, `unknown unit "fortnight"`},
	}
	for _, tt := range tests {
		var got Limits
		err := json.Unmarshal([]byte(tt.in), &got)
		if err == nil {
			t.Errorf("json.Unmarshal(%s) = %+v, want an error", tt.in, got)
			continue
		}
		if !strings.Contains(err.Error(), tt.want) || !errors.Is(err, ErrInvalid) {
			t.Errorf("json.Unmarshal(%s) error %q, want ErrInvalid containing %q", tt.in, err, tt.want)
		}
	}
	// JSON types that are neither string nor number, called directly.
	for _, in := range []string{`true`, `{}`, `[1]`, `1MiB`, `1 2`} {
		var b Bytes
		var d Duration
		if err := b.UnmarshalJSON([]byte(in)); err == nil {
			t.Errorf("Bytes.UnmarshalJSON(%s) = %v, want an error", in, b)
		}
		if err := d.UnmarshalJSON([]byte(in)); err == nil {
			t.Errorf("Duration.UnmarshalJSON(%s) = %v, want an error", in, d)
		}
	}
}

func TestText(t *testing.T) {
	m := map[Bytes]Duration{256 * MiB: Duration(time.Second)}
	data, err := json.Marshal(m) // map keys go through MarshalText
	if err != nil || string(data) != `{"256MiB":"1s"}` {
		t.Fatalf("json.Marshal(map) = %s, %v", data, err)
	}
	var back map[Bytes]Duration
	if err := json.Unmarshal(data, &back); err != nil || back[256*MiB] != Duration(time.Second) {
		t.Errorf("json.Unmarshal(%s) = %v, %v", data, back, err)
	}
	var b Bytes
	if err := b.UnmarshalText([]byte("1k")); err != nil || b != KiB {
		t.Errorf("UnmarshalText(1k) = %v, %v", b, err)
	}
	if err := b.UnmarshalText([]byte("1x")); err == nil || b != KiB {
		t.Errorf("UnmarshalText(1x) = %v, %v; want an error and b unchanged", b, err)
	}
}

func TestFlags(t *testing.T) {
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	fs.SetOutput(new(bytes.Buffer))
	mem, timeout := Defaults().Memory, Defaults().Timeout
	fs.Var(&mem, "memory", "memory limit")
	fs.Var(&timeout, "timeout", "wall-clock limit")
	if err := fs.Parse([]string{"--memory", "512m", "--timeout=2.5"}); err != nil {
		t.Fatal(err)
	}
	if mem != 512*MiB || timeout != Duration(2500*time.Millisecond) {
		t.Errorf("parsed memory %v, timeout %v", mem, timeout)
	}
	if got := fs.Lookup("memory").Value.Type(); got != "bytes" {
		t.Errorf("memory flag type %q, want bytes", got)
	}
	if got := fs.Lookup("timeout").Value.Type(); got != "duration" {
		t.Errorf("timeout flag type %q, want duration", got)
	}
	if got := fs.Lookup("memory").DefValue; got != "256MiB" {
		t.Errorf("memory flag default %q, want 256MiB", got)
	}
	err := fs.Parse([]string{"--memory", "12XB"})
	if err == nil || !strings.Contains(err.Error(), `unknown unit "XB"`) {
		t.Errorf("--memory 12XB: error %v", err)
	}
}
