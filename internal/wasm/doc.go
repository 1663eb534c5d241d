// Package wasm is the WebAssembly backend: it runs WASI preview1 commands
// (any .wasm, or the CPython and QuickJS interpreters that
// scripts/build-wasm-runtimes.sh builds from Debian's sources) under
// wazero, with the run contract of internal/run: the same limits, statuses
// and result as the process backend, and no root, namespaces or cgroups.
//
// One Runner per process holds one wazero runtime and its compilation
// cache (in memory and on disk); each distinct module is compiled once,
// and every run gets a fresh module instance: its own linear memory,
// arguments, environment (nothing of the host's), stdin, capped stdout and
// stderr, and a fresh workspace directory on the host, mounted read-write
// at /workspace (and at /, as WASI has no working directory), the only
// writable mount. The interpreters' files are mounted read-only. There are
// no sockets: wazero's WASI offers only sockets the host preopens, and the
// runner preopens none.
//
// # Where guests run
//
// In ModeWorker (the default on Linux when main calls MaybeRun) guests run
// in worker processes, this binary re-executed, which load the compiled
// code from the disk cache and serve one run at a time; the runner kills a
// worker at a limit. When the runner is root, worker slot i runs as host
// uid Config.WorkerUID+i with no capabilities, no_new_privs and a seccomp
// allowlist (confine_linux.go), in a memory cgroup of its own
// (cgroup_linux.go); modules are compiled by one-shot compile workers (uid
// WorkerUID-1, the only writer of the cache) under the run's memory and
// wall-clock limits, never by the runner, and the cache is bounded
// (Config.CacheMaxBytes, least recently written evicted). In
// ModeInProcess they run on goroutines of this process, under a runtime
// made WithCloseOnContextDone, and this process compiles. RATIONALE.md,
// "The wasm backend", has the measurements behind the choice.
//
// A compilation in a compile worker is bounded by its run's timeout and
// memory limit (plus the slack); past either the run ends timeout or
// memory_limit, not started, and the next run of the module compiles it
// again under its own limits.
//
// # How each limit is enforced
//
//	limit       enforcement                                              on violation
//	---------   ------------------------------------------------------   ------------------------------
//	timeout     from the guest's start: the worker is killed             timeout
//	            (ModeWorker), or the module is closed at its next loop
//	            header and its sleeps and stdin reads end (ModeInProcess)
//	cpu_time    the CPU clock of the guest's thread, polled every         cpu_limit
//	            budget/20 (10-100 ms); the guest is one thread, so a
//	            budget at or above the timeout needs no polling
//	memory      the guest's linear memory cannot grow past it (a          memory_limit when the run
//	            per-instance allocator; the initial memory counts too).   then fails, or when the
//	            In a root runner's workers, everything else the guest     kernel kills the worker; a
//	            makes the worker allocate (tables, the host's side of     module whose initial memory
//	            the instance, wazero's native stack, Go's heap) counts    is over it does not start;
//	            too: the worker's cgroup allows its own usage plus the    compiling past it: not
//	            limit plus 32 MiB of slack. In process, or unprivileged   started, memory_limit
//	            without cgroups, only linear memory counts
//	output      stdout and stderr each; the first bytes are kept          output_limit, truncated flags
//	tmpfs       the workspace: total bytes of its files and, as the       the write or create fails
//	            tmpfs's inode count, max(tmpfs/8KiB, 1024) files and      with EIO (wazero's WASI has
//	            directories                                               no ENOSPC); Reason says so
//	file_size   the size any one file of the workspace may reach          the write fails with EIO
//	open_files  files and directories the guest has open at once (its     the open fails with EIO
//	            preopened directories aside); each is a host fd of the
//	            process running the guest
//	pids        nothing to enforce: a guest cannot start processes or     -
//	            threads (WASI preview1 has neither); any value holds
//	cpus        a guest is one thread: >= 1 holds by construction;        Check refuses cpus < 1 when
//	            below 1 would need CPU bandwidth control                  the client set it
//
// Check refuses, with a *LimitError, what a client set explicitly and this
// backend cannot enforce; defaults are never refused.
//
// # What a result reports
//
// WallTime is from the guest's start to its end. CPUTime is the CPU time
// of the guest's thread (host functions included): at most WallTime, as
// the guest is single-threaded; off Linux in ModeInProcess it is the wall
// time. PeakMemory is the largest size of the guest's linear memory (which
// never shrinks), or, in a root runner's worker, the cgroup's peak above
// the worker's own usage when that is larger. A wasm trap is reported as signaled, with the signal the
// same fault raises natively (unreachable, which abort() compiles to:
// SIGABRT; out-of-bounds access: SIGSEGV; division by zero: SIGFPE) and
// the trap in Reason. Exit codes are the low 8 bits of proc_exit's, as
// POSIX's. Produced files follow the process backend's rules (regular
// files only, symlinks never followed, unchanged inputs left out, caps of
// 64 files, 8 MiB each and 32 MiB in all). Isolation says backend "wasm",
// seccomp and no_new_privs when the workers are confined (a guest's own
// calls never reach the kernel: WASI calls are Go functions of the worker,
// which is what the filter confines), rootfs "wasi-preopens", uid -1 (WASI
// has no users), network "none", and warm when an interpreter started from
// a snapshot of its start-up (snapshot.go) rather than cold.
package wasm
