package tests

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The per-user kernel quotas: an attacker run takes all it can of one
// resource the kernel counts per user, and holds it; while it holds, host
// root (this test process's python3) and a second sandbox must still get
// that resource. Each run spends its own host ids' quotas (the isolate
// package's id slots), so neither is touched.

// quotaPrelude is shared by the attacker and the bystander probes; it
// builds on attackPrelude's libc.
const quotaPrelude = attackPrelude + `import fcntl, signal
IN_ACCESS = 1
F_SETPIPE_SZ = 1031
def err():
    return en(ctypes.get_errno())
class MqAttr(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_long), ("maxmsg", ctypes.c_long), ("msgsize", ctypes.c_long), ("curmsgs", ctypes.c_long), ("pad", ctypes.c_long * 4)]
libc.mq_open.argtypes = [ctypes.c_char_p, ctypes.c_int, ctypes.c_int, ctypes.POINTER(MqAttr)]
libc.sigqueue.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_void_p]
SIG = signal.SIGRTMIN
signal.pthread_sigmask(signal.SIG_BLOCK, [SIG])
def mq(name):
    a = MqAttr(0, 10, 8192, 0)
    return libc.mq_open(name.encode(), os.O_CREAT | os.O_RDWR, 0o600, ctypes.byref(a))
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
libc.mlock.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
def lock_mib():
    p = libc.mmap(None, 1 << 20, 3, 0x22, -1, 0)  # PROT_READ|WRITE, MAP_PRIVATE|ANONYMOUS
    return p is not None and p != ctypes.c_void_p(-1).value and libc.mlock(p, 1 << 20) == 0
`

// quotaAttacks take one resource each until the kernel refuses, print
// HOLDING with what they got, and hold it until stdin closes.
var quotaAttacks = map[string]string{
	"inotify_instances": `n = 0
while libc.inotify_init1(0) >= 0:
    n += 1
print("HOLDING", n, "instances,", err(), flush=True)`,
	"inotify_watches": `fd = libc.inotify_init1(0)
n, e = 0, ""
for root, dirs, files in os.walk("/usr"):
    for f in dirs + files:
        if libc.inotify_add_watch(fd, os.path.join(root, f).encode(), IN_ACCESS) < 0:
            e = err()
            if e == "ENOSPC":
                break
        else:
            n += 1
    if e == "ENOSPC":
        break
print("HOLDING", n, "watches,", e, flush=True)`,
	"sigqueue": `n = 0
while libc.sigqueue(os.getpid(), SIG, None) == 0:
    n += 1
print("HOLDING", n, "queued signals,", err(), flush=True)`,
	"mqueue": `n = 0
while mq("/attack%d" % n) >= 0:
    n += 1
print("HOLDING", n, "message queues,", err(), flush=True)`,
	"mlock": `n = 0
while lock_mib():
    n += 1
print("HOLDING", n, "MiB locked,", err(), flush=True)`,
	"namespaces": `n = 0
for flag in (0x10000000, 0x00020000, 0x20000000, 0x40000000, 0x08000000, 0x04000000, 0x02000000, 0x00000080):
    pid = os.fork()
    if pid == 0:
        os._exit(0 if libc.unshare(flag) == 0 else 1)
    _, st = os.waitpid(pid, 0)
    n += st == 0
print("HOLDING", n, "namespaces", flush=True)`,
	"pipe_pages": `n = 0
while True:
    r, w = os.pipe()
    try:
        fcntl.fcntl(w, F_SETPIPE_SZ, 1 << 20)
    except OSError as e:
        print("HOLDING", n, "MiB of pipe buffers,", errno.errorcode[e.errno], flush=True)
        break
    n += 1`,
}

// quotaProbe tries each resource once and prints OK or FAIL per resource.
const quotaProbe = `def probe(name, ok):
    print(("OK " if ok else "FAIL ") + name + ("" if ok else ": " + err()), flush=True)
fd = libc.inotify_init1(0)
probe("inotify_instances", fd >= 0)
probe("inotify_watches", fd >= 0 and libc.inotify_add_watch(fd, b"/usr/bin", IN_ACCESS) >= 0)
probe("sigqueue", libc.sigqueue(os.getpid(), SIG, None) == 0)
name = "/probe%d" % os.getpid()
probe("mqueue", mq(name) >= 0)
libc.mq_unlink(name.encode())
r, w = os.pipe()
try:
    fcntl.fcntl(w, F_SETPIPE_SZ, 1 << 20)
    probe("pipe_pages", True)
except OSError as e:
    ctypes.set_errno(e.errno)
    probe("pipe_pages", False)
probe("mlock", lock_mib())
pid = os.fork()
if pid == 0:
    os._exit(0 if libc.unshare(0x10000000) == 0 else 1)
probe("namespaces", os.waitpid(pid, 0)[1] == 0)
`

// quotaBounds are the attacks a run's own rlimits stop (the isolate
// package's perUserRlimits): the most the attacker may hold, and the
// error that must stop it. The others are bounded by the run's host uid
// and its namespace's user.max_* limits.
var quotaBounds = map[string]struct {
	max   int
	errno string
}{
	// RLIMIT_SIGPENDING 1024.
	"sigqueue": {1024, "EAGAIN"},
	// RLIMIT_MSGQUEUE 819200 bytes: 10 queues of 10 × 8 KiB take more.
	"mqueue": {9, "EMFILE"},
	// RLIMIT_MEMLOCK 8 MiB.
	"mlock": {8, "ENOMEM"},
}

func TestAttackQuotas(t *testing.T) {
	requireSandbox(t)
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, attack := range quotaAttacks {
		t.Run(name, func(t *testing.T) {
			held := startQuotaAttack(t, filepath.Join(dir, name+".py"), attack)
			t.Logf("attacker: %s", held)
			if b, ok := quotaBounds[name]; ok {
				var n int
				if _, err := fmt.Sscanf(held, "HOLDING %d", &n); err != nil || n > b.max || !strings.HasSuffix(held, " "+b.errno) {
					t.Errorf("the attacker got past its run's limit of %d, or was stopped by something else than %s: %s", b.max, b.errno, held)
				}
			}
			hostOut, err := exec.Command("/usr/bin/python3", "-c", quotaPrelude+quotaProbe).CombinedOutput()
			if err != nil {
				t.Fatalf("host probe: %v\n%s", err, hostOut)
			}
			wantProbeOK(t, "host root", string(hostOut), name)
			if name == "namespaces" {
				// A sandbox may make none, by design (seccomp and
				// user.max_*_namespaces=0): host root must still.
				if !strings.HasPrefix(held, "HOLDING 0 ") {
					t.Errorf("the attacker made namespaces: %s", held)
				}
				return
			}
			r, _ := runPy(t, quotaPrelude+quotaProbe)
			wantProbeOK(t, "a second sandbox", string(r.Stdout), name)
		})
	}
}

// startQuotaAttack runs attack in a sandbox until it prints HOLDING, and
// returns that line; the run is ended by closing its stdin at the test's
// end.
func startQuotaAttack(t *testing.T, file, attack string) string {
	t.Helper()
	code := quotaPrelude + attack + "\nsys.stdin.read()\nprint('DONE', flush=True)\n"
	if err := os.WriteFile(file, []byte(code), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(sandboxctl, "run", "--timeout", "90s", file)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr syncBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stdin.Close()
		rest, _ := io.ReadAll(stdout)
		if err := cmd.Wait(); err != nil || !strings.Contains(string(rest), "DONE") {
			t.Errorf("the attacker did not hold to the end: %v; stdout %q; stderr:\n%s", err, rest, stderr.String())
		}
	})
	lines := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(stdout).ReadString('\n')
		lines <- line
	}()
	select {
	case line := <-lines:
		if !strings.HasPrefix(line, "HOLDING") {
			t.Fatalf("attacker: %q; stderr:\n%s", line, stderr.String())
		}
		return strings.TrimSpace(line)
	case <-time.After(60 * time.Second):
		t.Fatalf("the attacker did not take its resource within 60s; stderr:\n%s", stderr.String())
	}
	return ""
}

// wantProbeOK fails unless the probe's line for resource says OK.
func wantProbeOK(t *testing.T, who, out, resource string) {
	t.Helper()
	for _, line := range strings.Split(out, "\n") {
		if strings.HasSuffix(line, " "+resource) || strings.Contains(line, " "+resource+":") {
			if !strings.HasPrefix(line, "OK ") {
				t.Errorf("%s lost %s while another run held it: %s", who, resource, line)
			}
			return
		}
	}
	t.Errorf("%s's probe printed nothing for %s:\n%s", who, resource, out)
}
