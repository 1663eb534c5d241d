// Package nsinit is the init stage of the process backend: the code that runs
// inside a run's new namespaces, between the re-exec of /proc/self/exe and the
// execve of the untrusted program.
//
// Go cannot run code between fork and exec, so the parent (internal/isolate)
// starts a Go binary with the marker argv[0] "sandboxd-init" in new user,
// pid, mount, net, ipc, uts and cgroup namespaces: the small
// cmd/sandboxd-init beside it when that is of the same Build (build.go),
// otherwise its own binary. Every binary that can act as a parent calls
// MaybeRun first thing in main (and tests in TestMain).
// This package imports nothing of the daemon: it gets a Config over an
// inherited fd and does exactly what it says.
//
// The init stage stays PID 1 of the run's pid namespace. It builds the root
// file system, applies rlimits, drops capabilities, sets no_new_privs,
// installs the seccomp filter, then starts the program as PID 2 under an
// unprivileged uid and reaps every process of the run. When the program
// exits, init reports its wait status and exits; the kernel then kills every
// other process of the namespace, so nothing a run started can outlive it.
//
// The sync protocol over two pipes (fd 3 parent->init, fd 4 init->parent):
//
//	parent                                     init (PID 1, new namespaces)
//	  Start() ----- clone + execve ---------->   the hello, then blocks
//	  <--------------- {"build":"..."}           reading fd 3
//	  Config JSON ---------------------------->  mounts (/proc masked),
//	  [cgroup v1: write pid to cgroup.procs,     pivot_root, hostname,
//	   in parallel with init's setup]            loopback, time namespace,
//	                                             rlimits, caps, no_new_privs
//	  [the hello's build is the parent's own,
//	   or init is killed: no "go"]
//	  close fd 3 ("go") ---------------------->  unshare cgroup ns, seccomp,
//	                                             fork+exec the program (PID 2)
//	  <--------------- {"pid":2}                 (or {"error":...}, exit 125)
//	                                             reap children until PID 2 exits
//	  <--------------- {"exit":{...}}            exit(0): the kernel kills the
//	  read fd 4 to EOF, wait(init)               rest of the pid namespace
//
// The program starts only after the "go": it is in the run's cgroup from its
// first instruction. Init's own setup before it is charged to the parent's
// cgroup (a few KiB of tmpfs metadata).
//
// Every message is one JSON object per line. Any failure before the program
// starts is a Message with Error set, naming the step that failed.
package nsinit
