// Package api is sandboxd's HTTP/JSON interface: POST /v1/runs (one
// request, one confined run, one result; NDJSON streaming on request),
// /v1/sessions (stateful sessions: a persistent kernel per session, cells
// run one after another, its workspace files read and written over HTTP),
// GET /v1/runtimes, health, readiness, Prometheus metrics, an OpenAPI
// document, and Piston v2's /api/v2/execute and /api/v2/runtimes so Piston
// clients work unchanged. Every run goes through the same executor as
// sandboxctl, behind an admission gate.
package api
