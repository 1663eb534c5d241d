package isolate

import (
	"testing"

	"github.com/sandboxd/sandboxd/internal/limits"
	"github.com/sandboxd/sandboxd/internal/run"
	"github.com/sandboxd/sandboxd/internal/workspace"
)

// TestCollect: produced and changed files come back; unchanged inputs,
// symlinks (to host files or out of the workspace), fifos and the reserved
// directory do not; files past the caps are listed without content.
func TestCollect(t *testing.T) {
	r := requireRunner(t)
	ws, err := r.NewWorkspace(16 * limits.MiB)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	code := `import os
open('out.txt','w').write('result')
os.makedirs('sub/deeper')
open('sub/deeper/data.csv','w').write('a,b\n1,2\n')
open('changed.txt','a').write(' and more')
os.symlink('/etc/passwd', 'passwd-link')
os.symlink('/', 'root-link')
os.symlink('../../..', 'sub/up-link')
os.mkfifo('fifo')
open('big.bin','wb').write(b'x' * (2<<20))
os.makedirs('.sandboxd', exist_ok=True)
`
	for _, f := range []run.File{
		{Name: "main.py", Content: []byte(code)},
		{Name: "unchanged.txt", Content: []byte("same")},
		{Name: "changed.txt", Content: []byte("before")},
	} {
		if err := ws.WriteFile(f); err != nil {
			t.Fatal(err)
		}
	}
	res, err := r.Run(t.Context(), ws, Exec{Argv: []string{"/usr/bin/python3", "main.py"}, Limits: limits.Defaults()})
	if err != nil || res.Status != run.StatusOK {
		t.Fatalf("run: %v %s %q", err, res.Status, res.Stderr)
	}
	files, truncated, err := ws.Collect(workspace.CollectLimits{MaxFiles: 10, MaxFileSize: 1 << 20, MaxTotal: 4 << 20})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]run.OutputFile{}
	for _, f := range files {
		got[f.Name] = f
	}
	want := map[string]string{
		"out.txt":             "result",
		"sub/deeper/data.csv": "a,b\n1,2\n",
		"changed.txt":         "before and more",
	}
	for name, content := range want {
		if f, ok := got[name]; !ok || string(f.Content) != content {
			t.Errorf("file %s: got %q (present %v), want %q", name, f.Content, ok, content)
		}
	}
	if f, ok := got["big.bin"]; !ok || f.Content != nil || f.Size != 2<<20 || !truncated {
		t.Errorf("big.bin: present %v content %d bytes size %d truncated %v; want listed without content", ok, len(f.Content), f.Size, truncated)
	}
	for _, name := range []string{"main.py", "unchanged.txt", "passwd-link", "root-link", "sub/up-link", "fifo"} {
		if _, ok := got[name]; ok {
			t.Errorf("%s must not be collected", name)
		}
	}
	if len(got) != 4 {
		t.Errorf("collected %d files, want 4: %v", len(got), files)
	}
}
