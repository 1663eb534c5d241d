package isolate

import (
	"context"
	"os"
	"testing"

	"github.com/sandboxd/sandboxd/internal/limits"
	"github.com/sandboxd/sandboxd/internal/run"
)

func TestSmoke(t *testing.T) {
	r, err := New(Config{})
	if err != nil {
		t.Skip("requires root: ", err)
	}
	ws, err := r.NewWorkspace(64 * limits.MiB)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	if err := ws.WriteFile(run.File{Name: "main.py", Content: must(os.ReadFile("/tmp/cg.py"))}); err != nil {
		t.Fatal(err)
	}
	res, err := r.Run(context.Background(), ws, Exec{Argv: []string{"/usr/bin/python3", "main.py"}, Env: []string{"PATH=/usr/bin:/bin"}, Limits: limits.Defaults()})
	t.Logf("res=%+v err=%v stdout=%q stderr=%q", res, err, res.Stdout, res.Stderr)
	files, tr, err := ws.Collect(r.cfg.Collect)
	t.Logf("files=%+v %v %v", files, tr, err)
}

func must(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}
