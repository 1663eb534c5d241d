package isolate

import (
	"errors"
	"slices"
	"sync"
)

// The busy sandboxes of one tenant share one default CPU weight.
//
// Every sandbox's cgroup sits directly under the runner's parent, so the
// kernel divides contended CPU among sandboxes by their weights: at equal
// weights, a client with ten runs going gets ten times the CPU of a
// client with one, and the one's latency is the ten's to set. Instead,
// the busy sandboxes of one tenant (Exec.Tenant: a token's owner, a
// client's address) each get an equal part of the default weight: a
// tenant with k busy sandboxes gives each 1/k of it. Every tenant that
// wants the CPU then gets as much of it as any other, however many
// sandboxes it runs, and a tenant alone still gets all of it: weights
// divide what is contended, they cap nothing (the run's CPU quota does).
//
// It is a weight per sandbox, not a cgroup level per tenant: the kernel
// would do the same division under a tenant's cgroup, but a warm sandbox
// learns its tenant only when a run takes it, and moving a started
// sandbox between cgroups is what the pool is there to avoid (on v2 the
// memory charged so far would not move with it). Re-weighting costs one
// small write per busy sandbox of the tenant at each join and leave.
//
// Busy is a run from its start (cold) or its activation (warm) to its
// end, and a session while it starts and during each cell or file write
// (SessionProcess.Busy); between them a session has the least weight.

// cpuShares is the runner's record of busy sandboxes by tenant.
type cpuShares struct {
	mu     sync.Mutex
	groups map[string][]*sandbox
}

// errSandboxGone: a sandbox whose cgroup is removed cannot be busy.
var errSandboxGone = errors.New("the sandbox has ended")

// join counts s busy for tenant once more. The first join puts s in
// tenant's group and gives every busy sandbox of the group its equal
// part; it returns the error of s's own weight. A sandbox busy already
// stays in its group, whatever tenant is given.
func (c *cpuShares) join(s *sandbox, tenant string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if s.sharesGone {
		return errSandboxGone
	}
	s.busy++
	if s.busy > 1 {
		return nil
	}
	if c.groups == nil {
		c.groups = map[string][]*sandbox{}
	}
	s.tenant = tenant
	group := append(c.groups[tenant], s)
	c.groups[tenant] = group
	return c.reweight(group, s)
}

// leave undoes one join. The last one takes s out of its group, gives the
// rest of the group their larger parts, and gives s the least weight.
func (c *cpuShares) leave(s *sandbox) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if s.busy == 0 {
		return nil
	}
	s.busy--
	if s.busy > 0 {
		return nil
	}
	c.remove(s)
	return s.cg.weight(weightLeast)
}

// drop takes s out for good, however often it joined: destroyCgroup calls
// it before it removes the cgroup, so that no weight is ever written to a
// removed cgroup, and no join counts a sandbox that has ended.
func (c *cpuShares) drop(s *sandbox) {
	c.mu.Lock()
	defer c.mu.Unlock()
	s.sharesGone = true
	if s.busy > 0 {
		s.busy = 0
		c.remove(s)
	}
}

// remove takes s out of its group and re-weights the rest. c.mu is held.
func (c *cpuShares) remove(s *sandbox) {
	group := slices.DeleteFunc(c.groups[s.tenant], func(m *sandbox) bool { return m == s })
	if len(group) == 0 {
		delete(c.groups, s.tenant)
		return
	}
	c.groups[s.tenant] = group
	// A failed write leaves a sandbox its smaller part until the next
	// change: nothing a run could use to take more.
	_ = c.reweight(group, nil)
}

// reweight gives each of group its part, and returns the error of s's own
// write. c.mu is held.
func (c *cpuShares) reweight(group []*sandbox, s *sandbox) error {
	var err error
	for _, m := range group {
		if werr := m.cg.weight(len(group)); m == s {
			err = werr
		}
	}
	return err
}

// busyIn is how many sandboxes of tenant are busy (for tests).
func (c *cpuShares) busyIn(tenant string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.groups[tenant])
}
