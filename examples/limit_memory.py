# Shows the memory limit: allocates up to 1 GiB in 64 MiB steps until the run ends with status memory_limit. Run: go run ./cmd/sandboxctl run --memory 256MiB examples/limit_memory.py
STEP = 64 << 20
TOTAL = 1 << 30

held = []
while len(held) * STEP < TOTAL:
    # bytes([1]) * STEP writes every page, so the memory is really used
    # (a zero-filled buffer may stay unmapped and never count).
    held.append(bytes([1]) * STEP)
    print(f"allocated {len(held) * STEP >> 20} MiB", flush=True)

print("allocated 1 GiB: no memory limit below that was enforced")
