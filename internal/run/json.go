package run

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/sandboxd/sandboxd/internal/jsonstream"
	"github.com/sandboxd/sandboxd/internal/spool"
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

// MarshalJSON writes the Result's wire form (EncodeJSON's bytes).
func (r Result) MarshalJSON() ([]byte, error) { return jsonstream.Marshal(&r) }

// EncodeJSON writes the Result's wire form, the fields of resultJSON in
// order, streaming its output and files' contents: a response of 64 MiB
// of output is never held encoded.
func (r *Result) EncodeJSON(w *jsonstream.Writer) {
	w.BeginObject()
	w.Key("id")
	w.String(r.ID)
	w.Key("status")
	w.String(string(r.Status))
	stringField(w, "reason", r.Reason)
	w.Key("exit_code")
	w.Value(r.ExitCode)
	intField(w, "signal", r.Signal)
	stringField(w, "signal_name", r.SignalName)
	streamField(w, "stdout", "stdout_encoding", r.Stdout, r.StdoutFile)
	streamField(w, "stderr", "stderr_encoding", r.Stderr, r.StderrFile)
	boolField(w, "stdout_truncated", r.StdoutTruncated)
	boolField(w, "stderr_truncated", r.StderrTruncated)
	w.Key("wall_time_ms")
	w.Value(ms(r.WallTime))
	w.Key("cpu_time_ms")
	w.Value(ms(r.CPUTime))
	w.Key("peak_memory_bytes")
	w.Value(r.PeakMemory)
	intField(w, "oom_kills", r.OOMKills)
	if len(r.Files) > 0 {
		w.Key("files")
		w.BeginArray()
		for i := range r.Files {
			r.Files[i].EncodeJSON(w)
		}
		w.EndArray()
	}
	boolField(w, "files_truncated", r.FilesTruncated)
	if r.Compile != nil {
		w.Key("compile")
		r.Compile.EncodeJSON(w)
	}
	stringField(w, "runtime", r.Runtime)
	stringField(w, "version", r.Version)
	w.Key("isolation")
	w.Value(r.Isolation)
	stringField(w, "error", r.Error)
	w.EndObject()
}

// encodeOutput writes outputJSON's fields: each stream as text when it is
// UTF-8, else as base64 with its "_encoding" field.
func encodeOutput(w *jsonstream.Writer, stdout, stderr []byte) {
	bytesField(w, "stdout", "stdout_encoding", stdout)
	bytesField(w, "stderr", "stderr_encoding", stderr)
}

// bytesField writes b under name as EncodeBytes gives it, and the
// encoding under encName when it is base64.
func bytesField(w *jsonstream.Writer, name, encName string, b []byte) {
	w.Key(name)
	if utf8.Valid(b) {
		w.Bytes(b)
		return
	}
	w.Base64(b)
	w.Key(encName)
	w.String(EncodingBase64)
}

// streamField writes an output stream as bytesField does, from the spool
// file f when it is set (read a chunk at a time), else from b.
func streamField(w *jsonstream.Writer, name, encName string, b []byte, f *spool.File) {
	if f == nil {
		bytesField(w, name, encName, b)
		return
	}
	w.Key(name)
	if f.UTF8() {
		w.StringFrom(f.Reader())
		return
	}
	w.Base64From(f.Reader())
	w.Key(encName)
	w.String(EncodingBase64)
}

// The fields with omitempty: written only when not zero.

func stringField(w *jsonstream.Writer, name, v string) {
	if v != "" {
		w.Key(name)
		w.String(v)
	}
}

func intField(w *jsonstream.Writer, name string, v int) {
	if v != 0 {
		w.Key(name)
		w.Value(v)
	}
}

func boolField(w *jsonstream.Writer, name string, v bool) {
	if v {
		w.Key(name)
		w.Value(true)
	}
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
func (f OutputFile) MarshalJSON() ([]byte, error) { return jsonstream.Marshal(&f) }

// EncodeJSON writes outputFileJSON's fields, streaming the content.
func (f *OutputFile) EncodeJSON(w *jsonstream.Writer) {
	w.BeginObject()
	w.Key("name")
	w.String(f.Name)
	w.Key("size")
	w.Value(f.Size)
	w.Key("mode")
	w.Value(f.Mode)
	bytesField(w, "content", "encoding", f.Content)
	// Omitted: the file was too large to return.
	boolField(w, "omitted", f.Content == nil && f.Size > 0)
	w.EndObject()
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
