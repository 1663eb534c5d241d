package isolate

import (
	"strings"
	"sync"
	"time"
)

// phases records when each step of a run ended, for the debug log and the
// overhead benchmark: where a run's time goes.
type phases struct {
	// mu: Activate (the caller's goroutine) and the supervisor both mark.
	mu    sync.Mutex
	names []string
	at    []time.Time
	notes []string
}

// note records a duration measured elsewhere (inside init).
func (p *phases) note(name string, d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.notes = append(p.notes, name+"="+d.Round(10*time.Microsecond).String())
}

func (p *phases) mark(name string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.names = append(p.names, name)
	p.at = append(p.at, time.Now())
}

// String lists each step's duration: "cgroup_create=1.2ms clone=0.8ms ...".
func (p *phases) String() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var b strings.Builder
	for i := 1; i < len(p.at); i++ {
		if i > 1 {
			b.WriteByte(' ')
		}
		b.WriteString(p.names[i])
		b.WriteByte('=')
		b.WriteString(p.at[i].Sub(p.at[i-1]).Round(10 * time.Microsecond).String())
	}
	for _, n := range p.notes {
		b.WriteString(" (" + n + ")")
	}
	return b.String()
}
