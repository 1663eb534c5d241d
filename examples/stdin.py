# Shows stdin reaching the program. Run: printf 'one\ntwo\n' | go run ./cmd/sandboxctl run examples/stdin.py
import sys

lines = sys.stdin.read().splitlines()
print(f"{len(lines)} line(s) on stdin")
for line in lines:
    print(line.upper())
