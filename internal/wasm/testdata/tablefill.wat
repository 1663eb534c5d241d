;; tablefill: grows a funcref table by a million elements at a time,
;; forever: the table is the worker's memory, not linear memory.
(module
  (type $t (func))
  (func $f)
  (table $tab 1 funcref)
  (elem declare func $f)
  (memory (export "memory") 1)
  (func (export "_start")
    (loop $l
      (drop (table.grow $tab (ref.func $f) (i32.const 1000000)))
      (br $l))))
