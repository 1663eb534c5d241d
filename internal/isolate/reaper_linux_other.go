//go:build linux && !amd64

package isolate

import "debug/elf"

// No reaper for this architecture yet: init waits for the program itself.
const reaperMachine = elf.EM_NONE

var reaperCode []byte
