package session

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/sandboxd/sandboxd/internal/run"
)

// The kernel protocol (kernel/PROTOCOL.md): one JSON object per line,
// requests on the kernel's fd 3, answers on its fd 4, the cells' output on
// its stdout and stderr. Answers come from inside the sandbox, from a
// process the cell's code controls: they are read with a size cap and
// checked, and a kernel that breaks the protocol is killed.

// request is one cell sent to the kernel.
type request struct {
	ID   string `json:"id"`
	Code string `json:"code"`
}

// answer is one line from the kernel.
type answer struct {
	Type string `json:"type"` // "ready", "display" or "done"
	ID   string `json:"id"`
	// ready
	Language string `json:"language"`
	Version  string `json:"version"`
	// display
	Data run.MIMEBundle `json:"data"`
	// done
	Status string         `json:"status"` // "ok" or "error"
	Result run.MIMEBundle `json:"result"`
	Error  *run.CellError `json:"error"`
}

// maxAnswer caps one answer line: a display of a large figure is a few
// MiB of base64; past this the kernel is broken or hostile.
const maxAnswer = 32 << 20

// errProtocol: the kernel said something the protocol does not allow.
var errProtocol = errors.New("kernel protocol violation")

// readAnswers decodes answers from r until EOF or a violation, sending
// each to out; it closes out when done and reports why in *err.
func readAnswers(r io.Reader, out chan<- answer, errp *error) {
	defer close(out)
	// Small: it is held for the session's life, and an answer is
	// mostly a line of a hundred bytes. A display's MiB of base64 takes
	// 256 reads instead of 16, lost in the 15-20 ms its JSON takes to
	// decode (BenchmarkReadAnswersDisplay: the same with 64 KiB).
	br := bufio.NewReaderSize(r, 4<<10)
	for {
		line, err := readLine(br, maxAnswer)
		if err != nil {
			if !errors.Is(err, io.EOF) {
				*errp = err
			}
			return
		}
		a, err := parseAnswer(line)
		if err != nil {
			*errp = err
			return
		}
		out <- a
	}
}

// parseAnswer decodes one answer line (without its newline). It is all
// or nothing: on an error the answer is the zero value.
func parseAnswer(line []byte) (answer, error) {
	var a answer
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&a); err != nil {
		// json's messages quote the input: an unknown field's name, a
		// value of the wrong type, as long as the line.
		return answer{}, fmt.Errorf("%w: %w", errProtocol, run.ClipError(err, run.MaxMessage))
	}
	// Decode stops after the first value: anything but spaces after it
	// (a second object, garbage) makes the line malformed.
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return answer{}, fmt.Errorf("%w: data after the answer's object", errProtocol)
	}
	switch a.Type {
	case "ready", "display", "done":
	default:
		return answer{}, fmt.Errorf("%w: unknown answer type %s", errProtocol, run.Quote(a.Type, run.MaxName))
	}
	return a, nil
}

// readLine reads one line of at most max bytes, without its newline.
func readLine(br *bufio.Reader, max int) ([]byte, error) {
	var line []byte
	for {
		chunk, err := br.ReadSlice('\n')
		if len(line)+len(chunk) > max+1 {
			return nil, fmt.Errorf("%w: an answer longer than %d bytes", errProtocol, max)
		}
		line = append(line, chunk...)
		switch {
		case err == nil:
			return line[:len(line)-1], nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF) && len(line) > 0:
			return nil, fmt.Errorf("%w: an answer cut off by EOF", errProtocol)
		default:
			return nil, err
		}
	}
}
