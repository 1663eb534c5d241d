package wasm

import (
	"fmt"
	"os"

	seccomp "github.com/elastic/go-seccomp-bpf"
	"github.com/elastic/go-seccomp-bpf/arch"
	"golang.org/x/sys/unix"
)

// allowRule is one entry of a worker's seccomp allowlist: syscalls the Go
// runtime, wazero or the guest's WASI calls need, and why. Everything else
// fails with EPERM.
type allowRule struct {
	names  []string
	reason string
}

// workerSyscalls is the allowlist of a wasm worker. A worker is a Go
// program serving WASI calls from a directory tree; it never execs, forks,
// opens sockets, mounts, traces or changes credentials, so none of those
// are here. The list is data so that a golden test can pin it.
var workerSyscalls = []allowRule{
	{[]string{"read", "write", "readv", "writev", "pread64", "pwrite64", "preadv", "pwritev", "lseek", "close"},
		"the runner's pipes, the guest's files and the compilation cache"},
	{[]string{"openat", "newfstatat", "fstat", "statx", "getdents64", "readlinkat", "faccessat", "faccessat2"},
		"WASI path calls on the preopened directories, and loading modules from the cache"},
	{[]string{"mkdirat", "unlinkat", "renameat", "renameat2", "linkat", "ftruncate", "fsync", "fdatasync",
		"fchmod", "fchmodat", "utimensat", "fallocate"},
		"WASI calls that change the workspace (the quota layer bounds them)"},
	{[]string{"fcntl", "dup", "dup3", "pipe2", "eventfd2", "epoll_create1", "epoll_ctl", "epoll_pwait", "epoll_pwait2",
		"ppoll", "pselect6"},
		"Go's poller and file descriptors"},
	{[]string{"mmap", "munmap", "mprotect", "madvise", "mremap", "brk"},
		"memory: the Go heap, linear memories (mmap), wazero's executable code (mprotect)"},
	{[]string{"futex", "nanosleep", "clock_nanosleep", "clock_gettime", "clock_getres", "gettimeofday", "sched_yield",
		"sched_getaffinity", "getrandom", "restart_syscall"},
		"the Go scheduler, clocks (WASI clock_time_get, poll_oneoff) and random_get"},
	{[]string{"rt_sigaction", "rt_sigprocmask", "rt_sigreturn", "sigaltstack", "gettid", "getpid", "tgkill"},
		"the Go runtime's signals: preemption and wazero's traps (SIGSEGV turned into panics)"},
	{[]string{"exit", "exit_group", "set_robust_list", "rseq", "prlimit64", "getuid", "geteuid", "getgid", "getegid"},
		"thread and process exit; what glibc's thread start calls when the binary uses cgo"},
}

// cloneThreadOnly restricts clone to new threads: CLONE_THREAD set and no
// namespace flag. The kernel reads clone's flags as their low 32 bits, and
// both conditions test only bits of the low word, so a high bit changes
// nothing. An unprivileged process may still create a user namespace
// where the host allows it, which would bring back capabilities inside it.
var cloneThreadOnly = seccomp.NameWithConditions{
	Name: "clone",
	Conditions: seccomp.ArgumentConditions{
		{Argument: 0, Operation: seccomp.BitsSet, Value: unix.CLONE_THREAD},
		{Argument: 0, Operation: seccomp.BitsNotSet, Value: unix.CLONE_NEWNS | unix.CLONE_NEWCGROUP | unix.CLONE_NEWUTS |
			unix.CLONE_NEWIPC | unix.CLONE_NEWUSER | unix.CLONE_NEWPID | unix.CLONE_NEWNET},
	},
}

// workerPolicy assembles the allowlist for architecture a. Names the
// architecture lacks are left out. clone3 gets ENOSYS, not EPERM: its flags
// are in memory seccomp cannot read, and ENOSYS makes glibc (a cgo or race
// build starts threads through it) fall back to clone, which is checked.
func workerPolicy(a *arch.Info) seccomp.Policy {
	allow := seccomp.SyscallGroup{Action: seccomp.ActionAllow, NamesWithCondtions: []seccomp.NameWithConditions{cloneThreadOnly}}
	for _, r := range workerSyscalls {
		for _, n := range r.names {
			if _, ok := a.SyscallNames[n]; ok {
				allow.Names = append(allow.Names, n)
			}
		}
	}
	return seccomp.Policy{
		DefaultAction: seccomp.ActionErrno,
		Syscalls: []seccomp.SyscallGroup{
			allow,
			{Action: seccomp.ActionErrno | seccomp.Action(unix.ENOSYS), Names: []string{"clone3"}},
		},
	}
}

// confine is the worker's first act: no_new_privs and the seccomp
// allowlist, on every thread (TSYNC: the Go runtime has started several).
// The runner started it as an unprivileged uid with no capabilities and
// inside its memory cgroup; this closes the kernel's other doors.
func confine() error {
	a, err := arch.GetInfo("")
	if err != nil {
		return fmt.Errorf("seccomp: %w", err)
	}
	f := seccomp.Filter{NoNewPrivs: true, Flag: seccomp.FilterFlagTSync, Policy: workerPolicy(a)}
	if err := seccomp.LoadFilter(f); err != nil {
		return fmt.Errorf("install the worker's seccomp filter: %w", err)
	}
	if os.Getuid() == 0 || os.Geteuid() == 0 {
		return fmt.Errorf("the worker runs as uid %d/%d: it must not be root", os.Getuid(), os.Geteuid())
	}
	return nil
}
