package daemon

import (
	"runtime/debug"
	"sync"
	"time"
)

// Large answers hold a run's files, a cell's output, or with no
// --spool-dir a run's output, on the Go heap (up to --max-output per
// stream) for as long as their client takes to read them. Once they end, that memory is garbage, but the Go
// runtime neither collects it (nothing allocates, so no GC runs until the
// forced one, two minutes on) nor gives it back (its scavenger keeps most
// of a heap that was large): four unread 64 MiB answers left the daemon at
// 470 MiB for minutes. Large request bodies are the same: six runs sent
// one after another with 14 MiB of code each left the daemon at 76 MiB
// (from 20) for as long as it was watched. So an answer that held, or a
// request body of, at least largeAnswer bytes asks for a collection and a
// return of free memory to the host, a moment after it ends, so that
// answers ending together cost one. Half the default --max-body: a
// collection of the daemon's small live heap costs far less than reading
// and decoding such a body.
const (
	largeAnswer  = 8 << 20
	returnDelay  = time.Second
	returnMinGap = 5 * time.Second
)

// memoryReturn runs free (debug.FreeOSMemory) returnDelay after a large
// answer ends, at most once per returnMinGap: one GC and one scavenge per
// burst of large answers, each of which cost far more to produce.
type memoryReturn struct {
	min        int64
	delay, gap time.Duration
	free       func()
	now        func() time.Time
	mu         sync.Mutex
	pending    bool
	last       time.Time
}

func newMemoryReturn() *memoryReturn {
	return &memoryReturn{min: largeAnswer, delay: returnDelay, gap: returnMinGap, free: debug.FreeOSMemory, now: time.Now}
}

// answerDone hears that an answer holding held bytes of output has been
// sent or cut.
func (m *memoryReturn) answerDone(held int64) {
	if held < m.min {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.pending {
		return
	}
	m.pending = true
	wait := max(m.delay, m.last.Add(m.gap).Sub(m.now()))
	time.AfterFunc(wait, m.run)
}

func (m *memoryReturn) run() {
	m.mu.Lock()
	m.pending = false
	m.last = m.now()
	m.mu.Unlock()
	m.free()
}
