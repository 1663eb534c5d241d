// Package jupyter serves the Jupyter kernel gateway API (REST under
// /api/kernels and /api/kernelspecs, and the kernel's channels over a
// WebSocket) on top of sandboxd's sessions, so Jupyter's own clients run
// every cell of a notebook in a sandbox.
package jupyter
