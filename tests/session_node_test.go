package tests

import (
	"testing"
)

// TestSessionJavaScript: a javascript session on the real daemon keeps
// its state between cells, returns the last expression's value and an
// error's stack, and its files reach the file API.
func TestSessionJavaScript(t *testing.T) {
	requireDaemon(t)
	requireFile(t, "/usr/bin/node")
	d := startDaemon(t, daemonConfig{})
	s := d.createSession(t, map[string]any{"runtime": "javascript"})
	d.okCell(t, s.ID, "const fs = require('fs'); let total = 40")
	if c := d.okCell(t, s.ID, "fs.writeFileSync('out.json', JSON.stringify({total})); total + 2"); c.Result["text/plain"] != "42" {
		t.Errorf("trailing value: %s", c)
	}
	c := d.execCell(t, s.ID, "JSON.parse('{')")
	if c.Status != "error" || c.Error == nil || c.Error.Name != "SyntaxError" || c.State != "idle" {
		t.Errorf("an exception: %s", c)
	}
	resp, body := d.request(t, "GET", "/v1/sessions/"+s.ID+"/files/out.json", nil, nil)
	if resp.StatusCode != 200 || string(body) != `{"total":40}` {
		t.Errorf("GET out.json: %s %q", resp.Status, body)
	}
}
