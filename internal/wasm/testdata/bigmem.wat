;; bigmem: declares 64 MiB of initial memory.
(module
  (memory (export "memory") 1024)
  (func (export "_start")))
