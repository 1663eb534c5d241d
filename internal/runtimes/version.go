package runtimes

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"time"
)

// UnknownVersion is the version of a runtime that has no VersionCmd, or
// whose VersionCmd[0] is not installed.
const UnknownVersion = "unknown"

// maxProbeOutput caps what a version probe may print; a version fits in far
// less.
const maxProbeOutput = 64 << 10

// probe is one runtime's version probe: started once, its result shared by
// every caller.
type probe struct {
	done    chan struct{} // closed when version and err are set
	version string
	err     error
}

// Available reports whether rt's Binary exists on the host and is an
// executable file. It looks each time, so a runtime installed while the
// daemon runs becomes available.
func (g *Registry) Available(rt *Runtime) bool {
	if rt == nil || rt.Binary == "" {
		return false
	}
	fi, err := os.Stat(rt.Binary)
	return err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0
}

// Version returns rt's version as printed by its VersionCmd on the host and
// picked out by VersionRegexp, e.g. "3.11.2". It is UnknownVersion if rt has
// no VersionCmd or its VersionCmd[0] does not exist; the error wraps
// ErrUnavailable if rt's Binary is not installed.
//
// The probe runs once per runtime, within 5s, and its result (error
// included) is cached. It runs apart from ctx: a caller whose ctx ends stops
// waiting and gets ctx's error, while the probe finishes for the next
// caller. Version is safe for concurrent use.
func (g *Registry) Version(ctx context.Context, rt *Runtime) (string, error) {
	if rt == nil {
		return "", fmt.Errorf("version: %w: nil runtime", ErrUnavailable)
	}
	if !g.Available(rt) {
		return "", fmt.Errorf("version of %s: %w: %s", rt.Name, ErrUnavailable, rt.Binary)
	}
	g.vmu.Lock()
	p, ok := g.versions[rt]
	if !ok {
		p = &probe{done: make(chan struct{})}
		g.versions[rt] = p
		pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), g.probeTimeout)
		go func() {
			defer cancel()
			defer close(p.done)
			p.version, p.err = probeVersion(pctx, rt)
		}()
	}
	g.vmu.Unlock()

	select {
	case <-p.done: // a finished probe wins over an ended ctx
		return p.version, p.err
	default:
	}
	select {
	case <-p.done:
		return p.version, p.err
	case <-ctx.Done():
		return "", fmt.Errorf("version of %s: %w", rt.Name, context.Cause(ctx))
	}
}

// probeVersion runs rt.VersionCmd, a trusted host binary, directly (no
// shell) and extracts the version from its combined output.
func probeVersion(ctx context.Context, rt *Runtime) (string, error) {
	if len(rt.VersionCmd) == 0 {
		return UnknownVersion, nil
	}
	re, err := regexp.Compile(rt.VersionRegexp)
	if err != nil {
		return "", fmt.Errorf("version of %s: %w", rt.Name, err)
	}
	var out capWriter
	cmd := exec.CommandContext(ctx, rt.VersionCmd[0], rt.VersionCmd[1:]...)
	// A fixed environment: untranslated messages, and nothing of the
	// daemon's environment reaching the probe.
	cmd.Env = []string{"LC_ALL=C", "PATH=/usr/bin:/bin"}
	cmd.Stdout, cmd.Stderr = &out, &out
	// CommandContext kills the probe when ctx ends; WaitDelay stops Wait
	// from waiting on a grandchild that still holds the output pipe.
	cmd.WaitDelay = time.Second
	if err := cmd.Run(); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return UnknownVersion, nil
		}
		if ctxErr := ctx.Err(); ctxErr != nil {
			err = fmt.Errorf("%w (%w)", ctxErr, err)
		}
		return "", fmt.Errorf("version of %s: run %s: %w: %q", rt.Name, rt.VersionCmd[0], err, firstLine(out.String()))
	}
	return extractVersion(rt.Name, re, out.String())
}

// extractVersion picks the version out of a probe's output: re's first group
// if it has one, else its whole match; the first line if re is empty.
func extractVersion(name string, re *regexp.Regexp, text string) (string, error) {
	if re.String() == "" {
		if v := firstLine(text); v != "" {
			return v, nil
		}
		return "", fmt.Errorf("version of %s: the probe printed nothing", name)
	}
	m := re.FindStringSubmatch(text)
	if m == nil {
		return "", fmt.Errorf("version of %s: the probe printed %q, which does not match %q", name, firstLine(text), re)
	}
	if len(m) > 1 {
		return m[1], nil
	}
	return m[0], nil
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	line, _, _ := strings.Cut(s, "\n")
	return strings.TrimSpace(line)
}

// capWriter keeps the first maxProbeOutput bytes written to it and drops
// the rest, without failing the writer.
type capWriter struct{ buf bytes.Buffer }

func (w *capWriter) Write(p []byte) (int, error) {
	if room := maxProbeOutput - w.buf.Len(); room > 0 {
		w.buf.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

func (w *capWriter) String() string { return w.buf.String() }
