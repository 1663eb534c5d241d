// Package workspace holds the rules of a run's workspace that both backends
// share and that front ends check requests with: which names a client may
// give (CleanName, CheckFiles), which files a finished run produced
// (CollectFiles), what a listing says of an entry (FileInfo), how many
// inodes a workspace of a size gets (Inodes), and the errors of workspace
// file operations. It knows no backend: the process backend opens entries
// with openat2, the wasm backend with os.Root, and both hand CollectFiles
// an Opener.
package workspace

// Dir is where the workspace appears inside a sandbox, on both backends,
// and the working directory of the program.
const Dir = "/workspace"

// ReservedDir is the workspace directory the sandbox keeps for itself (a
// compile step's output, a session's kernel): clients cannot name it and
// CollectFiles and listings never return it.
const ReservedDir = ".sandboxd"

// Inodes is the inode cap of a run's tmpfs (or workspace) of size bytes:
// one per 8 KiB, at least 1024. Without it a tmpfs allows half of the
// host's RAM pages in inodes, and a run could fill the kernel with empty
// files and directories that its size cap never sees.
func Inodes(size int64) int64 {
	return max(size/(8<<10), 1024)
}

// CollectLimits cap what CollectFiles returns.
type CollectLimits struct {
	MaxFiles    int
	MaxFileSize int64
	MaxTotal    int64
}

// DefaultCollectLimits are the caps on produced files unless configured:
// 64 files, 8 MiB each, 32 MiB in all.
var DefaultCollectLimits = CollectLimits{MaxFiles: 64, MaxFileSize: 8 << 20, MaxTotal: 32 << 20}
