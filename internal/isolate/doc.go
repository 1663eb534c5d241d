// Package isolate is the process backend: it runs a program confined by
// Linux namespaces, a cgroup, rlimits, dropped capabilities, no_new_privs,
// seccomp and a wall deadline, and reports what happened as a run.Result.
//
// This package is the parent side. The child side, which runs inside the new
// namespaces before the program, is the small package nsinit, started as
// the small binary cmd/sandboxd-init when it lies beside this one, or as
// this binary re-executed (initbin_linux.go). The seccomp program is
// compiled here (package seccomp) and only installed by init.
//
// Every program runs in a sandbox built the same way (sandbox_linux.go) and
// watched by the same supervisor (supervise_linux.go), in one of three
// modes:
//
//   - Runner.Run, a one-shot run: the sandbox is built with the run's
//     limits and activated as soon as the program runs; Run returns its
//     result (exec_linux.go).
//   - Runner.StartHeld, a HeldProcess, for a warm pool: built with the
//     pool's limits at the least CPU weight, its program waiting on its
//     control pipe; Activate replaces the limits with the run's (cgroup
//     update, prlimit), connects the I/O and starts the clock
//     (held_linux.go).
//   - Runner.StartSession, a SessionProcess, for a session's kernel: built
//     with the session's limits, which are never re-applied; it keeps its
//     control and answer pipes open, cuts its output per execution and can
//     be interrupted (session_linux.go).
package isolate
