;; bigtable: declares a table of 40 million funcrefs and fills it: 320 MB
;; of the worker's memory that is not linear memory. (Declared but
;; untouched, its pages would cost nothing.)
(module
  (type $t (func))
  (func $f)
  (table $tab 40000000 funcref)
  (elem declare func $f)
  (memory (export "memory") 1)
  (func (export "_start")
    (table.fill $tab (i32.const 0) (ref.func $f) (table.size $tab))))
