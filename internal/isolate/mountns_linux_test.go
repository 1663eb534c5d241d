package isolate

import (
	"os"
	"strings"
	"testing"

	"github.com/sandboxd/sandboxd/internal/limits"
	"github.com/sandboxd/sandboxd/internal/run"
	"github.com/sandboxd/sandboxd/internal/testenv"
)

// TestRunMountsPrivate: a workspace's mounts are in the runs' mount
// namespace, not in the process's own (which every new sandbox copies),
// a run in it still finds its files and leaves its output there, and its
// Close removes them from every namespace of the process.
func TestRunMountsPrivate(t *testing.T) {
	r := requireRunner(t)
	if r.mounts == nil {
		t.Fatal("the runner has no mount namespace for its runs' mounts")
	}
	own := func() string {
		b, err := os.ReadFile("/proc/self/mountinfo")
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	ws, err := r.NewWorkspace(limits.MiB)
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	defer func() {
		if !closed {
			ws.Close()
		}
	}()
	mark := "/" + ws.ID() + "/"
	if strings.Contains(own(), mark) {
		t.Errorf("the workspace's mounts are in the process's own mount namespace:\n%s", own())
	}
	if all := testenv.Mountinfo("/proc/self/task/*"); strings.Count(all, mark+"work ") != 1 || strings.Count(all, mark+genDir+" ") != 1 {
		t.Fatalf("the workspace and its generated files are not mounted once each in the runs' namespace:\n%s", all)
	}

	if err := ws.WriteFile(run.File{Name: "in.txt", Content: []byte("input")}); err != nil {
		t.Fatal(err)
	}
	res, err := r.Run(t.Context(), ws, Exec{
		Argv:   []string{"/usr/bin/python3", "-c", "print(open('in.txt').read()); open('out.txt', 'w').write('output')"},
		Limits: limits.Defaults(),
	})
	if err != nil || res.ExitCode != 0 || string(res.Stdout) != "input\n" {
		t.Fatalf("run: %v, %+v", err, res)
	}
	files, _, err := ws.Collect(r.cfg.Collect)
	if err != nil || len(files) != 1 || files[0].Name != "out.txt" || string(files[0].Content) != "output" {
		t.Errorf("collected %+v (%v), want out.txt", files, err)
	}

	if err := ws.Close(); err != nil {
		t.Fatal(err)
	}
	closed = true
	if all := testenv.Mountinfo("/proc/self/task/*"); strings.Contains(all, mark) {
		t.Errorf("the closed workspace is still mounted:\n%s", all)
	}
}
