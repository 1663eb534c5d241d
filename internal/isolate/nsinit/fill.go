package nsinit

// The filler is the other stage this binary can be re-executed as: a
// short-lived process that copies bytes into a file of a workspace from
// inside a sandbox's memory cgroup, so that the tmpfs pages it allocates
// are charged to that sandbox and not to the daemon (a page of tmpfs is
// charged to the cgroup of the process that first writes it). It runs on
// the host, in no namespace of the sandbox, and parses nothing: it is
// given the open file and the bytes, and reports how many it wrote.
//
//	parent                                     filler (in the cgroup)
//	  open the file (openat2, beneath the root)
//	  Start() ----- clone [into the cgroup] -->  blocks reading stdin
//	  [cgroup v1: write pid to the memory
//	   cgroup's cgroup.procs; oom_score_adj]
//	  the bytes, then EOF, on stdin ---------->  copy stdin to fd 3
//	  <------------- FillResult JSON on stdout   exit(0)
//	  wait(filler)
//
// The bytes come only after the filler is in the cgroup, so every page
// they fill is the sandbox's. Killed (at the memory limit, or with the
// sandbox), it reports nothing; the parent then says why.

// FillArg0 is the argv[0] that marks a process as a filler.
const FillArg0 = "sandboxd-fill"

// FillFD is the filler's file to write (fd 3); stdin carries the bytes.
const FillFD = 3

// FillResult is a filler's report: the bytes it wrote and, when the copy
// failed, the failed call, its errno and its message.
type FillResult struct {
	Written int64  `json:"written"`
	Op      string `json:"op,omitempty"`
	Errno   int    `json:"errno,omitempty"`
	Error   string `json:"error,omitempty"`
}
