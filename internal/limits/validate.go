package limits

import (
	"math"
	"strconv"
	"time"
)

// fields is the table of every field of Limits, in order: its JSON name and
// its checks. Validate and Merge walk it, so a new field is one new line
// here (TestFieldsCoverLimits fails until it is added).
var fields = []field{
	rule[Duration]{name: "timeout", get: func(l *Limits) *Duration { return &l.Timeout },
		format: Duration.String, min: Duration(time.Millisecond)},
	rule[Duration]{name: "cpu_time", get: func(l *Limits) *Duration { return &l.CPUTime },
		format: Duration.String},
	rule[Bytes]{name: "memory", get: func(l *Limits) *Bytes { return &l.Memory },
		format: Bytes.String, min: 4 * MiB, why: "a sandbox cannot start with less"},
	rule[int]{name: "pids", get: func(l *Limits) *int { return &l.Pids },
		format: strconv.Itoa, min: 2, why: "the init stage plus the program"},
	rule[Bytes]{name: "output", get: func(l *Limits) *Bytes { return &l.Output },
		format: Bytes.String},
	rule[Bytes]{name: "tmpfs", get: func(l *Limits) *Bytes { return &l.Tmpfs },
		format: Bytes.String, min: 4 * KiB, why: "one page"},
	rule[Bytes]{name: "file_size", get: func(l *Limits) *Bytes { return &l.FileSize },
		format: Bytes.String},
	rule[int]{name: "open_files", get: func(l *Limits) *int { return &l.OpenFiles },
		format: strconv.Itoa, min: 16, why: "stdio plus what a language runtime opens at start"},
	rule[float64]{name: "cpus", get: func(l *Limits) *float64 { return &l.CPUs },
		format: formatFloat, min: 0.01, max: 1024, why: "the kernel's smallest CPU quota"},
}

// Validate checks l against ceiling and returns every problem at once as an
// *Error, or nil. Call it after Merge: each field must be positive, no field
// may be above the field of ceiling (unless that is zero: no ceiling; a
// negative ceiling refuses every value), and each must clear a floor below
// which no run can work:
//
//	timeout     ≥ 1ms
//	memory      ≥ 4MiB   a sandbox cannot start with less
//	pids        ≥ 2      the init stage plus the program
//	tmpfs       ≥ 4KiB   one page
//	open_files  ≥ 16
//	cpus        ≥ 0.01 and ≤ 1024, finite
//
// The ceiling is taken to be a server's: a value above it "is above the
// server's ceiling of 4GiB". ValidateFor names another owner.
func (l Limits) Validate(ceiling Limits) error { return l.ValidateFor(ceiling, "") }

// ValidateFor is Validate against a ceiling set by owner, which words the
// problem of a value above it: "" for a server ("is above the server's
// ceiling of 4GiB"), else a program that runs sandboxes itself ("is above
// the ceiling of 4GiB, the most sandboxctl allows").
func (l Limits) ValidateFor(ceiling Limits, owner string) error {
	var problems []FieldError
	for _, f := range fields {
		if p, bad := f.check(l, ceiling, owner); bad {
			problems = append(problems, p)
		}
	}
	if problems != nil {
		return &Error{Problems: problems}
	}
	return nil
}

// field is one row of the table: a rule of some number type.
type field interface {
	merge(l *Limits, d Limits)
	check(l, ceiling Limits, owner string) (FieldError, bool)
}

// rule is the checks of one field of type T.
type rule[T ~int | ~int64 | ~float64] struct {
	name   string           // JSON name
	get    func(*Limits) *T // the field in a Limits
	format func(T) string   // human form, as in the JSON
	min    T                // floor; zero: any positive value
	max    T                // absolute maximum, whatever the ceiling; zero: none
	why    string           // why the floor, for the error
}

func (r rule[T]) merge(l *Limits, d Limits) {
	if p := r.get(l); *p == 0 {
		*p = *r.get(&d)
	}
}

func (r rule[T]) check(l, ceiling Limits, owner string) (FieldError, bool) {
	v, c := *r.get(&l), *r.get(&ceiling)
	var reason string
	switch f := float64(v); {
	case math.IsNaN(f) || math.IsInf(f, 0):
		reason = "is not a finite number"
	case v < 0:
		reason = "is negative"
	case v == 0:
		reason = "is not allowed: must be positive"
	case v < r.min:
		reason = "is below the minimum of " + r.format(r.min)
		if r.why != "" {
			reason += " (" + r.why + ")"
		}
	case c != 0 && v > c:
		reason = aboveCeiling(r.format(c), owner)
	case r.max != 0 && v > r.max:
		reason = "is above the maximum of " + r.format(r.max)
	default:
		return FieldError{}, false
	}
	return FieldError{Field: r.name, Value: r.format(v), Reason: reason}, true
}

// aboveCeiling is the reason of a value above ceiling c, set by owner
// (see ValidateFor).
func aboveCeiling(c, owner string) string {
	if owner == "" {
		return "is above the server's ceiling of " + c
	}
	return "is above the ceiling of " + c + ", the most " + owner + " allows"
}

func formatFloat(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) }
