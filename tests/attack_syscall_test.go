package tests

import (
	"strings"
	"testing"
)

// TestAttackSocketFamilies: only AF_UNIX, AF_INET and AF_INET6 sockets can
// be made (netlink reaches nf_tables and routing, AF_VSOCK the hypervisor
// host, a network namespace stops neither), and raw IP sockets need a
// capability the run does not have.
func TestAttackSocketFamilies(t *testing.T) {
	requireSandbox(t)
	runAttack(t, `
AF_VSOCK, AF_ALG, AF_KEY, AF_XDP, AF_BLUETOOTH, AF_CAN, AF_TIPC, AF_RDS = 40, 38, 15, 44, 31, 29, 30, 21
for name, fam, typ, proto in [
        ("AF_NETLINK raw", socket.AF_NETLINK, socket.SOCK_RAW, 0),
        ("AF_NETLINK route", socket.AF_NETLINK, socket.SOCK_DGRAM, 0),
        ("AF_NETLINK netfilter", socket.AF_NETLINK, socket.SOCK_RAW, 12),
        ("AF_PACKET", socket.AF_PACKET, socket.SOCK_RAW, 0x0300),
        ("AF_VSOCK stream", AF_VSOCK, socket.SOCK_STREAM, 0),
        ("AF_VSOCK dgram", AF_VSOCK, socket.SOCK_DGRAM, 0),
        ("AF_ALG", AF_ALG, socket.SOCK_SEQPACKET, 0),
        ("AF_KEY", AF_KEY, socket.SOCK_RAW, 2),
        ("AF_XDP", AF_XDP, socket.SOCK_RAW, 0),
        ("AF_BLUETOOTH", AF_BLUETOOTH, socket.SOCK_RAW, 0),
        ("AF_CAN", AF_CAN, socket.SOCK_RAW, 1),
        ("AF_TIPC", AF_TIPC, socket.SOCK_RDM, 0),
        ("AF_RDS", AF_RDS, socket.SOCK_SEQPACKET, 0),
        ("AF_INET raw ICMP", socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP),
        ("AF_INET raw IP", socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW),
        ("AF_INET6 raw", socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_RAW)]:
    expect_fail("socket(%s)" % name, sc(41, fam, typ, proto))
# The family in the upper half of the 64-bit argument register: the kernel
# reads an int, the filter must not be fooled by the rest.
expect_fail("socket(AF_NETLINK | 1<<32)", sc(41, (1 << 32) | socket.AF_NETLINK, socket.SOCK_RAW, 0))
expect_fail("socket(AF_VSOCK | 1<<32)", sc(41, (1 << 32) | AF_VSOCK, socket.SOCK_STREAM, 0))
# socketpair creates its sockets before it fails for these families: the
# filter's errno, not the kernel's EOPNOTSUPP.
pair = ctypes.byref((ctypes.c_int * 2)())
expect_fail("socketpair(AF_NETLINK)", sc(53, socket.AF_NETLINK, socket.SOCK_RAW, 0, pair), [errno.EAFNOSUPPORT])
expect_fail("socketpair(AF_VSOCK | 1<<32)", sc(53, (1 << 32) | AF_VSOCK, socket.SOCK_STREAM, 0, pair), [errno.EAFNOSUPPORT])

# Positive controls: the families the design allows.
must_work("socket(AF_UNIX)", lambda: socket.socket(socket.AF_UNIX, socket.SOCK_STREAM).close())
must_work("socket(AF_INET)", lambda: socket.socket(socket.AF_INET, socket.SOCK_STREAM).close())
must_work("socket(AF_INET6)", lambda: socket.socket(socket.AF_INET6, socket.SOCK_DGRAM).close())
# The kernel reads the family as an int: AF_INET with high bits is AF_INET.
r, e = sc(41, (1 << 32) | socket.AF_INET, socket.SOCK_STREAM, 0)
(works if r >= 0 else broken)("socket(AF_INET | 1<<32)", "%d %s" % (r, en(e)))
if r >= 0:
    os.close(r)
r, e = sc(53, (1 << 32) | socket.AF_UNIX, socket.SOCK_STREAM, 0, pair)
(works if r == 0 else broken)("socketpair(AF_UNIX | 1<<32)", "%d %s" % (r, en(e)))
`)
}

// TestAttackSyscalls calls, through ctypes, the syscalls sandboxes are
// escaped with. Where the kernel alone would let the call through (keyctl,
// name_to_handle_at, ptrace of an own child, sysfs, userfaultfd in user
// mode), the expected errno is the seccomp filter's, so the test proves the
// filter and not just missing capabilities.
func TestAttackSyscalls(t *testing.T) {
	requireSandbox(t)
	for _, tc := range []struct{ name, code string }{
		{"mount", `
expect_fail("mount tmpfs on /tmp", cfn(libc.mount, b"tmpfs", b"/tmp", b"tmpfs", 0, None), [errno.EPERM])
expect_fail("mount bind / on /workspace", cfn(libc.mount, b"/", b"/workspace/x", None, 0x1000, None), [errno.EPERM])
expect_fail("umount2 /proc", cfn(libc.umount2, b"/proc", 2), [errno.EPERM])
expect_fail("chroot", cfn(libc.chroot, b"/tmp"), [errno.EPERM])
expect_fail("pivot_root", sc(155, b"/tmp", b"/tmp"), [errno.EPERM])
expect_fail("fsopen", sc(430, b"tmpfs", 0), [errno.EPERM])
expect_fail("fspick", sc(433, -100, b"/tmp", 0), [errno.EPERM])
expect_fail("open_tree", sc(428, -100, b"/tmp", 1), [errno.EPERM])
expect_fail("move_mount", sc(429, -100, b"/tmp", -100, b"/workspace", 0), [errno.EPERM])
attr = (ctypes.c_uint64 * 4)(1, 0, 0, 0)
expect_fail("mount_setattr", sc(442, -100, b"/tmp", 0, attr, 32), [errno.EPERM])
`},
		{"namespaces", `
for name, flag in [("CLONE_NEWUSER", 0x10000000), ("CLONE_NEWNS", 0x00020000), ("CLONE_NEWNET", 0x40000000),
                   ("CLONE_NEWPID", 0x20000000), ("CLONE_NEWUTS", 0x04000000), ("CLONE_NEWIPC", 0x08000000),
                   ("CLONE_NEWCGROUP", 0x02000000)]:
    expect_fail("unshare(%s)" % name, cfn(libc.unshare, flag), [errno.EPERM])
for ns in ["net", "mnt", "user", "pid", "uts"]:
    fd = os.open("/proc/self/ns/" + ns, os.O_RDONLY)
    expect_fail("setns(%s)" % ns, cfn(libc.setns, fd, 0))
    os.close(fd)
# clone with namespace flags; if it ever succeeds, the child leaves at once.
for name, flag in [("CLONE_NEWUSER", 0x10000000), ("CLONE_NEWNET", 0x40000000), ("CLONE_NEWNS", 0x00020000)]:
    r, e = sc(56, flag | 17, 0, 0, 0, 0)
    if r == 0:
        os._exit(0)
    if r > 0:
        os.waitpid(r, 0)
    expect_fail("clone(%s)" % name, (r, e), [errno.EPERM])
# clone3 must be ENOSYS (not EPERM) so libc falls back to clone, whose flags
# the filter can read.
args = (ctypes.c_uint64 * 11)()
args[0] = 0x10000000
args[4] = 17
r, e = sc(435, ctypes.byref(args), 88)
if r == 0:
    os._exit(0)
expect_fail("clone3(CLONE_NEWUSER)", (r, e), [errno.ENOSYS])
expect_fail("clone3(NULL)", sc(435, 0, 0), [errno.ENOSYS])
# x32 ABI numbers (bit 30): a second syscall table must not bypass the list.
expect_fail("x32 unshare(CLONE_NEWUSER)", sc(0x40000000 | 272, 0x10000000))
# Positive control: plain fork and threads (which libc does with clone3,
# then clone) still work.
def fork_works():
    pid = os.fork()
    if pid == 0:
        os._exit(7)
    return os.waitpid(pid, 0)[1] >> 8
must_work("fork", fork_works)
import threading
def thread_works():
    out = []
    th = threading.Thread(target=lambda: out.append(1)); th.start(); th.join()
    return out
must_work("threads", thread_works)
`},
		{"tracing", `
child = os.fork()
if child == 0:
    time.sleep(30)
    os._exit(0)
expect_fail("ptrace(PTRACE_TRACEME)", sc(101, 0, 0, 0, 0), [errno.EPERM])
expect_fail("ptrace(PTRACE_ATTACH, 1)", sc(101, 16, 1, 0, 0))
expect_fail("ptrace(PTRACE_ATTACH, own child)", sc(101, 16, child, 0, 0), [errno.EPERM])
expect_fail("ptrace(PTRACE_SEIZE, own child)", sc(101, 0x4206, child, 0, 0), [errno.EPERM])
secret = ctypes.create_string_buffer(b"secret", 16)
local = ctypes.create_string_buffer(16)
class iovec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]
liov = iovec(ctypes.cast(local, ctypes.c_void_p), 16)
riov = iovec(ctypes.cast(secret, ctypes.c_void_p), 16)
expect_fail("process_vm_readv(own child)", sc(310, child, ctypes.byref(liov), 1, ctypes.byref(riov), 1, 0), [errno.EPERM])
expect_fail("process_vm_writev(own child)", sc(311, child, ctypes.byref(liov), 1, ctypes.byref(riov), 1, 0), [errno.EPERM])
pidfd, e = sc(434, child, 0)
if pidfd >= 0:
    expect_fail("pidfd_getfd(own child, 0)", sc(438, pidfd, 0, 0), [errno.EPERM])
else:
    blocked("pidfd_getfd(own child, 0)", "pidfd_open failed: " + en(e))
expect_fail("kcmp", sc(312, os.getpid(), child, 0, 0, 0), [errno.EPERM])
expect_fail("process_madvise", sc(440, max(pidfd, 0), ctypes.byref(liov), 1, 8, 0))
os.kill(child, 9)
os.waitpid(child, 0)
`},
		{"kernel interfaces", `
expect_fail("bpf(BPF_MAP_CREATE)", sc(321, 0, 0, 0), [errno.EPERM])
expect_fail("keyctl(GET_KEYRING_ID)", sc(250, 0, -3, 0), [errno.EPERM])
expect_fail("add_key", sc(248, b"user", b"sbx", b"v", 1, -3), [errno.EPERM])
expect_fail("request_key", sc(249, b"user", b"sbx", 0, 0), [errno.EPERM])
params = ctypes.create_string_buffer(120)
expect_fail("io_uring_setup", sc(425, 1, params), [errno.ENOSYS])
expect_fail("io_uring_enter", sc(426, 0, 0, 0, 0, 0, 0), [errno.ENOSYS])
expect_fail("io_uring_register", sc(427, 0, 0, 0, 0), [errno.ENOSYS])
attr = ctypes.create_string_buffer(128)
ctypes.c_uint32.from_buffer(attr, 4).value = 128
expect_fail("perf_event_open", sc(298, attr, 0, -1, -1, 0))
expect_fail("userfaultfd(0)", sc(323, 0))
expect_fail("userfaultfd(UFFD_USER_MODE_ONLY)", sc(323, 1), [errno.EPERM])
fh = ctypes.create_string_buffer(8 + 128)
ctypes.c_uint32.from_buffer(fh, 0).value = 128
mount_id = ctypes.c_int()
expect_fail("name_to_handle_at", sc(303, -100, b"/workspace", fh, ctypes.byref(mount_id), 0), [errno.EPERM])
wfd = os.open("/workspace", os.O_RDONLY)
expect_fail("open_by_handle_at", sc(304, wfd, fh, 0))
expect_fail("x32 keyctl", sc(0x40000000 | 250, 0, -3, 0))
expect_fail("x32 name_to_handle_at", sc(0x40000000 | 303, -100, b"/workspace", fh, ctypes.byref(mount_id), 0))
expect_fail("personality(ADDR_NO_RANDOMIZE)", cfn(libc.personality, 0x0040000), [errno.EPERM])
expect_fail("personality(READ_IMPLIES_EXEC)", cfn(libc.personality, 0x0400000), [errno.EPERM])
r, e = cfn(libc.personality, 0xffffffff)
(works if r >= 0 else broken)("personality query", "%d %s" % (r, en(e)))
expect_fail("syslog(READ_ALL)", sc(103, 3, ctypes.create_string_buffer(256), 256))
expect_fail("init_module", sc(175, 0, 0, b""))
expect_fail("finit_module", sc(313, wfd, b"", 0))
expect_fail("delete_module", sc(176, b"ext4", 0))
expect_fail("kexec_load", sc(246, 0, 0, 0, 0))
expect_fail("kexec_file_load", sc(320, wfd, wfd, 0, b"", 0))
expect_fail("reboot", sc(169, 0, 0, 0, 0))
expect_fail("acct", sc(163, 0))
expect_fail("swapon", sc(167, b"/tmp/swap", 0))
expect_fail("swapoff", sc(168, b"/tmp/swap"))
expect_fail("iopl(3)", sc(172, 3))
expect_fail("ioperm", sc(173, 0x80, 1, 1))
expect_fail("settimeofday", sc(164, 0, 0))
expect_fail("clock_settime", sc(227, 0, 0))
expect_fail("clock_adjtime", sc(305, 0, 0))
expect_fail("fanotify_init", sc(300, 0, 0))
expect_fail("sysfs", sc(139, 3), [errno.EPERM])
expect_fail("quotactl", sc(179, 0, b"/workspace", 0, 0))
expect_fail("uselib", sc(134, b"/nonexistent"))
expect_fail("sethostname", cfn(libc.sethostname, b"evil", 4))
expect_fail("ioctl(TIOCSTI)", sc(16, 0, 0x5412, ctypes.byref(ctypes.c_char(b"x"))))
must_fail("setuid(0)", lambda: os.setuid(0))
must_fail("setgid(0)", lambda: os.setgid(0))
must_fail("setgroups([0])", lambda: os.setgroups([0]))
`},
		{"high argument bits", highBitAttack},
	} {
		t.Run(strings.ReplaceAll(tc.name, " ", "_"), func(t *testing.T) {
			runAttack(t, tc.code)
		})
	}
}

// highBitAttack calls every argument-conditioned rule's denied values with
// bits set above the 32 the kernel reads (ioctl's cmd, socket's domain,
// clone's flags, personality's persona are 32-bit to the kernel): each is
// still denied with the filter's errno, not the kernel's answer to the
// value it sees (ENOTTY for TIOCSTI on a pipe, the bug this guards), and
// the allowed values with high bits still work.
const highBitAttack = `
HI = 1 << 32
ALL_HI = 0xffffffff << 32
TIOCSTI, TIOCLINUX, FIONREAD = 0x5412, 0x541c, 0x541b
ch = ctypes.byref(ctypes.c_char(b"x"))
for name, cmd in [("TIOCSTI", TIOCSTI), ("TIOCLINUX", TIOCLINUX)]:
    for hname, h in [("", 0), (" | 1<<32", HI), (" | 0xffffffff<<32", ALL_HI)]:
        expect_fail("ioctl(0, %s%s)" % (name, hname), sc(16, 0, h | cmd, ch), [errno.EPERM])
rfd, wfd = os.pipe()
os.write(wfd, b"abc")
n = ctypes.c_int()
r, e = sc(16, rfd, HI | FIONREAD, ctypes.byref(n))
(works if r == 0 and n.value == 3 else broken)("ioctl(pipe, FIONREAD | 1<<32)", "%d %s n=%d" % (r, en(e), n.value))
for name, flag in [("CLONE_NEWUSER", 0x10000000), ("CLONE_NEWNET", 0x40000000), ("CLONE_NEWNS", 0x00020000)]:
    for hname, h in [(" | 1<<32", HI), (" | 0xffffffff<<32", ALL_HI)]:
        r, e = sc(56, h | flag | 17, 0, 0, 0, 0)
        if r == 0:
            os._exit(0)
        if r > 0:
            os.waitpid(r, 0)
        expect_fail("clone(%s%s)" % (name, hname), (r, e), [errno.EPERM])
def fork_high_bits():
    r, e = sc(56, HI | 17, 0, 0, 0, 0)
    if r == 0:
        os._exit(7)
    if r < 0:
        raise OSError(e, "clone(SIGCHLD | 1<<32)")
    return os.waitpid(r, 0)[1] >> 8
must_work("clone(SIGCHLD | 1<<32)", fork_high_bits)
for name, p in [("ADDR_NO_RANDOMIZE", 0x0040000), ("READ_IMPLIES_EXEC", 0x0400000)]:
    for hname, h in [(" | 1<<32", HI), (" | 0xffffffff<<32", ALL_HI)]:
        expect_fail("personality(%s%s)" % (name, hname), sc(135, h | p), [errno.EPERM])
r, e = sc(135, HI | 0xffffffff)
(works if r >= 0 else broken)("personality(query | 1<<32)", "%d %s" % (r, en(e)))
r, e = sc(135, HI | 0)
(works if r >= 0 else broken)("personality(PER_LINUX | 1<<32)", "%d %s" % (r, en(e)))
`
