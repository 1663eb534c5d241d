package run

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestResultJSONRoundTrip(t *testing.T) {
	in := Result{
		ID: "x", Status: StatusSignaled, ExitCode: -1, Signal: 11, SignalName: "SIGSEGV",
		Stdout: []byte("héllo\n"), Stderr: []byte{0xff, 0x00, 'a'},
		WallTime: 1500 * time.Microsecond, CPUTime: 2 * time.Millisecond, PeakMemory: 42,
		Files: []OutputFile{
			{Name: "a.txt", Size: 2, Mode: 0o644, Content: []byte("hi")},
			{Name: "b.bin", Size: 1, Mode: 0o600, Content: []byte{0x80}},
			{Name: "big", Size: 1 << 30, Mode: 0o644},
		},
		Compile:   &Result{Status: StatusOK, Stdout: []byte{}, Stderr: []byte("warning")},
		Isolation: Isolation{Backend: BackendProcess, Namespaces: []string{"user"}, Seccomp: true},
	}
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	for _, want := range []string{`"stdout":"héllo\n"`, `"stderr_encoding":"base64"`, `"wall_time_ms":1.5`, `"encoding":"base64"`, `"omitted":true`, `"stderr":"warning"`} {
		if !strings.Contains(s, want) {
			t.Errorf("JSON lacks %s:\n%s", want, s)
		}
	}
	var out Result
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(in, out) {
		t.Errorf("round trip:\n in %+v\nout %+v", in, out)
	}
}

func TestFileJSON(t *testing.T) {
	var f File
	if err := json.Unmarshal([]byte(`{"name":"a.bin","content":"AAE=","encoding":"base64","mode":493}`), &f); err != nil {
		t.Fatal(err)
	}
	if f.Name != "a.bin" || string(f.Content) != "\x00\x01" || f.Mode != 0o755 {
		t.Errorf("decoded %+v", f)
	}
	for _, bad := range []string{
		`{"name":"a","content":"x","encoding":"hex"}`,
		`{"name":"a","content":"!!","encoding":"base64"}`,
		`{"name":"a","content":"x","contents":"y"}`,
	} {
		if err := json.Unmarshal([]byte(bad), &f); err == nil {
			t.Errorf("accepted %s", bad)
		}
	}
	var st Status
	if err := json.Unmarshal([]byte(`"exploded"`), &st); err == nil {
		t.Error("accepted a status outside the closed set")
	}
}

// TestSpecJSON: a Spec's JSON is the API's run body: entrypoint, stdin as
// text, and back.
func TestSpecJSON(t *testing.T) {
	in := Spec{Runtime: "python", Files: []File{{Name: "a.py", Content: []byte("print(input())")}}, Entry: "a.py", Stdin: Text("hi\n"), Args: []string{"x"}}
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"entrypoint":"a.py"`, `"stdin":"hi\n"`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("JSON lacks %s: %s", want, b)
		}
	}
	var out Spec
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(in, out) {
		t.Errorf("round trip:\n in %+v\nout %+v", in, out)
	}
	var empty Spec
	if err := json.Unmarshal([]byte(`{"files":[],"stdin":""}`), &empty); err != nil || empty.Stdin != nil {
		t.Errorf("empty stdin: %v, %q", err, empty.Stdin)
	}
}
