package mcpserver

import (
	"slices"
	"strings"
	"testing"

	"github.com/sandboxd/sandboxd/internal/session"
)

// TestToolsAreRegistered: Tools lists exactly the tools a client sees, in
// order, with their titles, with and without sessions.
func TestToolsAreRegistered(t *testing.T) {
	m := session.NewManager(t.Context(), session.Config{Replica: "test"})
	t.Cleanup(func() { m.Close() })
	for _, tc := range []struct {
		name     string
		sessions *session.Manager
	}{
		{"without sessions", nil},
		{"with sessions", m},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, err := connectSessions(t, nil, tc.sessions).ListTools(t.Context(), nil)
			if err != nil {
				t.Fatal(err)
			}
			var got, want []ToolInfo
			for _, tool := range res.Tools {
				got = append(got, ToolInfo{Name: tool.Name, Summary: tool.Title})
			}
			for _, ti := range Tools() {
				if !ti.Session || tc.sessions != nil {
					want = append(want, ToolInfo{Name: ti.Name, Summary: ti.Summary})
				}
			}
			// The client lists them by name.
			slices.SortFunc(want, func(a, b ToolInfo) int { return strings.Compare(a.Name, b.Name) })
			slices.SortFunc(got, func(a, b ToolInfo) int { return strings.Compare(a.Name, b.Name) })
			if !slices.Equal(got, want) {
				t.Errorf("registered tools\n%v\nTools()\n%v", got, want)
			}
		})
	}
}

func TestDescribedPanicsOnUnlisted(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("described accepted a tool missing from toolList")
		}
	}()
	described("not_a_tool", nil)
}
