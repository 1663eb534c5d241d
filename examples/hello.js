// Shows a JavaScript run: on Node (process backend) or QuickJS (--backend wasm). Run: go run ./cmd/sandboxctl run examples/hello.js
const engine = typeof process !== "undefined" ? `node ${process.versions.node}` : "quickjs";
console.log(`hello from the sandbox, ${engine}`);
