package limits

import (
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"
)

// ceiling is a fixed ceiling, independent of the host's CPU count.
func ceiling() Limits {
	c := DefaultCeiling()
	c.CPUs = 8
	return c
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		edit func(*Limits)
		want string // the whole message; "" for no error
	}{
		{"defaults", func(*Limits) {}, ""},
		{"at the ceiling", func(l *Limits) { *l = ceiling() }, ""},
		{"at the floors", func(l *Limits) {
			*l = Limits{Timeout: Duration(time.Millisecond), CPUTime: 1, Memory: 4 * MiB, Pids: 2,
				Output: 1, Tmpfs: 4 * KiB, FileSize: 1, OpenFiles: 16, CPUs: 0.01}
		}, ""},
		{"two problems", func(l *Limits) { l.Memory = 8 * GiB; l.Pids = -1 },
			"limits: memory: 8GiB is above the server's ceiling of 4GiB; pids: -1 is negative"},
		{"zero", func(l *Limits) { l.Output = 0 },
			"limits: output: 0B is not allowed: must be positive"},
		{"all zero", func(l *Limits) { *l = Limits{} },
			"limits: timeout: 0s is not allowed: must be positive; " +
				"cpu_time: 0s is not allowed: must be positive; " +
				"memory: 0B is not allowed: must be positive; " +
				"pids: 0 is not allowed: must be positive; " +
				"output: 0B is not allowed: must be positive; " +
				"tmpfs: 0B is not allowed: must be positive; " +
				"file_size: 0B is not allowed: must be positive; " +
				"open_files: 0 is not allowed: must be positive; " +
				"cpus: 0 is not allowed: must be positive"},
		{"floors", func(l *Limits) {
			l.Timeout = Duration(time.Microsecond)
			l.Memory = 3 * MiB
			l.Pids = 1
			l.Tmpfs = 4095
			l.OpenFiles = 15
			l.CPUs = 0.005
		}, "limits: timeout: 1µs is below the minimum of 1ms; " +
			"memory: 3MiB is below the minimum of 4MiB (a sandbox cannot start with less); " +
			"pids: 1 is below the minimum of 2 (the init stage plus the program); " +
			"tmpfs: 4095B is below the minimum of 4KiB (one page); " +
			"open_files: 15 is below the minimum of 16 (stdio plus what a language runtime opens at start); " +
			"cpus: 0.005 is below the minimum of 0.01 (the kernel's smallest CPU quota)"},
		{"every ceiling", func(l *Limits) {
			c := ceiling()
			*l = Limits{Timeout: c.Timeout + 1, CPUTime: c.CPUTime * 2, Memory: c.Memory + 1,
				Pids: c.Pids + 1, Output: c.Output + 1, Tmpfs: c.Tmpfs + 1, FileSize: c.FileSize + 1,
				OpenFiles: c.OpenFiles + 1, CPUs: c.CPUs + 0.5}
		}, "limits: timeout: 5m0.000000001s is above the server's ceiling of 5m0s; " +
			"cpu_time: 10m0s is above the server's ceiling of 5m0s; " +
			"memory: 4294967297B is above the server's ceiling of 4GiB; " +
			"pids: 1025 is above the server's ceiling of 1024; " +
			"output: 67108865B is above the server's ceiling of 64MiB; " +
			"tmpfs: 1073741825B is above the server's ceiling of 1GiB; " +
			"file_size: 1073741825B is above the server's ceiling of 1GiB; " +
			"open_files: 4097 is above the server's ceiling of 4096; " +
			"cpus: 8.5 is above the server's ceiling of 8"},
		{"negatives", func(l *Limits) {
			l.Timeout, l.Memory, l.OpenFiles, l.CPUs = -1, -MiB, -3, -0.5
		}, "limits: timeout: -1ns is negative; memory: -1MiB is negative; " +
			"open_files: -3 is negative; cpus: -0.5 is negative"},
		{"not finite", func(l *Limits) { l.CPUs = math.NaN() },
			"limits: cpus: NaN is not a finite number"},
		{"infinite", func(l *Limits) { l.CPUs = math.Inf(1) },
			"limits: cpus: +Inf is not a finite number"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := Defaults()
			tt.edit(&l)
			err := l.Validate(ceiling())
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Validate = %v, want nil", err)
				}
				return
			}
			if err == nil || err.Error() != tt.want {
				t.Fatalf("Validate = %v\nwant %s", err, tt.want)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("errors.Is(%v, ErrInvalid) = false", err)
			}
			var e *Error
			if !errors.As(err, &e) || len(e.Problems) != strings.Count(tt.want, ";")+1 {
				t.Errorf("errors.As(*Error) = %#v", err)
			}
		})
	}
}

func TestValidateNoCeiling(t *testing.T) {
	l := Defaults()
	l.Memory, l.Timeout, l.CPUs = 1<<50, Duration(100*time.Hour), 1024
	if err := l.Validate(Limits{}); err != nil {
		t.Errorf("Validate(Limits{}) = %v, want nil: a zero ceiling field means no ceiling", err)
	}
	l.CPUs = 1025
	want := "limits: cpus: 1025 is above the maximum of 1024"
	if err := l.Validate(Limits{}); err == nil || err.Error() != want {
		t.Errorf("Validate = %v, want %s", err, want)
	}
	if err := Defaults().Validate(DefaultCeiling()); err != nil {
		t.Errorf("Defaults().Validate(DefaultCeiling()) = %v", err)
	}
	c := DefaultCeiling()
	c.Pids = -1 // a broken ceiling refuses rather than admits
	if err := Defaults().Validate(c); err == nil {
		t.Error("Validate with a negative ceiling = nil, want an error")
	}
}

func TestErrorWrapped(t *testing.T) {
	err := Limits{}.Validate(Limits{})
	wrapped := errors.Join(errors.New("run 42"), err)
	var e *Error
	if !errors.Is(wrapped, ErrInvalid) || !errors.As(wrapped, &e) || len(e.Problems) != len(fields) {
		t.Errorf("wrapped error %v lost its class or problems", wrapped)
	}
	if errors.Is(errors.New("invalid limit"), ErrInvalid) {
		t.Error("a look-alike error matched ErrInvalid")
	}
}

func TestMerge(t *testing.T) {
	d := Defaults()
	tests := []struct {
		name string
		l    Limits
		want Limits
	}{
		{"empty takes all", Limits{}, d},
		{"full keeps all", ceiling(), ceiling()},
		{"some", Limits{Memory: 512 * MiB, CPUs: 0.5},
			func() Limits { w := d; w.Memory, w.CPUs = 512*MiB, 0.5; return w }()},
		{"negative is set", Limits{Pids: -1},
			func() Limits { w := d; w.Pids = -1; return w }()},
	}
	for _, tt := range tests {
		if got := tt.l.Merge(d); got != tt.want {
			t.Errorf("%s: Merge = %+v, want %+v", tt.name, got, tt.want)
		}
	}
	if got := (Limits{Pids: 3}).Merge(Limits{}); got != (Limits{Pids: 3}) {
		t.Errorf("Merge(Limits{}) = %+v, want unchanged", got)
	}
}

// TestFieldsCoverLimits checks the table against the struct: one rule per
// field, in order, under the field's JSON name, reading that field.
func TestFieldsCoverLimits(t *testing.T) {
	typ := reflect.TypeFor[Limits]()
	if typ.NumField() != len(fields) {
		t.Fatalf("Limits has %d fields, the table %d", typ.NumField(), len(fields))
	}
	for i := range typ.NumField() {
		sf := typ.Field(i)
		name, _, _ := strings.Cut(sf.Tag.Get("json"), ",")
		l := Defaults()
		if reflect.ValueOf(l).Field(i).IsZero() {
			t.Errorf("Defaults().%s is zero", sf.Name)
		}
		if reflect.ValueOf(DefaultCeiling()).Field(i).IsZero() {
			t.Errorf("DefaultCeiling().%s is zero", sf.Name)
		}
		v := reflect.ValueOf(&l).Elem().Field(i)
		if v.CanFloat() {
			v.SetFloat(-1)
		} else {
			v.SetInt(-1)
		}
		var e *Error
		if err := l.Validate(Limits{}); !errors.As(err, &e) || len(e.Problems) != 1 ||
			e.Problems[0].Field != name || e.Problems[0].Reason != "is negative" {
			t.Errorf("Limits.%s = -1: Validate = %v, want one problem for %q", sf.Name, err, name)
		}
		zero := Defaults()
		reflect.ValueOf(&zero).Elem().Field(i).SetZero()
		if zero.Merge(Defaults()) != Defaults() {
			t.Errorf("Merge does not fill Limits.%s", sf.Name)
		}
	}
}

// TestValidateFor: the owner of the ceiling words a value above it; the
// other problems read the same whoever the owner.
func TestValidateFor(t *testing.T) {
	l := Defaults()
	l.Memory, l.Pids = 8*GiB, -1
	for _, tt := range []struct {
		owner, want string
	}{
		{"", "limits: memory: 8GiB is above the server's ceiling of 4GiB; pids: -1 is negative"},
		{"sandboxctl", "limits: memory: 8GiB is above the ceiling of 4GiB, the most sandboxctl allows; pids: -1 is negative"},
	} {
		err := l.ValidateFor(ceiling(), tt.owner)
		if err == nil || err.Error() != tt.want {
			t.Errorf("ValidateFor(%q) = %v\nwant %s", tt.owner, err, tt.want)
		}
	}
	if a, b := l.Validate(ceiling()), l.ValidateFor(ceiling(), ""); a.Error() != b.Error() {
		t.Errorf("Validate = %v, ValidateFor with no owner = %v", a, b)
	}
}
