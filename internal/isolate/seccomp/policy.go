//go:build linux

package seccomp

import "golang.org/x/sys/unix"

// Rule is one entry of the seccomp policy: the syscalls it matches, what they
// return instead of running, and why the sandbox denies them.
type Rule struct {
	Names []string
	// Errno is returned by a matched call (EPERM unless said otherwise).
	Errno unix.Errno
	// Args, when set, restrict the rule to calls whose arguments match every
	// condition; otherwise the rule matches any call of Names.
	Args []ArgCond
	// Reason is why the rule exists. Every rule has one.
	Reason string
}

// ArgCond matches the low 32 bits of one syscall argument. Every argument
// the policy conditions on is an int or unsigned int to the kernel (socket's
// domain, ioctl's cmd, personality's persona), or an unsigned long of which
// it reads the lower 32 bits (clone's flags, through lower_32_bits): the
// kernel ignores the upper half of the register, so the filter must too, or
// a denied value with a high bit set would pass an exact 64-bit compare and
// still be the denied value to the kernel. A rule on a true 64-bit argument
// would need a wider ArgCond; none is needed today.
type ArgCond struct {
	// Index is the argument's position, 0 to 5.
	Index int
	// Op is "bits_set" (arg & Value != 0), "eq" or "ne".
	Op    string
	Value uint32
}

// Namespace clone flags: creating namespaces is how a process gets a fresh
// set of capabilities to attack the kernel with.
const nsCloneFlags = unix.CLONE_NEWNS | unix.CLONE_NEWCGROUP | unix.CLONE_NEWUTS |
	unix.CLONE_NEWIPC | unix.CLONE_NEWUSER | unix.CLONE_NEWPID | unix.CLONE_NEWNET

// Policy is the seccomp deny list of the process backend. Everything not
// listed is allowed: the other layers (user namespace, no capabilities, an
// unprivileged uid, cgroup, read-only root) confine what those calls can do;
// this list removes the kernel interfaces sandboxes are escaped through.
// Syscalls a kernel or architecture does not have are skipped. Calls from a
// foreign architecture (32-bit int 0x80 on x86-64) kill the process, and the
// x32 ABI returns ENOSYS, so no second syscall table bypasses the list.
var Policy = []Rule{
	{Names: []string{"mount", "umount2", "pivot_root", "chroot", "move_mount", "open_tree", "fsopen", "fsconfig", "fsmount", "fspick", "mount_setattr"},
		Reason: "changing the mount table can uncover or replace what the sandbox hides"},
	{Names: []string{"unshare", "setns"},
		Reason: "new or foreign namespaces bring capabilities and kernel attack surface (nf_tables, overlayfs) back"},
	{Names: []string{"clone"}, Args: []ArgCond{{Index: 0, Op: "bits_set", Value: nsCloneFlags}},
		Reason: "clone with namespace flags is unshare by another name"},
	{Names: []string{"clone3"}, Errno: unix.ENOSYS,
		Reason: "clone3 passes its flags in memory seccomp cannot read; ENOSYS makes libc fall back to clone, whose flags are checked"},
	{Names: []string{"ptrace", "process_vm_readv", "process_vm_writev", "process_madvise", "pidfd_getfd", "kcmp"},
		Reason: "reading or steering another process's memory, fds or state"},
	{Names: []string{"bpf"},
		Reason: "eBPF is a large, often exploited kernel surface"},
	{Names: []string{"perf_event_open"},
		Reason: "performance counters leak kernel addresses and side channels"},
	{Names: []string{"userfaultfd"},
		Reason: "used to stall the kernel mid-copy and win races in exploits"},
	{Names: []string{"io_uring_setup", "io_uring_enter", "io_uring_register"}, Errno: unix.ENOSYS,
		Reason: "io_uring bypasses seccomp for the operations it queues and has a long exploit record; ENOSYS makes libuv and others fall back"},
	{Names: []string{"keyctl", "add_key", "request_key"},
		Reason: "the kernel keyring is not namespaced"},
	{Names: []string{"init_module", "finit_module", "delete_module", "create_module", "query_module", "get_kernel_syms"},
		Reason: "kernel modules"},
	{Names: []string{"kexec_load", "kexec_file_load", "reboot"},
		Reason: "replacing or stopping the kernel"},
	{Names: []string{"open_by_handle_at", "name_to_handle_at"},
		Reason: "file handles open files by inode, outside any mount (the 'shocker' escape)"},
	{Names: []string{"swapon", "swapoff", "acct", "quotactl", "quotactl_fd", "syslog", "vhangup", "lookup_dcookie", "nfsservctl", "uselib", "sysfs", "ustat", "_sysctl"},
		Reason: "host administration and obsolete interfaces no program of a run needs"},
	{Names: []string{"settimeofday", "clock_settime", "clock_adjtime", "iopl", "ioperm"},
		Reason: "host clock and raw I/O ports"},
	{Names: []string{"fanotify_init"},
		Reason: "watching file access across the system"},
	{Names: []string{"socket", "socketpair"}, Errno: unix.EAFNOSUPPORT,
		Args: []ArgCond{
			{Index: 0, Op: "ne", Value: unix.AF_UNIX},
			{Index: 0, Op: "ne", Value: unix.AF_INET},
			{Index: 0, Op: "ne", Value: unix.AF_INET6},
		},
		Reason: "only unix and IP sockets: netlink reaches nf_tables and routing, AF_VSOCK reaches the hypervisor host (a net namespace does not stop it), AF_PACKET and the rest are attack surface; socketpair creates its sockets (and loads a family's module) before it fails for most families"},
	{Names: []string{"ioctl"}, Args: []ArgCond{{Index: 1, Op: "eq", Value: unix.TIOCSTI}},
		Reason: "TIOCSTI pushes keystrokes into a terminal the run may share"},
	{Names: []string{"ioctl"}, Args: []ArgCond{{Index: 1, Op: "eq", Value: unix.TIOCLINUX}},
		Reason: "TIOCLINUX can read and inject on the console"},
	{Names: []string{"personality"},
		Args: []ArgCond{
			{Index: 0, Op: "ne", Value: 0x0},        // PER_LINUX
			{Index: 0, Op: "ne", Value: 0x8},        // PER_LINUX32
			{Index: 0, Op: "ne", Value: 0x20000},    // UNAME26
			{Index: 0, Op: "ne", Value: 0x20008},    // UNAME26 | PER_LINUX32
			{Index: 0, Op: "ne", Value: 0xffffffff}, // query
		},
		Reason: "personality flags such as ADDR_NO_RANDOMIZE and READ_IMPLIES_EXEC weaken exploit defences"},
}
