// Shows a JavaScript run on Node. Run: go run ./cmd/sandboxctl run examples/hello.js
console.log(`hello from the sandbox, node ${process.versions.node}`);
