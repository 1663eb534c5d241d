// Package run defines the run contract shared by every backend and front end:
// the Spec that says what to run and the Result that says what happened.
//
// A Spec is what a CLI invocation, an HTTP request or an MCP tool call is
// turned into; a Result is what each of them renders. Both backends
// (internal/isolate and internal/wasm) take the same Spec and return the same
// Result, so front ends are written once.
package run
