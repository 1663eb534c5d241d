package wasm

import (
	"bytes"
	"context"
	"io"
	"strings"
)

// guestStdin returns the reader the guest's stdin reads from. A reader that
// never blocks (bytes, strings) is used as is. Any other (a terminal, a
// network stream) is read through a pipe that is closed when the run ends:
// a guest blocked reading stdin is inside a host function, where
// WithCloseOnContextDone cannot reach it, so the read itself must return.
func guestStdin(ctx context.Context, in io.Reader) (io.Reader, func()) {
	switch in.(type) {
	case nil:
		return bytes.NewReader(nil), func() {}
	case *bytes.Reader, *strings.Reader, *bytes.Buffer:
		return in, func() {}
	}
	pr, pw := io.Pipe()
	go func() {
		// Ends when in does, or at the first write after the run ended. A
		// caller's reader that never returns keeps this goroutine, as
		// io.Copy into a process's stdin pipe would.
		_, err := io.Copy(pw, in)
		pw.CloseWithError(err)
	}()
	stop := context.AfterFunc(ctx, func() { pr.CloseWithError(io.EOF) })
	return &ctxReader{ctx: ctx, r: pr}, func() {
		stop()
		pr.CloseWithError(io.EOF)
	}
}

// ctxReader is the guest's end of a streamed stdin. A read that the end of
// the run interrupted ends the guest there (see exitGuest), rather than
// handing it an EOF it would act on.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c *ctxReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if err != nil && c.ctx.Err() != nil {
		exitGuest(c.ctx)
	}
	return n, err
}
