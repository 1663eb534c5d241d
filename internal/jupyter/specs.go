package jupyter

// spec is a kernelspec: a kind of kernel a client may start, backed by a
// runtime's session kernel.
type spec struct {
	// name is the kernelspec's name, as notebooks record it
	// (metadata.kernelspec.name: "python3" for Python).
	name    string
	runtime string // the sandboxd runtime of its sessions
	display string
	info    languageInfo
	// prelude, if set, is run silently in every new session of the
	// kernel, before the first cell (see pythonPrelude).
	prelude string
}

// languageInfo is kernel_info_reply's language_info.
type languageInfo struct {
	Name              string `json:"name"`
	Version           string `json:"version"`
	Mimetype          string `json:"mimetype"`
	FileExtension     string `json:"file_extension"`
	PygmentsLexer     string `json:"pygments_lexer,omitempty"`
	CodemirrorMode    any    `json:"codemirror_mode,omitempty"`
	NbconvertExporter string `json:"nbconvert_exporter,omitempty"`
}

// specs are the kernels served, the default first. Each is listed only
// where its runtime is installed.
var specs = []spec{
	{
		name: "python3", runtime: "python", display: "Python 3 (sandboxd)",
		info: languageInfo{Name: "python", Mimetype: "text/x-python", FileExtension: ".py", PygmentsLexer: "ipython3",
			CodemirrorMode: map[string]any{"name": "ipython", "version": 3}, NbconvertExporter: "python"},
		prelude: pythonPrelude,
	},
	{
		name: "javascript", runtime: "javascript", display: "JavaScript (Node.js, sandboxd)",
		info: languageInfo{Name: "javascript", Mimetype: "application/javascript", FileExtension: ".js", CodemirrorMode: "javascript"},
	},
	{
		name: "ruby", runtime: "ruby", display: "Ruby (sandboxd)",
		info: languageInfo{Name: "ruby", Mimetype: "application/x-ruby", FileExtension: ".rb", CodemirrorMode: "ruby"},
	},
}

// pythonPrelude makes input() fail with a clear error. A session's kernel
// has no stdin (its cells cannot ask the notebook for a line), and
// without this input() raises an EOFError that says nothing of why. The
// error's name is ipykernel's for a frontend that takes no input.
const pythonPrelude = `def _sandboxd_no_stdin():
    import builtins

    class StdinNotImplementedError(RuntimeError):
        """input() in a sandboxd kernel, which has no stdin."""

    StdinNotImplementedError.__qualname__ = "StdinNotImplementedError"
    StdinNotImplementedError.__module__ = "builtins"

    def input(prompt=""):
        raise StdinNotImplementedError(
            "input() is not supported: a sandboxd kernel runs in a sandbox without stdin, "
            "so it cannot ask the notebook for input; set the value in the cell instead")

    builtins.input = input
_sandboxd_no_stdin()
del _sandboxd_no_stdin
`

// lookupSpec returns the spec called name ("" is the default).
func lookupSpec(name string) (*spec, bool) {
	if name == "" {
		return &specs[0], true
	}
	for i := range specs {
		if specs[i].name == name {
			return &specs[i], true
		}
	}
	return nil, false
}
