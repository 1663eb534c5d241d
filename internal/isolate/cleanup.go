package isolate

// cleanup rolls back a partial setup, as gVisor's pkg/cleanup does: each
// step that acquires something registers its undo, and a deferred Clean
// runs the undos in reverse order unless Release was called once the whole
// setup succeeded.
//
//	cu := makeCleanup(undoA)
//	defer cu.Clean()
//	... acquire B ...
//	cu.Add(undoB)
//	...
//	cu.Release() // success: keep A and B
type cleanup struct {
	undo []func()
}

// makeCleanup returns a cleanup that will run f, if f is not nil.
func makeCleanup(f func()) cleanup {
	var c cleanup
	c.Add(f)
	return c
}

// Add registers f to run before the undos registered earlier.
func (c *cleanup) Add(f func()) {
	if f != nil {
		c.undo = append(c.undo, f)
	}
}

// Clean runs the registered undos, last first, and forgets them.
func (c *cleanup) Clean() {
	for i := len(c.undo) - 1; i >= 0; i-- {
		c.undo[i]()
	}
	c.undo = nil
}

// Release forgets the registered undos without running them.
func (c *cleanup) Release() { c.undo = nil }
