package runtimes

import "testing"

// FuzzLoadConfig feeds arbitrary config files through decoding and
// validation: they may be refused, never panic.
func FuzzLoadConfig(f *testing.F) {
	f.Add([]byte(`[{"name": "ruby", "aliases": ["rb"], "extensions": [".rb"], "run": ["/usr/bin/ruby", "{entry}"], "binary": "/usr/bin/ruby"}]`))
	f.Add([]byte(`[null]`))
	f.Add([]byte(`[{"name": "python", "compile": [], "run": ["./{binary}"], "binary": "/usr/bin/python3", "version_regexp": "("}]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		rts, err := decodeConfig(data)
		if err != nil {
			return
		}
		g, err := New(rts...)
		if err != nil {
			return
		}
		for _, rt := range g.All() {
			_ = rt.RunArgv("-x", []string{"{entry}"})
			_ = rt.CompileArgv("x")
			if got, err := g.Lookup(rt.Name); err != nil || got != rt {
				t.Fatalf("Lookup(%q) = %v, %v after New accepted it", rt.Name, got, err)
			}
		}
	})
}
