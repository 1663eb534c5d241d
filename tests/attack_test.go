package tests

import (
	"bufio"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// Each attack is a Python program that tries to get out and prints one
// verdict line per attempt:
//
//	BLOCKED name: how it failed        the sandbox held
//	WORKS   name: ...                  a positive control that must work
//	ESCAPED name: what happened        the attempt succeeded: a hole
//	WRONG   name: ...                  it failed, but not as the design says
//	BROKEN  name: ...                  a positive control failed
//
// The test fails on anything but BLOCKED and WORKS, and when a program did
// not run to its end (a crash would hide the attempts after it).
const attackPrelude = `import ctypes, errno, os, socket, sys, time
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long

def _arg(a):
    return ctypes.c_long(a) if isinstance(a, int) else a

def sc(nr, *args):
    ctypes.set_errno(0)
    r = libc.syscall(ctypes.c_long(nr), *[_arg(a) for a in args])
    return r, ctypes.get_errno()

def cfn(fn, *args):
    ctypes.set_errno(0)
    r = fn(*[_arg(a) for a in args])
    return r, ctypes.get_errno()

def en(e):
    return errno.errorcode.get(e, str(e))

def verdict(kind, name, detail=""):
    detail = " | ".join(str(detail).splitlines())
    print("%s %s: %s" % (kind, name, detail), flush=True)

def blocked(name, detail=""): verdict("BLOCKED", name, detail)
def escaped(name, detail=""): verdict("ESCAPED", name, detail)
def wrong(name, detail=""): verdict("WRONG", name, detail)
def works(name, detail=""): verdict("WORKS", name, detail)
def broken(name, detail=""): verdict("BROKEN", name, detail)

def expect_fail(name, res, errnos=None):
    """res is (return value, errno) of a C call; -1 is failure."""
    r, e = res
    if r != -1:
        escaped(name, "returned %d" % r)
    elif errnos and e not in errnos:
        wrong(name, "failed with %s, want %s" % (en(e), "/".join(en(x) for x in errnos)))
    else:
        blocked(name, en(e))

def must_fail(name, fn, errnos=None):
    """fn is Python code that must raise OSError."""
    try:
        v = fn()
    except OSError as ex:
        if errnos and ex.errno not in errnos:
            wrong(name, "failed with %r, want %s" % (ex, "/".join(en(x) for x in errnos)))
        else:
            blocked(name, en(ex.errno) if ex.errno else repr(ex))
    except Exception as ex:
        broken(name, "unexpected %r" % ex)
    else:
        escaped(name, "succeeded: %r" % (v,))

def must_work(name, fn):
    try:
        v = fn()
    except Exception as ex:
        broken(name, repr(ex))
    else:
        works(name, repr(v)[:80])

def read(path):
    with open(path, "rb") as f:
        return f.read()

`

// runAttack runs an attack program and checks its verdicts.
func runAttack(t *testing.T, code string, args ...string) *result {
	t.Helper()
	r, exit := runJSON(t, runSpec{code: attackPrelude + code, args: args, timeout: 60 * time.Second, flags: []string{"--timeout", "20s"}})
	checkVerdicts(t, r, exit)
	return r
}

func checkVerdicts(t *testing.T, r *result, exit int) {
	t.Helper()
	if r.Status != "ok" || exit != 0 {
		t.Errorf("the attack program did not run to its end (status %s, exit %d): the attempts after the failure were not made\n%s", r.Status, exit, r)
	}
	held := 0
	sc := bufio.NewScanner(strings.NewReader(string(r.Stdout)))
	for sc.Scan() {
		line := sc.Text()
		kind, rest, _ := strings.Cut(line, " ")
		switch kind {
		case "BLOCKED":
			held++
			t.Log(line)
		case "WORKS":
			t.Log(line)
		case "ESCAPED":
			t.Errorf("sandbox hole: %s", rest)
		case "WRONG":
			t.Errorf("blocked, but not as designed: %s", rest)
		case "BROKEN":
			t.Errorf("a positive control failed (the sandbox broke something it must allow): %s", rest)
		default:
			t.Errorf("unexpected output line from the attack program: %q", line)
		}
	}
	if held == 0 {
		t.Errorf("the attack program reported no blocked attempt; stdout:\n%s\nstderr:\n%s", r.Stdout, r.Stderr)
	}
	if len(r.Stderr) > 0 {
		t.Logf("stderr:\n%s", r.Stderr)
	}
}

func TestAttackHostFilesHidden(t *testing.T) {
	requireSandbox(t)
	runAttack(t, `
for p in ["/etc/shadow", "/etc/gshadow", "/etc/sudoers", "/root/.bashrc", "/root/.ssh/authorized_keys",
          "/etc/ssh/ssh_host_ed25519_key", "/var/log/syslog", "/run/sandboxd/runs", "/home"]:
    try:
        if os.path.isdir(p):
            v = os.listdir(p)
        else:
            v = read(p)[:40]
    except (FileNotFoundError, NotADirectoryError):
        blocked("read " + p, "absent")
    except PermissionError:
        blocked("read " + p, "EACCES")
    else:
        escaped("read " + p, repr(v))

# Absent, not merely unreadable: the host's home directories, state and
# sockets are not in the sandbox at all.
for d in ["/root", "/home", "/var", "/run", "/srv", "/opt", "/mnt", "/media", "/boot", "/sys"]:
    if os.path.lexists(d):
        try:
            v = os.listdir(d)
        except OSError as ex:
            v = repr(ex)
        escaped("absent " + d, "exists: %r" % (v,))
    else:
        blocked("absent " + d, "not there")

allowed_root = {"bin", "sbin", "lib", "lib32", "lib64", "libx32", "usr", "etc", "proc", "dev", "tmp", "workspace"}
extra = sorted(set(os.listdir("/")) - allowed_root)
(escaped if extra else blocked)("root directory allowlist", "extra entries %r" % extra if extra else "only " + " ".join(sorted(os.listdir("/"))))

# Private keys under the bound /etc/ssl stay unreadable to the sandbox user.
try:
    v = os.listdir("/etc/ssl/private")
except (FileNotFoundError, PermissionError) as ex:
    blocked("list /etc/ssl/private", en(ex.errno))
else:
    (escaped if v else blocked)("list /etc/ssl/private", repr(v))
`)
}

func TestAttackEtcIsAllowlisted(t *testing.T) {
	requireSandbox(t)
	runAttack(t, `
allowed = {"passwd", "group", "hosts", "hostname", "nsswitch.conf", "resolv.conf", "alternatives",
           "ld.so.cache", "ld.so.conf", "ld.so.conf.d", "localtime", "ssl", "ca-certificates",
           "mime.types", "python3", "python3.11", "python3.12", "python3.13", "matplotlibrc", "fonts"}
entries = set(os.listdir("/etc"))
extra = sorted(entries - allowed)
if extra:
    escaped("/etc allowlist", "host entries visible: %r" % extra)
else:
    blocked("/etc allowlist", "%d entries, all allowed" % len(entries))
for name in ["shadow", "gshadow", "ssh", "sudoers", "sudoers.d", "machine-id", "crontab", "docker", "kubernetes", "environment"]:
    (escaped if os.path.lexists("/etc/" + name) else blocked)("/etc/" + name, "present" if os.path.lexists("/etc/" + name) else "absent")
users = [l.split(":")[0] for l in read("/etc/passwd").decode().splitlines() if l]
extra = sorted(set(users) - {"root", "sandbox", "nobody"})
(escaped if extra else blocked)("/etc/passwd has no host accounts", "extra users %r" % extra if extra else repr(users))
`)
}

func TestAttackHostProcessesInvisible(t *testing.T) {
	requireSandbox(t)
	hostInit, _ := os.ReadFile("/proc/1/cmdline")
	runAttack(t, `
self_pid = int(sys.argv[1])
host_init = sys.argv[2]
pids = sorted(int(d) for d in os.listdir("/proc") if d.isdigit())
cmds = {}
for p in pids:
    try:
        cmds[p] = read("/proc/%d/cmdline" % p).replace(b"\0", b" ").decode().strip()
    except OSError as ex:
        cmds[p] = "unreadable: " + en(ex.errno)
if self_pid in pids and self_pid > 100:
    escaped("test process invisible", "the test's pid %d is in /proc" % self_pid)
else:
    blocked("test process invisible", "pid %d not listed" % self_pid)
if len(pids) > 4 or max(pids) > 1000:
    escaped("only the run's processes", "pids %r: %r" % (pids, cmds))
else:
    blocked("only the run's processes", repr(cmds))
init = read("/proc/1/cmdline")
if init == b"sandboxd-init\0":
    blocked("/proc/1 is the sandbox init", repr(init))
elif host_init and init.replace(b"\0", b" ").decode().strip() == host_init:
    escaped("/proc/1 is the sandbox init", "it is the host's init: %r" % init)
else:
    wrong("/proc/1 is the sandbox init", "unexpected cmdline %r" % init)
others = [c for p, c in cmds.items() if p != 1 and p != os.getpid()]
(escaped if others else blocked)("no other process", "%r" % others if others else "none")

# PID 1 runs as the sandbox's root: its memory, fds and binary are out of
# reach (a writable /proc/1/exe would let a run overwrite the host's
# sandboxctl, as in CVE-2019-5736).
must_fail("open /proc/1/exe for writing", lambda: open("/proc/1/exe", "r+b"))
must_fail("read /proc/1/exe", lambda: read("/proc/1/exe")[:4])
must_fail("list /proc/1/root", lambda: os.listdir("/proc/1/root"))
must_fail("list /proc/1/fd", lambda: os.listdir("/proc/1/fd"))
must_fail("read /proc/1/environ", lambda: read("/proc/1/environ"))
must_fail("read /proc/1/mem", lambda: read("/proc/1/mem"))
must_fail("write /proc/self/exe", lambda: open("/proc/self/exe", "r+b"))
must_fail("kill init (SIGKILL)", lambda: os.kill(1, 9))
must_fail("kill init (SIGTERM)", lambda: os.kill(1, 15))
`, strconv.Itoa(os.Getpid()), strings.TrimSpace(strings.ReplaceAll(string(hostInit), "\x00", " ")))
}

func TestAttackNoInheritedFds(t *testing.T) {
	requireSandbox(t)
	runAttack(t, `
fds = sorted(int(f) for f in os.listdir("/proc/self/fd"))
links = {}
for f in fds:
    try:
        links[f] = os.readlink("/proc/self/fd/%d" % f)
    except OSError:
        pass
# The directory listdir had open is closed by now: it has no link left.
extra = [f for f in fds if f > 2 and f in links]
(escaped if extra else blocked)("only stdio inherited", repr(links))
for f in (0, 1, 2):
    target = links.get(f, "")
    (blocked if target.startswith("pipe:") or target == "/dev/null" else escaped)("fd %d is a pipe" % f, target)
`)
}

func TestAttackCgroupNamespace(t *testing.T) {
	requireSandbox(t)
	runAttack(t, `
lines = read("/proc/self/cgroup").decode().splitlines()
bad = [l for l in lines if not l.endswith(":/")]
(escaped if bad else blocked)("cgroup paths hidden", "host cgroup paths visible: %r" % bad if bad else repr(lines))
must_fail("cgroupfs not mounted", lambda: os.listdir("/sys/fs/cgroup"))
`)
}

func TestAttackNetworkHostListener(t *testing.T) {
	requireSandbox(t)
	ln, err := net.Listen("tcp", ":0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var accepted atomic.Int32
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			t.Logf("the host listener accepted a connection from %s", c.RemoteAddr())
			c.Close()
		}
	}()
	port := ln.Addr().(*net.TCPAddr).Port
	addrs := []string{"127.0.0.1", "::1"}
	if ifaddrs, err := net.InterfaceAddrs(); err == nil {
		for _, a := range ifaddrs {
			if ipn, ok := a.(*net.IPNet); ok && !ipn.IP.IsLoopback() && !ipn.IP.IsLinkLocalUnicast() {
				addrs = append(addrs, ipn.IP.String())
			}
		}
	}
	runAttack(t, `
port = int(sys.argv[1])
for host in sys.argv[2:]:
    t0 = time.monotonic()
    try:
        s = socket.create_connection((host, port), timeout=3)
    except OSError as ex:
        dt = time.monotonic() - t0
        (blocked if dt < 2 else wrong)("connect to the host's listener on %s:%d" % (host, port), "%s after %.3fs" % (en(ex.errno) if ex.errno else repr(ex), dt))
    else:
        escaped("connect to the host's listener on %s:%d" % (host, port), "connected from %r" % (s.getsockname(),))
        s.close()
`, append([]string{strconv.Itoa(port)}, addrs...)...)
	time.Sleep(100 * time.Millisecond)
	if n := accepted.Load(); n != 0 {
		t.Errorf("the test's listener on :%d accepted %d connection(s) from the sandbox", port, n)
	}
}

func TestAttackNetworkInterfaces(t *testing.T) {
	requireSandbox(t)
	runAttack(t, `
lines = read("/proc/net/dev").decode().splitlines()[2:]
ifaces = sorted(l.split(":")[0].strip() for l in lines)
(blocked if ifaces == ["lo"] else escaped)("only the lo interface", repr(ifaces))
routes = read("/proc/net/route").decode().splitlines()[1:]
bad = [r for r in routes if r.split() and r.split()[0] != "lo"]
(escaped if bad else blocked)("no IPv4 route off the loopback", repr(bad) if bad else "%d routes" % len(routes))
try:
    r6 = read("/proc/net/ipv6_route").decode().splitlines()
except FileNotFoundError:
    r6 = []
bad = [r for r in r6 if r.split() and r.split()[-1] != "lo"]
(escaped if bad else blocked)("no IPv6 route off the loopback", repr(bad) if bad else "%d routes" % len(r6))
try:
    names = socket.if_nameindex()
except OSError as ex:
    blocked("if_nameindex", "fails: " + en(ex.errno))
else:
    (blocked if [n for _, n in names] == ["lo"] else escaped)("if_nameindex", repr(names))

for host, port in [("1.1.1.1", 53), ("10.0.0.1", 80), ("192.0.2.1", 80), ("169.254.169.254", 80), ("2606:4700:4700::1111", 53)]:
    t0 = time.monotonic()
    try:
        s = socket.create_connection((host, port), timeout=3)
    except OSError as ex:
        dt = time.monotonic() - t0
        (blocked if dt < 1 else wrong)("connect %s:%d" % (host, port), "%s after %.3fs (must fail fast)" % (en(ex.errno) if ex.errno else repr(ex), dt))
    else:
        escaped("connect %s:%d" % (host, port), "connected")
        s.close()
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
must_fail("UDP to 8.8.8.8:53", lambda: u.sendto(b"x", ("8.8.8.8", 53)))
try:
    addrs = socket.getaddrinfo("example.com", 80)
except OSError as ex:
    blocked("resolve example.com", repr(ex))
else:
    escaped("resolve example.com", repr(addrs[:2]))

# Positive control: the loopback works inside the run.
def loopback():
    srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen(1)
    c = socket.create_connection(srv.getsockname(), timeout=2)
    a, _ = srv.accept(); c.sendall(b"ping"); return a.recv(4)
must_work("loopback TCP inside the run", loopback)
`)
}

func TestAttackWriteOutsideWorkspace(t *testing.T) {
	requireSandbox(t)
	runAttack(t, `
def write(p):
    with open(p, "wb") as f:
        f.write(b"x")
for p in ["/usr/x", "/etc/x", "/x", "/bin/x", "/lib/x", "/dev/x", "/proc/x",
          "/etc/passwd", "/etc/hosts", "/usr/bin/python3",
          "/proc/sys/kernel/hostname", "/proc/sys/kernel/core_pattern", "/proc/sys/vm/drop_caches",
          "/proc/sysrq-trigger", "/proc/1/oom_score_adj"]:
    must_fail("write " + p, lambda: write(p))
must_fail("mkdir /newdir", lambda: os.mkdir("/newdir"))
must_fail("symlink in /usr", lambda: os.symlink("/tmp", "/usr/lnk"))
must_fail("chmod /etc/passwd", lambda: os.chmod("/etc/passwd", 0o777))
must_fail("rename /etc/hosts", lambda: os.rename("/etc/hosts", "/etc/hosts2"))
must_fail("truncate /etc/resolv.conf", lambda: os.truncate("/etc/resolv.conf", 0))
must_fail("utime /usr/bin/python3", lambda: os.utime("/usr/bin/python3"))
must_fail("remove /etc/hostname", lambda: os.remove("/etc/hostname"))
must_work("write /workspace/x", lambda: write("/workspace/x"))
must_work("write /tmp/x", lambda: write("/tmp/x"))
must_work("write /dev/shm/x", lambda: write("/dev/shm/x"))
must_work("write /dev/null", lambda: write("/dev/null"))
os.remove("/workspace/x")

# Mount flags: nothing writable may hold a setuid or device file, and the
# system directories are read-only.
for p in ["/", "/usr", "/etc", "/dev", "/proc"]:
    st = os.statvfs(p)
    ok = st.f_flag & os.ST_RDONLY or p == "/proc"
    (blocked if ok else escaped)("read-only " + p, "flags %#x" % st.f_flag)
for p in ["/", "/usr", "/workspace", "/tmp", "/dev/shm"]:
    st = os.statvfs(p)
    (blocked if st.f_flag & os.ST_NOSUID else escaped)("nosuid " + p, "flags %#x" % st.f_flag)
for p in ["/workspace", "/tmp", "/dev/shm"]:
    st = os.statvfs(p)
    (blocked if st.f_flag & os.ST_NODEV else escaped)("nodev " + p, "flags %#x" % st.f_flag)

allowed_dev = {"null", "zero", "full", "random", "urandom", "fd", "stdin", "stdout", "stderr", "shm", "pts", "ptmx"}
extra = sorted(set(os.listdir("/dev")) - allowed_dev)
(escaped if extra else blocked)("/dev allowlist", "extra devices %r" % extra if extra else " ".join(sorted(os.listdir("/dev"))))
# /dev/pts is the run's own devpts instance: none of the host's terminals.
pts = sorted(os.listdir("/dev/pts"))
(blocked if pts == ["ptmx"] else escaped)("/dev/pts is private", repr(pts))
`)
}

func TestAttackCredentials(t *testing.T) {
	requireSandbox(t)
	// The status of the program itself and of a program it execs (a
	// setuid or file-capability binary must not gain anything).
	r, code := runPy(t, `import subprocess, sys
sys.stdout.write(open("/proc/self/status").read())
print("---")
sys.stdout.write(subprocess.run(["/usr/bin/cat", "/proc/self/status"], capture_output=True).stdout.decode())
`)
	wantStatus(t, r, code, "ok", 0)
	self, child, ok := strings.Cut(string(r.Stdout), "---\n")
	if !ok {
		t.Fatalf("unexpected output:\n%s", r.Stdout)
	}
	for who, status := range map[string]string{"program": self, "exec'd child": child} {
		fields := map[string]string{}
		for _, line := range strings.Split(status, "\n") {
			k, v, _ := strings.Cut(line, ":")
			fields[k] = strings.Join(strings.Fields(v), " ")
		}
		for k, want := range map[string]string{
			"CapInh": "0000000000000000", "CapPrm": "0000000000000000", "CapEff": "0000000000000000",
			"CapBnd": "0000000000000000", "CapAmb": "0000000000000000",
			"NoNewPrivs": "1", "Seccomp": "2",
			"Uid": "1000 1000 1000 1000", "Gid": "1000 1000 1000 1000", "Groups": "",
		} {
			if got, present := fields[k]; !present || got != want {
				t.Errorf("%s: /proc/self/status %s = %q, want %q", who, k, got, want)
			}
		}
	}
}

func TestAttackSetuidBinaries(t *testing.T) {
	requireSandbox(t)
	var bins []string
	for _, b := range []string{"/usr/bin/su", "/usr/bin/passwd", "/usr/bin/sudo", "/usr/bin/newgrp", "/usr/bin/chsh", "/usr/bin/mount"} {
		if fi, err := os.Stat(b); err == nil && fi.Mode()&os.ModeSetuid != 0 {
			bins = append(bins, b)
		}
	}
	if len(bins) == 0 {
		t.Skip("requires a setuid binary on the host to try (none found)")
	}
	runAttack(t, `
import subprocess
for b in sys.argv[1:]:
    argv = {"/usr/bin/su": [b, "root", "-c", "id -u"], "/usr/bin/sudo": [b, "-n", "id", "-u"],
            "/usr/bin/mount": [b, "-t", "tmpfs", "x", "/tmp"]}.get(b, [b])
    try:
        p = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=5)
    except subprocess.TimeoutExpired:
        blocked("setuid " + b, "hung without privilege (timeout)")
        continue
    out = p.stdout.decode(errors="replace").strip()
    if p.returncode == 0 and (out == "0" or b.endswith("mount")):
        escaped("setuid " + b, "exit 0, output %r" % out)
    else:
        blocked("setuid " + b, "exit %d: %s" % (p.returncode, (p.stderr.decode(errors="replace").strip() or out)[:100]))
(blocked if os.geteuid() == 1000 and os.getuid() == 1000 else escaped)("uid stays 1000", "%d/%d" % (os.getuid(), os.geteuid()))
`, bins...)
}

func TestAttackHostname(t *testing.T) {
	requireSandbox(t)
	host, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	r, code := runPy(t, "import os, socket\nprint(socket.gethostname())\nprint(os.uname().nodename)\nprint(open('/proc/sys/kernel/hostname').read().strip())\n")
	wantStatus(t, r, code, "ok", 0)
	for i, name := range strings.Fields(string(r.Stdout)) {
		if name == host {
			t.Errorf("the sandbox sees the host's hostname %q (source %d)", host, i)
		}
	}
	if got := strings.Fields(string(r.Stdout)); len(got) != 3 || got[0] == "" {
		t.Errorf("unexpected hostname output %q", r.Stdout)
	}
}

func TestAttackForeignArchSyscall(t *testing.T) {
	requireSandbox(t)
	if runtime.GOARCH != "amd64" {
		t.Skip("requires x86-64: the int 0x80 check is for that architecture")
	}
	requireFile(t, "/usr/bin/gcc")
	// A 32-bit getpid through int 0x80: the filter's rules are for the
	// x86-64 table, so the design kills any foreign-arch call outright.
	r, code := runJSON(t, runSpec{name: "int80.c", code: `#include <stdio.h>
int main(void) {
	long r;
	printf("before\n");
	fflush(stdout);
	__asm__ volatile("int $0x80" : "=a"(r) : "a"(20L) : "memory");
	printf("after: the 32-bit syscall returned %ld\n", r);
	return 0;
}
`})
	if r.Compile == nil || r.Compile.Status != "ok" {
		t.Fatalf("the test program did not compile\n%s", r)
	}
	if r.Signal == 11 && !strings.Contains(string(r.Stdout), "after") {
		t.Skip("requires IA-32 emulation in the kernel: without it int 0x80 faults before seccomp sees it")
	}
	if strings.Contains(string(r.Stdout), "after") {
		t.Errorf("a 32-bit int 0x80 syscall ran inside the sandbox: %q", r.Stdout)
	}
	wantStatus(t, r, code, "signaled", 128+31)
	if r.Signal != 31 || r.SignalName != "SIGSYS" {
		t.Errorf("signal = %d %q, want 31 SIGSYS (seccomp kill)", r.Signal, r.SignalName)
	}
	if string(r.Stdout) != "before\n" {
		t.Errorf("stdout = %q, want %q", r.Stdout, "before\n")
	}
}

func TestAttackPlantedSymlinksNotCollected(t *testing.T) {
	requireSandbox(t)
	hostPasswd, _ := os.ReadFile("/etc/passwd")
	hostHostname, _ := os.ReadFile("/etc/hostname")
	out := t.TempDir()
	script := t.TempDir() + "/plant.py"
	if err := os.WriteFile(script, []byte(`import os
os.symlink("/etc/passwd", "passwd_link")
os.symlink("/etc/hostname", "hostname_link")
os.symlink("/", "root_link")
os.symlink("/etc", "etc_link")
os.symlink("/proc/1/root/etc/shadow", "shadow_link")
os.symlink("../../../../../../etc/passwd", "dotdot_link")
os.makedirs("d")
os.symlink("/etc/passwd", "d/inner_link")
os.mkfifo("fifo")
with open("real.txt", "w") as f:
    f.write("real\n")
print("planted")
`), 0o644); err != nil {
		t.Fatal(err)
	}
	o := sbx(t, invocation{args: []string{"run", "--json", "--out", out, script}, timeout: 20 * time.Second})
	r := decodeResult(t, o)
	wantStatus(t, r, o.code, "ok", 0)
	if r.file("real.txt") == nil {
		t.Errorf("the regular file real.txt was not collected (positive control); files: %v", fileNames(r))
	}
	for _, f := range r.Files {
		if strings.Contains(f.Name, "link") || f.Name == "fifo" {
			t.Errorf("a planted symlink or fifo came back in files[]: %q (%d bytes)", f.Name, len(f.Content))
		}
		for what, host := range map[string][]byte{"/etc/passwd": hostPasswd, "/etc/hostname": hostHostname} {
			if len(host) > 0 && strings.Contains(string(f.Content), strings.TrimSpace(string(host))) {
				t.Errorf("files[] %q carries the host's %s", f.Name, what)
			}
		}
	}
	err := walkDir(out, func(path string, fi os.FileInfo) {
		rel := strings.TrimPrefix(path, out+"/")
		if fi.Mode()&os.ModeSymlink != 0 || fi.Mode()&os.ModeNamedPipe != 0 {
			t.Errorf("--out wrote a symlink or fifo: %s", rel)
		}
		if strings.Contains(rel, "link") {
			t.Errorf("--out wrote %s from a planted symlink", rel)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
}

func decodeResult(t *testing.T, o outcome) *result {
	t.Helper()
	var r result
	if err := jsonDecode(o.stdout, &r); err != nil {
		t.Fatalf("exit code %d and no JSON result (%v); stdout:\n%s\nstderr:\n%s", o.code, err, tail(o.stdout), tail(o.stderr))
	}
	return &r
}

func walkDir(dir string, fn func(string, os.FileInfo)) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range ents {
		p := dir + "/" + e.Name()
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		fn(p, fi)
		if fi.IsDir() {
			if err := walkDir(p, fn); err != nil {
				return err
			}
		}
	}
	return nil
}

// TestAttackRunsIsolatedFromEachOther starts one run that leaves traces in
// every shared place it can (/tmp, /dev/shm, an abstract unix socket, a
// SysV shared memory segment, a listening TCP port), and while it lives a
// second run looks for them.
func TestAttackRunsIsolatedFromEachOther(t *testing.T) {
	requireSandbox(t)
	token := "sbx-" + randomHex(6)
	dir := t.TempDir()
	first := dir + "/first.py"
	if err := os.WriteFile(first, []byte(attackPrelude+`
token = sys.argv[1]
open("/tmp/" + token, "w").write("first")
open("/dev/shm/" + token, "w").write("first")
open("/workspace/" + token, "w").write("first")
a = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
a.bind("\0" + token); a.listen(1)
t = socket.socket(); t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
t.bind(("127.0.0.1", 47123)); t.listen(1)
libc.shmget.restype = ctypes.c_int
shmid = libc.shmget(0x5bd5, 4096, 0o1000 | 0o666)
print("ready", shmid, flush=True)
time.sleep(20)
`), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(sandboxctl, "run", "--timeout", "25s", first, token)
	var firstErr strings.Builder
	cmd.Stderr = &firstErr
	defer func() {
		if firstErr.Len() > 0 {
			t.Logf("first run's sandboxctl stderr: %s", firstErr.String())
		}
	}()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer stopGracefully(t, cmd)
	ready := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(stdout).ReadString('\n')
		ready <- line
		_, _ = io.Copy(io.Discard, stdout)
	}()
	select {
	case line := <-ready:
		if !strings.HasPrefix(line, "ready") || strings.HasSuffix(strings.TrimSpace(line), "-1") {
			t.Fatalf("the first run did not set up its traces: %q", line)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the first run did not get ready within 15s")
	}
	runAttack(t, `
token = sys.argv[1]
for p in ["/tmp/", "/dev/shm/", "/workspace/"]:
    (escaped if os.path.exists(p + token) else blocked)("other run's " + p, "visible" if os.path.exists(p + token) else "absent")
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
must_fail("other run's abstract socket", lambda: s.connect("\0" + token))
must_fail("other run's TCP port", lambda: socket.create_connection(("127.0.0.1", 47123), timeout=2))
libc.shmget.restype = ctypes.c_int
expect_fail("other run's SysV shm", cfn(libc.shmget, 0x5bd5, 0, 0), [errno.ENOENT])
procs = [read("/proc/%s/cmdline" % d) for d in os.listdir("/proc") if d.isdigit() and int(d) != os.getpid()]
bad = [c for c in procs if token.encode() in c]
(escaped if bad else blocked)("other run's processes", repr(bad) if bad else "invisible")
`, token)
}

// jsonDecode decodes a sandboxctl JSON result strictly.
func jsonDecode(b []byte, v any) error {
	dec := newStrictDecoder(b)
	return dec.Decode(v)
}

// TestAttackHostSharedPlaces: the host's /tmp, /dev/shm and abstract unix
// sockets are not the sandbox's.
func TestAttackHostSharedPlaces(t *testing.T) {
	requireSandbox(t)
	token := "sbx-host-" + randomHex(6)
	for _, dir := range []string{"/tmp", "/dev/shm"} {
		p := dir + "/" + token
		if err := os.WriteFile(p, []byte("host"), 0o644); err != nil {
			t.Fatal(err)
		}
		defer os.Remove(p)
	}
	ln, err := net.Listen("unix", "@"+token)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var accepted atomic.Int32
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			c.Close()
		}
	}()
	runAttack(t, `
token = sys.argv[1]
for d in ["/tmp/", "/dev/shm/"]:
    (escaped if os.path.lexists(d + token) else blocked)("host's " + d, "visible" if os.path.lexists(d + token) else "not there")
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
must_fail("connect to the host's abstract socket", lambda: s.connect("\0" + token))
`, token)
	time.Sleep(50 * time.Millisecond)
	if n := accepted.Load(); n > 0 {
		t.Errorf("the host's abstract unix socket @%s accepted %d connection(s) from the sandbox", token, n)
	}
}
