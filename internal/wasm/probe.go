package wasm

// WorkerStatus is what the kernel says of a wasm worker that ProbeWorker
// started: fields of its /proc/PID/status and its memory cgroup.
type WorkerStatus struct {
	PID int
	// Uid and Gid are the status lines (real, effective, saved, fs).
	Uid, Gid string
	// CapEff, CapPrm are the capability sets in hex.
	CapEff, CapPrm string
	NoNewPrivs     string
	// Seccomp is the main thread's mode ("2": a filter); Threads is how
	// many threads the worker has, ThreadsFiltered how many of them run
	// under a filter with no_new_privs.
	Seccomp                  string
	Threads, ThreadsFiltered int
	// Cgroup is the worker's memory cgroup directory; MemoryLimit its
	// limit, set as for a run of memory bytes.
	Cgroup      string
	MemoryLimit uint64
	// InCgroup: /proc/PID/cgroup names that cgroup.
	InCgroup bool
}
