package errdefs

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"testing"
)

type leafInvalid struct{}

func (leafInvalid) Error() string    { return "bad limit" }
func (leafInvalid) InvalidArgument() {}

func TestClassOf(t *testing.T) {
	errGone := New(ErrNotFound, "session not found")
	errFull := New(ErrNoSpace, "workspace full")
	for _, tc := range []struct {
		err  error
		want *Class
	}{
		{errGone, ErrNotFound},
		{fmt.Errorf("get %q: %w", "x", errGone), ErrNotFound},
		{fmt.Errorf("put: %w", errFull), ErrNoSpace},
		{fmt.Errorf("spec: %w", leafInvalid{}), ErrInvalidArgument},
		{fmt.Errorf("wait: %w", context.Canceled), ErrUnavailable},
		{ErrExhausted, ErrExhausted},
		{fmt.Errorf("%w: cross-site", ErrForbidden), ErrForbidden},
		{fmt.Errorf("%w: text/plain", ErrUnsupportedMediaType), ErrUnsupportedMediaType},
		{errors.New("disk on fire"), ErrInternal},
		{nil, ErrInternal},
		{Wrap(ErrInvalidArgument, errors.New("no files")), ErrInvalidArgument},
		// The first class an error got is the one it keeps.
		{Wrap(ErrInvalidArgument, errGone), ErrNotFound},
		{errors.Join(errGone, errFull), ErrNotFound},
	} {
		if got := ClassOf(tc.err); got != tc.want {
			t.Errorf("ClassOf(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
	if Wrap(ErrConflict, nil) != nil {
		t.Error("Wrap(nil) is not nil")
	}
	if w := Wrap(ErrConflict, errors.New("x")); w.Error() != "x" || !errors.Is(w, ErrConflict) {
		t.Errorf("Wrap changed the message or lost the class: %v", w)
	}
}

func TestHTTPStatusCoversEveryClass(t *testing.T) {
	seen := map[int]*Class{}
	for _, c := range Classes {
		s := HTTPStatus(c)
		if s < 400 || s > 599 {
			t.Errorf("%s: status %d", c.Code(), s)
		}
		if o, dup := seen[s]; dup {
			t.Errorf("%s and %s share status %d", o.Code(), c.Code(), s)
		}
		seen[s] = c
	}
	for c, want := range map[*Class]int{ErrForbidden: http.StatusForbidden, ErrUnsupportedMediaType: http.StatusUnsupportedMediaType} {
		if got := HTTPStatus(c); got != want {
			t.Errorf("%s: status %d, want %d", c.Code(), got, want)
		}
	}
	if HTTPStatus(ErrInternal) != http.StatusInternalServerError {
		t.Error("internal is not 500")
	}
}
