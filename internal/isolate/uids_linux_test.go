package isolate

import (
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/sandboxd/sandboxd/internal/limits"
	"github.com/sandboxd/sandboxd/internal/run"
)

// TestUserNamespaceOwnedBySlot: the run's user namespace is owned by its
// slot's first uid (so the kernel charges its ucounts there, not to host
// root), its id maps are the slot and nothing else, and the per-namespace
// limits are set inside.
func TestUserNamespaceOwnedBySlot(t *testing.T) {
	r := requireRunner(t)
	code := `import os, fcntl, struct
NS_GET_OWNER_UID = 0xb704
fd = os.open("/proc/self/ns/user", os.O_RDONLY)
buf = fcntl.ioctl(fd, NS_GET_OWNER_UID, b"\0" * 4)
print("owner", struct.unpack("I", buf)[0])
print("uid_map", " ".join(open("/proc/self/uid_map").read().split()))
print("gid_map", " ".join(open("/proc/self/gid_map").read().split()))
for n in ("max_user_namespaces", "max_inotify_instances", "max_inotify_watches"):
    print(n, open("/proc/sys/user/" + n).read().strip())
`
	res := runPython(t, r, code, limits.Limits{}, "")
	if res.Status != run.StatusOK {
		t.Fatalf("status %s: %s %s", res.Status, res.Reason, res.Stderr)
	}
	got := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(res.Stdout)), "\n") {
		k, v, _ := strings.Cut(line, " ")
		got[k] = v
	}
	// In the sandbox the owner (a host uid of the slot) reads as 0, its
	// own root: an owner outside the run's map (host root) would read as
	// the overflow uid 65534.
	if got["owner"] != "0" {
		t.Errorf("namespace owner reads %q in the sandbox, want 0 (the slot's first uid)", got["owner"])
	}
	for _, k := range []string{"uid_map", "gid_map"} {
		f := strings.Fields(got[k])
		if len(f) != 3 || f[0] != "0" || f[2] != strconv.Itoa(IDsPerSandbox) {
			t.Errorf("%s %q: want 0 <slot> %d", k, got[k], IDsPerSandbox)
			continue
		}
		first, _ := strconv.Atoi(f[1])
		if first < r.cfg.HostUID || first >= r.cfg.HostUID+r.cfg.IDSlots*IDsPerSandbox || (first-r.cfg.HostUID)%IDsPerSandbox != 0 {
			t.Errorf("%s starts at host id %d: not a slot of the pool at %d", k, first, r.cfg.HostUID)
		}
	}
	if got["max_user_namespaces"] != "0" || got["max_inotify_instances"] != "128" || got["max_inotify_watches"] != "8192" {
		t.Errorf("per-namespace limits not set: %v", got)
	}
}

// TestSlotsAreExclusive: two live workspaces never share a slot, and a
// released slot can be taken again.
func TestSlotsAreExclusive(t *testing.T) {
	r := requireRunner(t)
	r.cfg.IDSlots = 2
	a, err := r.allocIDs()
	if err != nil {
		t.Fatal(err)
	}
	b, err := r.allocIDs()
	if err != nil {
		t.Fatal(err)
	}
	if a.n == b.n || a.uid == b.uid {
		t.Fatalf("two live holders got slot %d and %d", a.n, b.n)
	}
	if c, err := r.allocIDs(); err == nil {
		c.release()
		t.Fatalf("a third slot %d was given out of a pool of 2", c.n)
	}
	a.release()
	c, err := r.allocIDs()
	if err != nil {
		t.Fatalf("a released slot was not given again: %v", err)
	}
	if c.n != a.n {
		t.Errorf("got slot %d, want the released %d", c.n, a.n)
	}
	c.release()
	b.release()
}

// TestPtyAndNobody: openpty works on the run's own devpts, and the
// program may try to become nobody and is refused with EPERM (as an
// unprivileged process in a container is), not EINVAL for an unmapped id.
func TestPtyAndNobody(t *testing.T) {
	r := requireRunner(t)
	code := `import os, errno
m, s = os.openpty()
os.write(m, b"hi\n")
print("pty", os.ttyname(s), os.read(s, 3))
fd = os.open("/dev/ptmx", os.O_RDWR | os.O_NOCTTY)
print("ptmx ok")
try:
    os.setuid(65534)
    print("setuid worked")
except OSError as e:
    print("setuid", errno.errorcode[e.errno])
print("pts", sorted(os.listdir("/dev/pts")))
`
	res := runPython(t, r, code, limits.Limits{}, "")
	if res.Status != run.StatusOK {
		t.Fatalf("status %s: %s %s", res.Status, res.Reason, res.Stderr)
	}
	for _, want := range []string{"pty /dev/pts/0 b'hi\\n'", "ptmx ok", "setuid EPERM", "pts ['0', '1', 'ptmx']"} {
		if !strings.Contains(string(res.Stdout), want) {
			t.Errorf("output lacks %q:\n%s", want, res.Stdout)
		}
	}
}

// TestIDPoolBounds: a pool past the 32-bit ids is refused with what is wrong.
func TestIDPoolBounds(t *testing.T) {
	for _, cfg := range []Config{
		{HostUID: DefaultHostUID, HostGID: DefaultHostUID, IDSlots: DefaultIDSlots},
		{HostUID: 1<<32 - IDsPerSandbox - 1, HostGID: 100000, IDSlots: 1},
	} {
		if err := validIDPool(cfg); err != nil {
			t.Errorf("%+v refused: %v", cfg, err)
		}
	}
	for _, cfg := range []Config{
		{HostUID: 1<<32 - IDsPerSandbox, HostGID: 100000, IDSlots: 1},
		{HostUID: 100000, HostGID: 100000, IDSlots: 1 << 16},
		{HostUID: 100000, HostGID: 100000, IDSlots: -1},
	} {
		if err := validIDPool(cfg); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("%+v: %v, want ErrInvalidConfig", cfg, err)
		}
	}
}
