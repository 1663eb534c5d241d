package nsinit

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
)

// UserLimit is one per-user-namespace ucount limit, a file of
// /proc/sys/user. Set in the run's user namespace, it caps what each uid of
// the run may hold; what the run holds is also charged, a level up, to the
// namespace's owner, the run's own host uid (see the isolate package), so
// it never counts against host root or another run.
type UserLimit struct {
	Name  string
	Value int
}

// UserLimits are set in every sandbox's user namespace. Namespaces of any
// kind are 0 (seccomp refuses to create them too): only init, as the
// namespace's root, makes its time and cgroup namespaces, before the
// limits are written. inotify keeps the kernel's default instances, with
// watches at the classic 8192 (each pins an inode and about 1 KiB of
// kernel memory that no cgroup is charged for); fanotify likewise.
var UserLimits = []UserLimit{
	{"max_user_namespaces", 0},
	{"max_mnt_namespaces", 0},
	{"max_pid_namespaces", 0},
	{"max_net_namespaces", 0},
	{"max_ipc_namespaces", 0},
	{"max_uts_namespaces", 0},
	{"max_cgroup_namespaces", 0},
	{"max_time_namespaces", 0},
	{"max_inotify_instances", 128},
	{"max_inotify_watches", 8192},
	{"max_fanotify_groups", 16},
	{"max_fanotify_marks", 8192},
}

// userLimitFile is a limit's file, opened for writing while the run's
// /proc/sys is still writable.
type userLimitFile struct {
	f     *os.File
	value int
}

// openUserLimits opens the files of UserLimits under the run's procfs at
// procDir. A limit this kernel does not have is skipped.
func openUserLimits(procDir string) ([]userLimitFile, error) {
	var files []userLimitFile
	for _, l := range UserLimits {
		f, err := os.OpenFile(filepath.Join(procDir, "sys/user", l.Name), os.O_WRONLY, 0)
		if os.IsNotExist(err) {
			continue
		}
		if err != nil {
			closeUserLimits(files)
			return nil, step("open user."+l.Name, err)
		}
		files = append(files, userLimitFile{f: f, value: l.Value})
	}
	return files, nil
}

// applyUserLimits writes the limits and closes their files. init calls it
// after making its own namespaces, which the zero namespace limits would
// refuse.
func applyUserLimits(files []userLimitFile) error {
	defer closeUserLimits(files)
	for _, l := range files {
		if _, err := l.f.WriteString(strconv.Itoa(l.value)); err != nil {
			return step("set "+filepath.Base(l.f.Name()), fmt.Errorf("to %d: %w", l.value, err))
		}
	}
	return nil
}

func closeUserLimits(files []userLimitFile) {
	for _, l := range files {
		l.f.Close()
	}
}
