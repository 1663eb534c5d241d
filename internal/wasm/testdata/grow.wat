;; grow: grows memory 1 MiB at a time, touching each new page, until the
;; grow fails; then traps (unreachable), as a C program's failed malloc
;; turned abort() would.
(module
  (memory (export "memory") 1)
  (func (export "_start") (local $old i32)
    (loop $more
      (local.set $old (memory.grow (i32.const 16)))
      (if (i32.eq (local.get $old) (i32.const -1)) (then unreachable))
      (i32.store (i32.mul (local.get $old) (i32.const 65536)) (i32.const 1))
      (br $more))))
