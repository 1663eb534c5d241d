;; leftover: looks for anything a previous guest left in linear memory.
;; It grows its memory to 80 MiB (past the size a reused mapping keeps
;; resident), exits 1 if any byte of it is not zero, else fills all of it
;; with 0xAA, as a previous tenant's secrets, and returns. Run twice
;; through one runner, the second run must exit 0 as the first did.
(module
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 80)
  (func (export "_start") (local $p i32) (local $end i32)
    (drop (memory.grow (i32.const 1200)))
    (local.set $end (i32.mul (memory.size) (i32.const 65536)))
    (block $done
      (loop $scan
        (br_if $done (i32.ge_u (local.get $p) (local.get $end)))
        (if (i64.ne (i64.load (local.get $p)) (i64.const 0))
          (then (call $exit (i32.const 1))))
        (local.set $p (i32.add (local.get $p) (i32.const 8)))
        (br $scan)))
    (memory.fill (i32.const 0) (i32.const 0xAA) (local.get $end))))
