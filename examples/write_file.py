# Shows files produced in the workspace coming back with the result. Run: go run ./cmd/sandboxctl run --json examples/write_file.py
import csv

with open("result.txt", "w") as f:
    f.write("42\n")

rows = [("n", "square"), *((n, n * n) for n in range(1, 6))]
with open("squares.csv", "w", newline="") as f:
    csv.writer(f).writerows(rows)

print("wrote result.txt and squares.csv in the current directory")
