package api

import (
	"strings"
	"testing"
)

// FuzzDecodeRunRequest: whatever a client sends, decoding and turning it
// into a spec never panics, and a request that passes is one the executor
// checked.
func FuzzDecodeRunRequest(f *testing.F) {
	for _, s := range []string{
		`{"runtime":"python","code":"print(1)"}`,
		`{"files":[{"name":"a.py","content":"AAE=","encoding":"base64"}],"limits":{"memory":"1GiB","timeout":1.5}}`,
		`{"runtime":"c","code":"int main(){}","compile_limits":{"timeout":"20s"}}`,
		`{"files":[{"name":"../x","content":""}]}`,
		`{"limits":{"pids":-1}}`, `[]`, `null`, `{"env":{"A":"B"}}`,
		`{"runtime":"python","code":"x"}]`, `{"runtime":"python","code":"x"}}`,
	} {
		f.Add(s)
	}
	x := newFake()
	f.Fuzz(func(t *testing.T, body string) {
		req, err := DecodeRunRequest(strings.NewReader(body))
		if err != nil {
			if classOf(err) != ErrInvalidArgument && classOf(err) != ErrTooLarge {
				t.Fatalf("decode error of class %v: %v", classOf(err), err)
			}
			return
		}
		spec, err := SpecOf(req, x)
		if err != nil {
			if httpStatus(classOf(err)) != 400 {
				t.Fatalf("spec error maps to %d: %v", httpStatus(classOf(err)), err)
			}
			return
		}
		if len(spec.Files) == 0 {
			t.Fatal("a spec without files passed")
		}
	})
}
