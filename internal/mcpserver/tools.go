package mcpserver

import (
	"slices"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// ToolInfo is one tool of the server, as a help text lists it.
type ToolInfo struct {
	// Name is the name a model calls it by.
	Name string
	// Summary says in one line what it does (the tool's title).
	Summary string
	// Session is true for the session tools, which New registers only
	// when it has a session manager.
	Session bool
}

// toolList is every tool New registers, in order. New takes each tool's
// name and title from here (see described), so a help text built from
// Tools cannot miss one.
var toolList = []ToolInfo{
	{Name: "run_code", Summary: "Run code in a sandbox"},
	{Name: "list_runtimes", Summary: "List the sandbox's languages"},
	{Name: "create_session", Summary: "Start a persistent Python or JavaScript session", Session: true},
	{Name: "run_in_session", Summary: "Run a cell in a session", Session: true},
	{Name: "upload_file", Summary: "Write a file into a session", Session: true},
	{Name: "download_file", Summary: "Read a file from a session", Session: true},
	{Name: "list_session_files", Summary: "List a session's files", Session: true},
	{Name: "list_sessions", Summary: "List your sessions", Session: true},
	{Name: "close_session", Summary: "Close a session", Session: true},
}

// Tools lists the tools New registers: all of them with a session
// manager, those without Session otherwise.
func Tools() []ToolInfo { return slices.Clone(toolList) }

// described returns t with the name and title toolList gives name. A name
// missing from toolList is a programming error: it panics, so that the
// first test that starts a server finds it.
func described(name string, t *mcp.Tool) *mcp.Tool {
	i := slices.IndexFunc(toolList, func(ti ToolInfo) bool { return ti.Name == name })
	if i < 0 {
		panic("mcpserver: tool " + name + " is not in toolList")
	}
	t.Name, t.Title = toolList[i].Name, toolList[i].Summary
	return t
}
