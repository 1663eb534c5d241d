package executor

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/sandboxd/sandboxd/internal/limits"
	"github.com/sandboxd/sandboxd/internal/run"
	"github.com/sandboxd/sandboxd/internal/testenv"
)

func requireExecutors(t *testing.T) (cold, warm *Executor) {
	t.Helper()
	return requireExecutorsZygote(t, false)
}

// requireExecutorsZygote is requireExecutors with the warm pool's runs
// forked by a fork server when zygote is set.
func requireExecutorsZygote(t *testing.T, zygote bool) (cold, warm *Executor) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("requires root for the process backend")
	}
	cold, err := New(Options{})
	if err != nil {
		testenv.MissingSandbox(t, err)
	}
	t.Cleanup(func() { cold.Close() })
	warm, err = New(Options{Warm: map[string]int{"python": 1}, WarmZygote: zygote})
	if err != nil {
		t.Fatal(err)
	}
	if err := warm.StartPools(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := warm.Close(); err != nil {
			t.Errorf("close pools: %v", err)
		}
	})
	return cold, warm
}

// waitReady waits until the python pool has a sandbox ready.
func waitReady(t *testing.T, x *Executor) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for x.PoolStats()["python"].Ready < 1 {
		if time.Now().After(deadline) {
			t.Fatalf("the warm pool never filled: %+v", x.PoolStats())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestWarmRunsAreColdRuns: the same specs, run cold and warm, give the same
// status, exit code, stdout, stderr and files — limits, attacks and
// Python's own conventions (argv, __main__, tracebacks, sys.path, exit
// handlers, files flushed at exit) included; warm with an interpreter
// waiting in each sandbox, and forked by the fork server.
func TestWarmRunsAreColdRuns(t *testing.T) {
	for _, zygote := range []bool{false, true} {
		name := "interpreter per sandbox"
		if zygote {
			name = "fork server"
		}
		t.Run(name, func(t *testing.T) { testWarmRunsAreColdRuns(t, zygote) })
	}
}

func testWarmRunsAreColdRuns(t *testing.T, zygote bool) {
	cold, warm := requireExecutorsZygote(t, zygote)
	py := func(code string) []run.File { return []run.File{{Name: "main.py", Content: []byte(code)}} }
	cases := []struct {
		name string
		spec run.Spec
	}{
		{"hello", run.Spec{Files: py("print('hello')")}},
		{"argv and main", run.Spec{Files: py("import sys; print(sys.argv, __name__, __file__, sys.path[0])"), Args: []string{"a b", "--x"}}},
		{"stdin", run.Spec{Files: py("import sys; print(sys.stdin.read()[::-1])"), Stdin: []byte("abc")}},
		{"env", run.Spec{Files: py("import os; print(os.environ['GREETING'])"), Env: map[string]string{"GREETING": "hi"}}},
		{"exit code", run.Spec{Files: py("import sys; sys.exit(3)")}},
		{"exit message", run.Spec{Files: py("import sys; sys.exit('bye')")}},
		{"traceback", run.Spec{Files: py("def f():\n    1/0\nf()")}},
		{"syntax error", run.Spec{Files: py("def (")}},
		{"sigsegv", run.Spec{Files: py("import ctypes; ctypes.string_at(0)")}},
		{"timeout", run.Spec{Files: py("while True: pass"), Limits: limits.Limits{Timeout: limits.Duration(500 * time.Millisecond)}}},
		{"cpu limit", run.Spec{Files: py("while True: pass"), Limits: limits.Limits{CPUTime: limits.Duration(300 * time.Millisecond)}}},
		{"memory limit", run.Spec{Files: py("x=[]\nwhile True: x.append(bytearray(16<<20))"), Limits: limits.Limits{Memory: 64 * limits.MiB}}},
		{"output limit", run.Spec{Files: py("import sys\nwhile True: sys.stdout.write('x'*65536)"), Limits: limits.Limits{Output: 100 * limits.KiB}}},
		{"pids limit", run.Spec{Files: py("import os, time\nn = 0\ntry:\n    for _ in range(100):\n        if os.fork() == 0:\n            time.sleep(5); os._exit(0)\n        n += 1\nexcept OSError as e:\n    print('held', n < 16, type(e).__name__)"), Limits: limits.Limits{Pids: 16, Timeout: limits.Duration(3 * time.Second)}}},
		{"host secret", run.Spec{Files: py("try:\n    open('/etc/shadow').read(); print('ESCAPED')\nexcept OSError as e: print(type(e).__name__)")}},
		{"network", run.Spec{Files: py("import socket\ntry:\n    socket.create_connection(('1.1.1.1', 53), timeout=1); print('ESCAPED')\nexcept OSError as e: print(type(e).__name__)")}},
		{"file out", run.Spec{Files: py("open('out.txt','w').write('made')")}},
		{"file flushed at exit", run.Spec{Files: py("f = open('out.txt', 'w')\nf.write('unclosed')")}},
		{"exit handlers", run.Spec{Files: py("import atexit, sys\natexit.register(lambda: print('bye', file=sys.stderr))\nclass C:\n    def __del__(self): print('del')\nc = C()\nprint('main')")}},
		{"thread joined at exit", run.Spec{Files: py("import threading, time\ndef w():\n    time.sleep(0.2); print('thread done')\nthreading.Thread(target=w).start()\nprint('main done')")}},
		{"keyboard interrupt", run.Spec{Files: py("raise KeyboardInterrupt")}},
		{"unraisable at exit", run.Spec{Files: py("import sys\nsys.stdout.close()\nprint('x', file=sys.stderr)")}},
		// How a run's process ends: its modules' objects are finalized
		// as python3's shutdown finalizes them.
		{"module finalizers at exit", run.Spec{Files: []run.File{
			{Name: "main.py", Content: []byte("import helper\nclass C:\n    def __del__(self): print('main del')\nc = C()\nprint('main')")},
			{Name: "helper.py", Content: []byte("class H:\n    def __del__(self): print('helper del')\nh = H()\nf = open('h.txt', 'w')\nf.write('helper unclosed')")},
		}}},
		{"cycle finalized at exit", run.Spec{Files: py("class C:\n    def __del__(self): print('cycle del')\na = C()\na.me = a\nprint('end')")}},
		{"cycle finalized with the collector off", run.Spec{Files: py("import gc\ngc.disable()\nclass C:\n    def __del__(self): print('cycle del')\na = C()\na.me = a\nprint('end')")}},
		{"generator closed at exit", run.Spec{Files: py("def g():\n    try:\n        yield 1\n    finally:\n        print('finally')\nx = g()\nnext(x)\nprint('end')")}},
		{"frame finalized before exit handlers", run.Spec{Files: py("import atexit, sys\natexit.register(lambda: print('atexit'))\nclass C:\n    def __del__(self): print('del')\ndef f():\n    c = C()\n    sys.exit(4)\nf()")}},
		{"stdout replaced by a file", run.Spec{Files: py("import sys\nsys.stdout = open('o.txt', 'w')\nprint('to the file')")}},
		{"exit code wraps", run.Spec{Files: py("import sys; sys.exit(263)")}},
		{"exit code negative", run.Spec{Files: py("import sys; sys.exit(-1)")}},
		{"exit with an object", run.Spec{Files: py("import sys; sys.exit(['a', 1])")}},
		{"finalizer held by builtins", run.Spec{Files: py("import builtins\nclass C:\n    def __del__(self): print('builtins del')\nbuiltins.keep = C()\nprint('end')")}},
		{"finalizer held by a preloaded module", run.Spec{Files: py("import json\nclass C:\n    def __del__(self): print('json del')\njson.keep = C()\nf = open('j.txt', 'w')\njson.f = f\ndel f\njson.f.write('held')\nprint('end')")}},
		{"finalizer frozen by the program", run.Spec{Files: py("import gc, json\nclass C:\n    def __del__(self): print('json del')\njson.keep = C()\ngc.freeze()\nprint('end')")}},
		{"many modules imported", run.Spec{Files: py("import asyncio, decimal, email.message, http.client, xml.dom.minidom, sqlite3, unittest, logging\nlogging.basicConfig()\nlogging.getLogger().warning('logged')\ndb = sqlite3.connect(':memory:')\nclass C:\n    def __del__(self): print('del')\nc = C()\nprint('end')")}},
		{"stdout flush fails at exit", run.Spec{Files: py("import sys\nsys.stdout = open('/dev/full', 'w')\nprint('lost')")}},
		{"daemon thread at exit", run.Spec{Files: py("import threading, time\nthreading.Thread(target=time.sleep, args=(30,), daemon=True).start()\nprint('main')")}},
		{"signal handler at exit", run.Spec{Files: py("import signal, atexit, os\nsignal.signal(signal.SIGTERM, lambda *a: print('handled'))\natexit.register(lambda: os.kill(os.getpid(), signal.SIGTERM))\nprint('end')")}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
			defer cancel()
			want, err := run.Do(ctx, cold, &c.spec, run.Stream{})
			if err != nil {
				t.Fatal(err)
			}
			waitReady(t, warm)
			got, err := run.Do(ctx, warm, &c.spec, run.Stream{})
			if err != nil {
				t.Fatal(err)
			}
			if !got.Isolation.Warm || want.Isolation.Warm {
				t.Fatalf("warm flags: warm run %v, cold run %v", got.Isolation.Warm, want.Isolation.Warm)
			}
			if got.Status != want.Status || got.ExitCode != want.ExitCode || got.Signal != want.Signal {
				t.Errorf("warm %s/%d/%d, cold %s/%d/%d", got.Status, got.ExitCode, got.Signal, want.Status, want.ExitCode, want.Signal)
			}
			if string(got.Stdout) != string(want.Stdout) || string(got.Stderr) != string(want.Stderr) {
				t.Errorf("output differs:\nwarm stdout %q\ncold stdout %q\nwarm stderr %q\ncold stderr %q", got.Stdout, want.Stdout, got.Stderr, want.Stderr)
			}
			if len(got.Files) != len(want.Files) {
				t.Errorf("files: warm %v, cold %v", got.Files, want.Files)
			}
			for i := range min(len(got.Files), len(want.Files)) {
				if g, w := got.Files[i], want.Files[i]; g.Name != w.Name || string(g.Content) != string(w.Content) {
					t.Errorf("file %d: warm %s %q, cold %s %q", i, g.Name, g.Content, w.Name, w.Content)
				}
			}
			if got.Isolation.Zygote != zygote {
				t.Errorf("isolation.zygote %v, want %v", got.Isolation.Zygote, zygote)
			}
		})
	}
}

// TestWarmRunsSeeNothingOfEachOther: two consecutive warm runs share no
// file, variable, environment or process.
func TestWarmRunsSeeNothingOfEachOther(t *testing.T) {
	_, warm := requireExecutors(t)
	first := run.Spec{
		Files: []run.File{{Name: "main.py", Content: []byte(`import os, subprocess, builtins
open('/tmp/secret', 'w').write('1'); open('left.txt', 'w').write('1')
os.environ['LEFT'] = '1'; builtins.LEFT = 1
subprocess.Popen(['sleep', '30'], start_new_session=True)
print('planted')`)}},
		Env: map[string]string{"FIRST": "1"},
	}
	second := run.Spec{Files: []run.File{{Name: "main.py", Content: []byte(`import os, builtins
procs = sorted(int(p) for p in os.listdir('/proc') if p.isdigit())
print(os.path.exists('/tmp/secret'), os.path.exists('left.txt'), 'LEFT' in os.environ, 'FIRST' in os.environ,
      hasattr(builtins, 'LEFT'), procs == [1, os.getpid()])`)}}}
	waitReady(t, warm)
	res, err := run.Do(t.Context(), warm, &first, run.Stream{})
	if err != nil || string(res.Stdout) != "planted\n" || !res.Isolation.Warm {
		t.Fatalf("first run: %v %q warm %v", err, res.Stdout, res.Isolation.Warm)
	}
	waitReady(t, warm)
	res, err = run.Do(t.Context(), warm, &second, run.Stream{})
	if err != nil || !res.Isolation.Warm {
		t.Fatal(err)
	}
	if got := string(res.Stdout); got != "False False False False False True\n" {
		t.Errorf("the second warm run saw the first: %s", got)
	}
}
