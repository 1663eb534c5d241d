package mcpserver

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"strings"

	"github.com/google/jsonschema-go/jsonschema"
	"github.com/sandboxd/sandboxd/internal/runtimes"
)

// limitArg is a limit a model gives as a string ("5s", "1GiB") or as a
// plain number (seconds, bytes), as the HTTP API and the CLI take it:
// models often send a timeout as a number of seconds.
type limitArg string

// UnmarshalJSON takes a JSON string or number.
func (a *limitArg) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		*a = limitArg(s)
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var n json.Number
	if err := dec.Decode(&n); err != nil {
		return errors.New(`want a string such as "5s" or "256MiB", or a number of seconds or bytes`)
	}
	*a = limitArg(n.String())
	return nil
}

// inputSchema is the input schema of a tool taking In, with limitArg
// fields as "string or number".
func inputSchema[In any]() *jsonschema.Schema {
	s, err := jsonschema.For[In](&jsonschema.ForOptions{TypeSchemas: map[reflect.Type]*jsonschema.Schema{
		reflect.TypeFor[limitArg](): {Types: []string{"string", "number"}},
	}})
	if err != nil {
		panic("mcpserver: input schema: " + err.Error())
	}
	return s
}

// describe sets the description of s's property name and returns s.
func describe(s *jsonschema.Schema, name, description string) *jsonschema.Schema {
	s.Properties[name].Description = description
	return s
}

// languages lists reg's runtimes with their aliases, for a model:
// "python (py, python3), javascript (js, node), ...".
func languages(reg *runtimes.Registry) string {
	var out []string
	for _, rt := range reg.All() {
		if len(rt.Aliases) > 0 {
			out = append(out, rt.Name+" ("+strings.Join(rt.Aliases, ", ")+")")
		} else {
			out = append(out, rt.Name)
		}
	}
	return strings.Join(out, ", ")
}

// kernelNames are the runtimes a session can run.
func kernelNames(reg *runtimes.Registry) []string {
	return reg.Names(func(rt *runtimes.Runtime) bool { return rt.Kernel != nil })
}
