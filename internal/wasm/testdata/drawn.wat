;; drawn: exports a start-up snapshot's entry points (as python.wasm does)
;; and draws 16 random bytes in its start-up (sandboxd_init), which its
;; run (sandboxd_run) prints in hex. Runs that shared a snapshot would
;; print the same bytes.
(module
  (import "wasi_snapshot_preview1" "random_get" (func $random (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "_initialize"))
  (func $init (export "sandboxd_init")
    (drop (call $random (i32.const 64) (i32.const 16))))
  (func $digit (param $n i32) (result i32)
    (select (i32.add (local.get $n) (i32.const 48)) (i32.add (local.get $n) (i32.const 87))
      (i32.lt_u (local.get $n) (i32.const 10))))
  (func $run (export "sandboxd_run") (local $i i32) (local $b i32)
    (block $done
      (loop $each
        (br_if $done (i32.ge_u (local.get $i) (i32.const 16)))
        (local.set $b (i32.load8_u (i32.add (i32.const 64) (local.get $i))))
        (i32.store8 (i32.add (i32.const 128) (i32.shl (local.get $i) (i32.const 1)))
          (call $digit (i32.shr_u (local.get $b) (i32.const 4))))
        (i32.store8 (i32.add (i32.const 129) (i32.shl (local.get $i) (i32.const 1)))
          (call $digit (i32.and (local.get $b) (i32.const 15))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $each)))
    (i32.store8 (i32.const 160) (i32.const 10))
    (i32.store (i32.const 0) (i32.const 128))
    (i32.store (i32.const 4) (i32.const 33))
    (drop (call $write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8))))
  (func (export "_start") (call $init) (call $run)))
