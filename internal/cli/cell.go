package cli

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"image"
	_ "image/png" // image.DecodeConfig of the kernel's figures
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/sandboxd/sandboxd/internal/client"
	"github.com/sandboxd/sandboxd/internal/run"
)

// cellView shows cells as Python's REPL does: their output as it happens,
// the text/plain of the trailing value on stdout, the traceback on stderr.
// Images (figures, display(img)) are summarized on stdout as
// "[image/png 640x480, 12 KiB]", or, with a save directory, written there
// as cell-N-K.png (the K-th image of cell N) and named in the summary.
type cellView struct {
	// stdout and stderr are shared by the cell's output, which may come
	// from other goroutines, and the view's own lines.
	stdout, stderr io.Writer
	saveDir        string

	// pending are the cell's images to save once its number is known.
	pending []string
	images  int
}

func newCellView(stdout, stderr io.Writer, saveDir string) *cellView {
	mu := &sync.Mutex{}
	return &cellView{stdout: &lockedWriter{mu: mu, w: stdout}, stderr: &lockedWriter{mu: mu, w: stderr}, saveDir: saveDir}
}

// lockedWriter serializes writes to w with others sharing mu.
type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// live starts a cell: it returns what receives the cell's output.
func (v *cellView) live() client.Live {
	v.pending, v.images = nil, 0
	return client.Live{Stdout: v.stdout, Stderr: v.stderr, Display: v.display}
}

// display shows one display of the running cell.
func (v *cellView) display(b run.MIMEBundle) {
	if png, ok := b["image/png"]; ok {
		if v.saveDir != "" {
			v.pending = append(v.pending, png)
			return
		}
		v.images++
		fmt.Fprintln(v.stdout, imageSummary(png, ""))
		return
	}
	if text, ok := b["text/plain"]; ok {
		fmt.Fprintln(v.stdout, text)
	}
}

// show prints what a finished cell left besides its output: its saved
// images, its value, its traceback and, unless quiet, why a limit or a
// failure stopped it.
func (v *cellView) show(res *run.CellResult, quiet bool) {
	pending := v.pending
	v.pending = nil
	if png, ok := res.Result["image/png"]; ok {
		if v.saveDir != "" {
			pending = append(pending, png)
		} else {
			v.images++
			fmt.Fprintln(v.stdout, imageSummary(png, ""))
		}
	} else if text, ok := res.Result["text/plain"]; ok {
		fmt.Fprintln(v.stdout, text)
	}
	for _, png := range pending {
		v.images++
		name := filepath.Join(v.saveDir, fmt.Sprintf("cell-%d-%d.png", res.Cell, v.images))
		if err := saveImage(name, png); err != nil {
			fmt.Fprintf(v.stderr, "sandboxctl: save image: %v\n", err)
			fmt.Fprintln(v.stdout, imageSummary(png, ""))
			continue
		}
		fmt.Fprintln(v.stdout, imageSummary(png, name))
	}
	if e := res.Error; e != nil {
		tb := e.Traceback
		if tb == "" {
			tb = e.Name + ": " + e.Value
		}
		if !strings.HasSuffix(tb, "\n") {
			tb += "\n"
		}
		fmt.Fprint(v.stderr, tb)
	}
	if !quiet && res.Status != run.StatusOK && res.Status != run.StatusError && res.Reason != "" {
		fmt.Fprintln(v.stderr, "sandboxctl:", res.Reason)
	}
}

// imageSummary is "[image/png 640x480, 12 KiB]", with ": name" when the
// image was saved there.
func imageSummary(b64, name string) string {
	b, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return "[image/png, not valid base64]"
	}
	s := "[image/png"
	if cfg, _, err := image.DecodeConfig(bytes.NewReader(b)); err == nil {
		s += fmt.Sprintf(" %dx%d", cfg.Width, cfg.Height)
	}
	s += ", " + humanBytes(int64(len(b)))
	if name != "" {
		s += ": " + name
	}
	return s + "]"
}

// saveImage writes a base64 image to name, creating its directory.
func saveImage(name, b64 string) error {
	b, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		return err
	}
	return os.WriteFile(name, b, 0o644)
}

// humanBytes is n in B, KiB or MiB: "812 B", "1.5 KiB", "12 KiB".
func humanBytes(n int64) string {
	const k = 1024
	switch {
	case n < k:
		return fmt.Sprintf("%d B", n)
	case n < 10*k:
		return fmt.Sprintf("%.1f KiB", float64(n)/k)
	case n < k*k:
		return fmt.Sprintf("%d KiB", (n+k/2)/k)
	case n < 10*k*k:
		return fmt.Sprintf("%.1f MiB", float64(n)/(k*k))
	}
	return fmt.Sprintf("%d MiB", (n+k*k/2)/(k*k))
}
