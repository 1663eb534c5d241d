;; fanout: a call tree with no loop, 2^40 leaves. wazero v1.12.0 checks for
;; a closed module at loop headers only, so WithCloseOnContextDone cannot
;; stop this module; only killing its process can.
(module
  (memory (export "memory") 1)
  (func $f (param $n i32)
    (if (i32.eqz (local.get $n)) (then return))
    (call $f (i32.sub (local.get $n) (i32.const 1)))
    (call $f (i32.sub (local.get $n) (i32.const 1))))
  (func (export "_start") (call $f (i32.const 40))))
