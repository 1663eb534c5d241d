package nsinit

// The filler is the other stage this binary can be re-executed as: a
// short-lived process that writes files of a workspace from inside a
// sandbox's memory cgroup, so that the tmpfs pages it allocates are
// charged to that sandbox and not to the daemon (a page of tmpfs is
// charged to the cgroup of the process that first writes it). It runs on
// the host, in no namespace of the sandbox, and interprets nothing but
// chunk lengths: it is given the open files and their bytes, and reports
// how many it wrote into each.
//
//	parent                                     filler (in the cgroup)
//	  open the files (openat2, beneath the root)
//	  [cgroup v1: open the memory cgroup's
//	   tasks file, passed after the files,
//	   its fd number as argv[1]]
//	  Start() ----- clone [into the cgroup] -->  [v1: write 0 to argv[1]'s
//	  oom_score_adj                                fd: its thread joins]
//	                                             blocks reading stdin
//	  for each file (fd 3, 4, ...) on stdin:
//	    [8-byte length][bytes] ... [0] ----->  copy each chunk to the file;
//	  EOF                                      after its [0]:
//	  <------------ a FillResult JSON line ---   one per file on stdout
//	  wait(filler)                             exit(0) at EOF, or after a
//	                                           failed file's result (the
//	                                           rest are not written)
//
// The bytes come only after the filler is in the cgroup, so every page
// they fill is the sandbox's. Killed (at the memory limit, or with the
// sandbox), it reports nothing more; the parent then says why.

// FillArg0 is the argv[0] that marks a process as a filler.
const FillArg0 = "sandboxd-fill"

// FillFD is the filler's first file to write; the next are FillFD+1, ...
const FillFD = 3

// FillChunk is the most bytes a chunk may announce.
const FillChunk = 1 << 20

// FillResult is a filler's report on one file: the bytes it wrote and,
// when writing failed, the failed call, its errno and its message.
type FillResult struct {
	Written int64  `json:"written"`
	Op      string `json:"op,omitempty"`
	Errno   int    `json:"errno,omitempty"`
	Error   string `json:"error,omitempty"`
}
