// Package session runs stateful sessions: one long-lived sandbox per
// session holding a persistent interpreter (a kernel, see kernel/), to
// which clients send cell after cell, as in a notebook. Variables, imports
// and files persist between cells; each cell returns its output, the value
// of its trailing expression, its error with a traceback, and display data
// (figures as PNG).
//
// A session's sandbox is a run's: the same namespaces, cgroup, rlimits,
// seccomp and workspace. Each cell has a deadline and a CPU budget: past
// either, the kernel is interrupted (KeyboardInterrupt) and, if it does not
// stop, killed, and the session is then dead: its workspace is removed at
// once (its memory would otherwise be held by no cgroup), and it stays
// only to say why it died until it is deleted or expires. A cell's CPU
// budget is read from the session's cgroup while the cell runs; the
// session has its own for its whole life (SessionSpec.CPUBudget), counted
// between cells too, past which the kernel is killed and the session is
// dead. Idle sessions expire.
package session
