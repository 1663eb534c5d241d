# Shows a plain run: output, the Python version and the unprivileged uid. Run: go run ./cmd/sandboxctl run examples/hello.py
import os
import platform

print("hello from the sandbox")
print(f"python {platform.python_version()}")
if hasattr(os, "getuid"):  # WASI (--backend wasm) has no users
    print(f"running as uid {os.getuid()}, gid {os.getgid()}")
