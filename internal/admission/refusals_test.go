package admission

import (
	"fmt"
	"net/netip"
	"testing"
	"time"
)

type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time      { return c.t }
func (c *fakeClock) add(d time.Duration) { c.t = c.t.Add(d) }
func newFakeClock() *fakeClock           { return &fakeClock{t: time.Unix(1_700_000_000, 0)} }
func approx(got, want time.Duration) bool {
	return got > want-time.Millisecond && got < want+time.Millisecond
}
func refusalsAt(c *fakeClock) *Refusals { return NewRefusals(2, 3, c.now) }
func chargeN(f *Refusals, who string, n int) {
	for range n {
		f.Charge(who)
	}
}

// TestRefusalsBurstThenRate: a client may be refused Burst times without
// waiting; then each request waits until one more refusal is allowed, at
// Rate a second; another client is not touched.
func TestRefusalsBurstThenRate(t *testing.T) {
	c := newFakeClock()
	f := refusalsAt(c)
	if d := f.Delay("a"); d != 0 {
		t.Fatalf("a client never refused waits %s", d)
	}
	for i := range 3 {
		if d := f.Delay("a"); d != 0 {
			t.Fatalf("after %d refusals of a burst of 3: wait %s, want none", i, d)
		}
		ranOut := f.Charge("a")
		if want := i == 2; ranOut != want {
			t.Errorf("refusal %d: ran out = %v, want %v", i+1, ranOut, want)
		}
	}
	if d := f.Delay("a"); !approx(d, 500*time.Millisecond) {
		t.Errorf("after the burst: wait %s, want 500ms (one refusal at 2 a second)", d)
	}
	if d := f.Delay("b"); d != 0 {
		t.Errorf("another client waits %s", d)
	}
	c.add(250 * time.Millisecond)
	if d := f.Delay("a"); !approx(d, 250*time.Millisecond) {
		t.Errorf("250ms later: wait %s, want 250ms", d)
	}
	c.add(250 * time.Millisecond)
	if d := f.Delay("a"); d != 0 {
		t.Errorf("after its wait: %s more", d)
	}
	if f.Charge("a") {
		t.Error("a client held at the rate is said to run out again at each refusal")
	}
	c.add(500 * time.Millisecond)
	// Requests already past the check all count: the bucket goes below
	// zero, and the next request waits for all of them.
	chargeN(f, "a", 4)
	if d := f.Delay("a"); !approx(d, 2*time.Second) {
		t.Errorf("four refusals at once at the limit: wait %s, want 2s", d)
	}
	// A client that stops erring has its full burst back, and running
	// out again is news again.
	c.add(time.Hour)
	for i := range 3 {
		if d := f.Delay("a"); d != 0 {
			t.Fatalf("an hour later, refusal %d: wait %s", i, d)
		}
		if ranOut := f.Charge("a"); ranOut != (i == 2) {
			t.Errorf("an hour later, refusal %d: ran out = %v", i+1, ranOut)
		}
	}
}

// TestRefusalsSweep: clients whose buckets are full again are forgotten,
// so the map holds only the clients refused lately.
func TestRefusalsSweep(t *testing.T) {
	c := newFakeClock()
	f := refusalsAt(c)
	for i := range minSweep {
		f.Charge(fmt.Sprint("old", i))
	}
	c.add(2 * time.Second) // 3 refusals at 2 a second: full after 1.5s
	chargeN(f, "new", 3)
	if n := len(f.by); n != 1 {
		t.Errorf("after the sweep: %d clients, want 1", n)
	}
	if d := f.Delay("new"); d == 0 {
		t.Error("the client refused last was forgotten")
	}
}

func TestClientKey(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.7":            "192.0.2.7",
		"::ffff:192.0.2.7":     "192.0.2.7",
		"2001:db8:1:2:3:4:5:6": "2001:db8:1:2::",
		"::1":                  "::1",
	} {
		if got := ClientKey(netip.MustParseAddr(in)).String(); got != want {
			t.Errorf("ClientKey(%s) = %s, want %s", in, got, want)
		}
	}
}
