package wire

import "github.com/sandboxd/sandboxd/internal/jsonstream"

// The events that end a stream carry a whole result: they write
// themselves through jsonstream, byte for byte as encoding/json writes
// them, so that the result's output is never held encoded.

// EncodeJSON writes the event as json.Marshal does, streaming its result.
func (e Event) EncodeJSON(w *jsonstream.Writer) {
	w.BeginObject()
	eventHead(w, e.Type, e.Data, e.Encoding)
	if e.Result != nil {
		w.Key("result")
		e.Result.EncodeJSON(w)
	}
	eventError(w, e.Error)
	w.EndObject()
}

// EncodeJSON writes the event as json.Marshal does, streaming its display
// and its result.
func (e CellEvent) EncodeJSON(w *jsonstream.Writer) {
	w.BeginObject()
	eventHead(w, e.Type, e.Data, e.Encoding)
	if len(e.Display) > 0 {
		w.Key("display")
		e.Display.EncodeJSON(w)
	}
	if e.Result != nil {
		w.Key("result")
		e.Result.EncodeJSON(w)
	}
	eventError(w, e.Error)
	w.EndObject()
}

// eventHead writes the fields both kinds of event begin with.
func eventHead(w *jsonstream.Writer, typ, data, encoding string) {
	w.Key("type")
	w.String(typ)
	if data != "" {
		w.Key("data")
		w.String(data)
	}
	if encoding != "" {
		w.Key("encoding")
		w.String(encoding)
	}
}

func eventError(w *jsonstream.Writer, d *ErrorDetail) {
	if d != nil {
		w.Key("error")
		w.Value(d)
	}
}
