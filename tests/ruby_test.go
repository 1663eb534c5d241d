package tests

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
)

// TestRunRuby: a .rb file runs with Debian's ruby in the sandbox: its
// args, stdin, exit code and output arrive as for any runtime, the file
// it writes comes back, and nothing else lands in the workspace (no gem
// or cache directories).
func TestRunRuby(t *testing.T) {
	requireSandbox(t)
	requireFile(t, "/usr/bin/ruby")
	r, code := runJSON(t, runSpec{name: "hello.rb", code: `puts "hello, #{RUBY_ENGINE}"`})
	wantStatus(t, r, code, "ok", 0)
	if string(r.Stdout) != "hello, ruby\n" || len(r.Stderr) != 0 || r.Runtime != "ruby" || !strings.HasPrefix(r.Version, "3.") {
		t.Errorf("stdout %q stderr %q runtime %q version %q", r.Stdout, r.Stderr, r.Runtime, r.Version)
	}

	args := []string{"with space", "$(id)", "", "--version", "ünïcødé"}
	r, code = runJSON(t, runSpec{
		name:  "main.rb",
		code:  "require 'json'\nputs JSON.generate(ARGV)\nputs $stdin.read.upcase\nFile.write('out.txt', 'made')\nwarn 'err'\nexit 3\n",
		args:  args,
		stdin: []byte("abc"),
	})
	wantStatus(t, r, code, "exited", 3)
	line, rest, _ := strings.Cut(string(r.Stdout), "\n")
	var got []string
	if err := json.Unmarshal([]byte(line), &got); err != nil || !slices.Equal(got, args) {
		t.Errorf("ARGV = %s (%v), want %q", line, err, args)
	}
	if rest != "ABC\n" || string(r.Stderr) != "err\n" {
		t.Errorf("stdout after ARGV %q, stderr %q", rest, r.Stderr)
	}
	if names := fileNames(r); len(names) != 1 || r.file("out.txt") == nil || string(r.file("out.txt").Content) != "made" {
		t.Errorf("files %v, want out.txt alone", names)
	}

	r, code = runJSON(t, runSpec{name: "boom.rb", code: "def boom = nil.upcase\nboom\n"})
	wantStatus(t, r, code, "exited", 1)
	if !strings.Contains(string(r.Stderr), "boom.rb:1:in `boom': undefined method `upcase' for nil") {
		t.Errorf("stderr %q, want ruby's own report of the exception", r.Stderr)
	}
}

// TestAPIRunRuby: the API runs ruby by name from code alone.
func TestAPIRunRuby(t *testing.T) {
	requireDaemon(t)
	requireFile(t, "/usr/bin/ruby")
	d := startDaemon(t, daemonConfig{})
	r := d.run(t, map[string]any{"runtime": "ruby", "code": "puts 6*7"})
	if r.Status != "ok" || string(r.Stdout) != "42\n" || r.Runtime != "ruby" {
		t.Errorf("status %s stdout %q runtime %q stderr %q", r.Status, r.Stdout, r.Runtime, r.Stderr)
	}
}

// TestSessionRuby: a ruby session on the real daemon keeps its state
// between cells, returns the value's inspect and an exception's class,
// and its files reach the file API.
func TestSessionRuby(t *testing.T) {
	requireDaemon(t)
	requireFile(t, "/usr/bin/ruby")
	d := startDaemon(t, daemonConfig{})
	s := d.createSession(t, map[string]any{"runtime": "ruby"})
	d.okCell(t, s.ID, "require 'json'\ntotal = 40")
	if c := d.okCell(t, s.ID, "File.write('out.json', JSON.generate(total: total)); total + 2"); c.Result["text/plain"] != "42" {
		t.Errorf("trailing value: %s", c)
	}
	c := d.execCell(t, s.ID, "JSON.parse('{')")
	if c.Status != "error" || c.Error == nil || c.Error.Name != "JSON::ParserError" || c.State != "idle" {
		t.Errorf("an exception: %s", c)
	}
	resp, body := d.request(t, "GET", "/v1/sessions/"+s.ID+"/files/out.json", nil, nil)
	if resp.StatusCode != 200 || string(body) != `{"total":40}` {
		t.Errorf("GET out.json: %s %q", resp.Status, body)
	}
}
