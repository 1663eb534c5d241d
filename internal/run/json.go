package run

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"time"
	"unicode/utf8"
)

// The JSON form of a Result is the one every front end prints: output and
// file contents as text when they are UTF-8 (what a person, a model or a
// Piston client expects), as base64 with an "..._encoding": "base64" field
// when they are not; times in milliseconds.

// Encodings of bytes in JSON.
const (
	EncodingUTF8   = "utf8"
	EncodingBase64 = "base64"
)

// EncodeBytes returns b as JSON text: itself when it is valid UTF-8 (with
// an empty encoding), else base64 with encoding "base64".
func EncodeBytes(b []byte) (text, encoding string) {
	if utf8.Valid(b) {
		return string(b), ""
	}
	return base64.StdEncoding.EncodeToString(b), EncodingBase64
}

// DecodeBytes reverses EncodeBytes; encoding "" and "utf8" mean text.
func DecodeBytes(text, encoding string) ([]byte, error) {
	switch encoding {
	case "", EncodingUTF8:
		return []byte(text), nil
	case EncodingBase64:
		b, err := base64.StdEncoding.DecodeString(text)
		if err != nil {
			return nil, fmt.Errorf("invalid base64: %w", err)
		}
		return b, nil
	}
	return nil, fmt.Errorf("unknown encoding %q: use %q or %q", encoding, EncodingUTF8, EncodingBase64)
}

// outputJSON is a result's stdout and stderr in JSON, as text or base64.
type outputJSON struct {
	Stdout         string `json:"stdout"`
	StdoutEncoding string `json:"stdout_encoding,omitempty"`
	Stderr         string `json:"stderr"`
	StderrEncoding string `json:"stderr_encoding,omitempty"`
}

func outputOf(stdout, stderr []byte) outputJSON {
	var o outputJSON
	o.Stdout, o.StdoutEncoding = EncodeBytes(stdout)
	o.Stderr, o.StderrEncoding = EncodeBytes(stderr)
	return o
}

func (o outputJSON) bytes() (stdout, stderr []byte, err error) {
	if stdout, err = DecodeBytes(o.Stdout, o.StdoutEncoding); err != nil {
		return nil, nil, fmt.Errorf("stdout: %w", err)
	}
	if stderr, err = DecodeBytes(o.Stderr, o.StderrEncoding); err != nil {
		return nil, nil, fmt.Errorf("stderr: %w", err)
	}
	return stdout, stderr, nil
}

type resultJSON struct {
	ID         string `json:"id"`
	Status     Status `json:"status"`
	Reason     string `json:"reason,omitempty"`
	ExitCode   int    `json:"exit_code"`
	Signal     int    `json:"signal,omitempty"`
	SignalName string `json:"signal_name,omitempty"`
	outputJSON
	StdoutTruncated bool         `json:"stdout_truncated,omitempty"`
	StderrTruncated bool         `json:"stderr_truncated,omitempty"`
	WallTimeMS      float64      `json:"wall_time_ms"`
	CPUTimeMS       float64      `json:"cpu_time_ms"`
	PeakMemory      int64        `json:"peak_memory_bytes"`
	OOMKills        int          `json:"oom_kills,omitempty"`
	Files           []OutputFile `json:"files,omitempty"`
	FilesTruncated  bool         `json:"files_truncated,omitempty"`
	Compile         *Result      `json:"compile,omitempty"`
	Runtime         string       `json:"runtime,omitempty"`
	Version         string       `json:"version,omitempty"`
	Isolation       Isolation    `json:"isolation"`
	Error           string       `json:"error,omitempty"`
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func fromMS(f float64) time.Duration { return time.Duration(f * float64(time.Millisecond)) }

// MarshalJSON writes the Result's wire form.
func (r Result) MarshalJSON() ([]byte, error) {
	j := resultJSON{
		ID: r.ID, Status: r.Status, Reason: r.Reason, ExitCode: r.ExitCode,
		Signal: r.Signal, SignalName: r.SignalName,
		StdoutTruncated: r.StdoutTruncated, StderrTruncated: r.StderrTruncated,
		WallTimeMS: ms(r.WallTime), CPUTimeMS: ms(r.CPUTime),
		PeakMemory: r.PeakMemory, OOMKills: r.OOMKills,
		Files: r.Files, FilesTruncated: r.FilesTruncated, Compile: r.Compile,
		Runtime: r.Runtime, Version: r.Version, Isolation: r.Isolation, Error: r.Error,
	}
	j.outputJSON = outputOf(r.Stdout, r.Stderr)
	return json.Marshal(j)
}

// UnmarshalJSON reads the Result's wire form (sandboxctl --server does).
func (r *Result) UnmarshalJSON(b []byte) error {
	var j resultJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	stdout, stderr, err := j.outputJSON.bytes()
	if err != nil {
		return err
	}
	*r = Result{
		ID: j.ID, Status: j.Status, Reason: j.Reason, ExitCode: j.ExitCode,
		Signal: j.Signal, SignalName: j.SignalName, Stdout: stdout, Stderr: stderr,
		StdoutTruncated: j.StdoutTruncated, StderrTruncated: j.StderrTruncated,
		WallTime: fromMS(j.WallTimeMS), CPUTime: fromMS(j.CPUTimeMS),
		PeakMemory: j.PeakMemory, OOMKills: j.OOMKills,
		Files: j.Files, FilesTruncated: j.FilesTruncated, Compile: j.Compile,
		Runtime: j.Runtime, Version: j.Version, Isolation: j.Isolation, Error: j.Error,
	}
	return nil
}

type outputFileJSON struct {
	Name     string `json:"name"`
	Size     int64  `json:"size"`
	Mode     uint32 `json:"mode"`
	Content  string `json:"content"`
	Encoding string `json:"encoding,omitempty"`
	// Omitted is set when the file was too large to return.
	Omitted bool `json:"omitted,omitempty"`
}

// MarshalJSON writes the file's content as text or base64.
func (f OutputFile) MarshalJSON() ([]byte, error) {
	j := outputFileJSON{Name: f.Name, Size: f.Size, Mode: f.Mode, Omitted: f.Content == nil && f.Size > 0}
	j.Content, j.Encoding = EncodeBytes(f.Content)
	return json.Marshal(j)
}

// UnmarshalJSON reads the file's wire form.
func (f *OutputFile) UnmarshalJSON(b []byte) error {
	var j outputFileJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	content, err := DecodeBytes(j.Content, j.Encoding)
	if err != nil {
		return fmt.Errorf("file %q: %w", j.Name, err)
	}
	if j.Omitted {
		content = nil
	}
	*f = OutputFile{Name: j.Name, Size: j.Size, Mode: j.Mode, Content: content}
	return nil
}

type fileJSON struct {
	Name     string `json:"name"`
	Content  string `json:"content"`
	Encoding string `json:"encoding,omitempty"`
	Mode     uint32 `json:"mode,omitempty"`
}

// MarshalJSON writes an input file as text or base64.
func (f File) MarshalJSON() ([]byte, error) {
	j := fileJSON{Name: f.Name, Mode: f.Mode}
	j.Content, j.Encoding = EncodeBytes(f.Content)
	return json.Marshal(j)
}

// UnmarshalJSON reads an input file: {"name", "content", "encoding"
// ("utf8", the default, or "base64"), "mode"}. Unknown fields are refused.
func (f *File) UnmarshalJSON(b []byte) error {
	var j fileJSON
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&j); err != nil {
		return fmt.Errorf("file: %w", err)
	}
	content, err := DecodeBytes(j.Content, j.Encoding)
	if err != nil {
		return fmt.Errorf("file %q: %w", j.Name, err)
	}
	*f = File{Name: j.Name, Content: content, Mode: j.Mode}
	return nil
}
