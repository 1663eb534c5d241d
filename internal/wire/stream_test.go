package wire

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/sandboxd/sandboxd/internal/jsonstream"
	"github.com/sandboxd/sandboxd/internal/run"
)

// TestEventsEncodeAsJSON: events write the bytes json.Marshal writes for
// them, field by field (the shadow types have no EncodeJSON, so Marshal
// takes them by their tags).
func TestEventsEncodeAsJSON(t *testing.T) {
	res := &run.Result{ID: "<r>", Status: run.StatusOK, Stdout: []byte("<\u2028>"), Stderr: []byte{0xff}, WallTime: time.Millisecond}
	cell := &run.CellResult{Session: "s", Cell: 1, Stdout: []byte("&"), Stderr: []byte{}, Result: run.MIMEBundle{"text/plain": "<1>"}}
	detail := &ErrorDetail{Code: "x", Message: "<m>"}
	type shadowEvent Event
	type shadowCell CellEvent
	events := []Event{
		{Type: "stdout", Data: "<\x00>"}, {Type: "stderr", Data: "AAE=", Encoding: "base64"},
		{Type: "result", Result: res}, {Type: "error", Error: detail}, {},
	}
	for _, e := range events {
		check(t, e, shadowEvent(e))
	}
	cells := []CellEvent{
		{Type: "stdout", Data: "\u2029"}, {Type: "display", Display: run.MIMEBundle{"image/png": "iVBOR", "text/plain": "<Figure>"}},
		{Type: "display", Display: run.MIMEBundle{}}, {Type: "result", Result: cell}, {Type: "error", Error: detail},
	}
	for _, e := range cells {
		check(t, e, shadowCell(e))
	}
}

func check(t *testing.T, v jsonstream.Value, shadow any) {
	t.Helper()
	want, err := json.Marshal(shadow)
	if err != nil {
		t.Fatal(err)
	}
	got, err := jsonstream.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}
