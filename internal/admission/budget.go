package admission

import (
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/sandboxd/sandboxd/internal/errdefs"
	"github.com/sandboxd/sandboxd/internal/limits"
)

// ErrOverBudget: the memory asked for does not fit in what the daemon's
// memory budget has left. Retry when a run or a session ends.
var ErrOverBudget = errdefs.New(errdefs.ErrExhausted, "memory budget exhausted")

// BudgetError is a reservation refused by a Budget: it names the budget,
// what is promised and what was asked for. It is an ErrOverBudget.
type BudgetError struct {
	// What asked: "this run", "this session".
	What                   string
	Need, Promised, Budget limits.Bytes
}

func (e *BudgetError) Error() string {
	if e.Need > e.Budget {
		return fmt.Sprintf("%s: %s needs %s of memory, more than the daemon's whole memory budget of %s; ask for less memory",
			ErrOverBudget, e.What, e.Need, e.Budget)
	}
	return fmt.Sprintf("%s: %s needs %s of memory, and %s of the daemon's memory budget of %s is promised to running runs and live sessions; retry when one ends, or ask for less memory",
		ErrOverBudget, e.What, e.Need, e.Promised, e.Budget)
}

// Unwrap makes a BudgetError an ErrOverBudget (of class exhausted).
func (e *BudgetError) Unwrap() error { return ErrOverBudget }

// Budget is the memory a daemon may promise to its runs and sessions
// together. Each holds a reservation of its memory limit while it lives;
// the sum of the reservations never passes the budget, so what the limits
// allow always fits in what the host can give. Safe for concurrent use.
type Budget struct {
	limit    limits.Bytes
	onReject func()

	mu       sync.Mutex
	promised limits.Bytes
}

// NewBudget returns a Budget of limit bytes. onReject, if set, is called
// for every refused reservation (the metrics count them).
func NewBudget(limit limits.Bytes, onReject func()) *Budget {
	return &Budget{limit: limit, onReject: onReject}
}

// Reserve promises n bytes to what ("this run", "this session") at once
// or not at all: past the budget it fails with a *BudgetError without
// waiting. On success, release must be called when what ends; calls after
// the first do nothing.
func (b *Budget) Reserve(n limits.Bytes, what string) (release func(), err error) {
	return b.reserve(n, what, true)
}

// TryReserve is Reserve for what can do without, the warm pools: a
// refusal is not counted (onReject), since no request was refused.
func (b *Budget) TryReserve(n limits.Bytes) (release func(), err error) {
	return b.reserve(n, "a warm sandbox", false)
}

func (b *Budget) reserve(n limits.Bytes, what string, count bool) (release func(), err error) {
	b.mu.Lock()
	if n < 0 || n > b.limit-b.promised {
		e := &BudgetError{What: what, Need: n, Promised: b.promised, Budget: b.limit}
		b.mu.Unlock()
		if count && b.onReject != nil {
			b.onReject()
		}
		return nil, e
	}
	b.promised += n
	b.mu.Unlock()
	var once atomic.Bool
	return func() {
		if once.CompareAndSwap(false, true) {
			b.mu.Lock()
			b.promised -= n
			b.mu.Unlock()
		}
	}, nil
}

// Limit is the budget.
func (b *Budget) Limit() limits.Bytes { return b.limit }

// Promised is the memory reserved now.
func (b *Budget) Promised() limits.Bytes {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.promised
}
