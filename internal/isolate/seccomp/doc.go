// Package seccomp is the process backend's syscall policy and the BPF
// program it compiles to. The runner compiles the program (Compile) and
// hands it to the init stage as bytes, which init only installs: the
// policy, the syscall tables and the assembler stay out of the small init
// binary (cmd/sandboxd-init), whose start-up every run pays.
package seccomp
