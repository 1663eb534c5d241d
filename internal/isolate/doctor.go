package isolate

// Check is one line of `sandboxctl doctor`: a guarantee, whether it holds on
// this host, and what to do when it does not.
type Check struct {
	Name string `json:"name"`
	OK   bool   `json:"ok"`
	// Required checks must hold for the process backend to run at all;
	// the others weaken one guarantee, which results then report.
	Required bool   `json:"required"`
	Detail   string `json:"detail"`
	Fix      string `json:"fix,omitempty"`
}
