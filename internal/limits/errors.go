package limits

import "strings"

// ErrInvalid is the class of every error of this package: a limit that does
// not parse or does not pass Validate. Both *Error and *ParseError match it
// with errors.Is, so a caller maps them to "invalid argument" without looking
// at the message.
var ErrInvalid error = invalidError("invalid limit")

// invalidError is ErrInvalid's type. Its InvalidArgument method is the
// class marker internal/errdefs reads: this package imports nothing
// internal, so it names its class by a method, as containerd's errdefs
// allows.
type invalidError string

func (e invalidError) Error() string { return string(e) }

// InvalidArgument marks the error's class (errdefs.ErrInvalidArgument).
func (invalidError) InvalidArgument() {}

// Error lists every problem Validate found, not just the first, so a client
// fixes its request in one round trip.
type Error struct {
	// Problems has one entry per field that failed, in the order of the
	// fields of Limits. It is never empty.
	Problems []FieldError
}

// Error joins the problems:
// "limits: memory: 8GiB is above the server's ceiling of 4GiB; pids: -1 is negative".
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("limits: ")
	for i, p := range e.Problems {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(p.Error())
	}
	return b.String()
}

// Is reports whether target is ErrInvalid.
func (e *Error) Is(target error) bool { return target == ErrInvalid }

// InvalidArgument marks the error's class (errdefs.ErrInvalidArgument).
func (e *Error) InvalidArgument() {}

// FieldError is one field's problem.
type FieldError struct {
	// Field is the field's JSON name ("memory", "cpu_time").
	Field string `json:"field"`
	// Value is the offending value in human units ("8GiB", "-1").
	Value string `json:"value"`
	// Reason completes the sentence that starts with Value
	// ("is above the server's ceiling of 4GiB").
	Reason string `json:"reason"`
}

// Error returns "field: value reason".
func (f FieldError) Error() string { return f.Field + ": " + f.Value + " " + f.Reason }

// ParseError is a size or duration that does not parse.
type ParseError struct {
	// Kind is what was parsed: "size" or "duration".
	Kind string
	// Input is the text as given (possibly shortened).
	Input string
	// Reason says what is wrong with it.
	Reason string
}

// Error returns `limits: invalid size "12XB": unknown unit "XB" (...)`.
func (e *ParseError) Error() string {
	return "limits: invalid " + e.Kind + " " + quote(e.Input) + ": " + e.Reason
}

// Is reports whether target is ErrInvalid.
func (e *ParseError) Is(target error) bool { return target == ErrInvalid }

// InvalidArgument marks the error's class (errdefs.ErrInvalidArgument).
func (e *ParseError) InvalidArgument() {}
