package isolate

import (
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/sandboxd/sandboxd/internal/isolate/nsinit"
	"github.com/sandboxd/sandboxd/internal/limits"
)

// Each run has a small tmpfs of files generated for its sandboxes, under its
// run directory: the device nodes of their /dev, and each sandbox's /proc
// files. Binds from it show in a sandbox's mountinfo as "sandboxd-gen",
// where binds from the host's /dev showed its devtmpfs (sized at half the
// host's RAM) and binds from the run directory its path on the host.
//
// The host's /proc/meminfo, loadavg, uptime and boot_id tell a tenant about
// the machine and the tenants next to it. A sandbox sees files generated for
// it instead (nsinit masks the rest outright): programs that read them still
// find the fields they parse. They are generated once per sandbox and are
// not live: a meminfo that followed the cgroup's usage, as LXCFS's does,
// needs a FUSE server.

// genDir is the run directory's tmpfs of generated files; genDevDir is the
// directory of device nodes in it.
const (
	genDir    = "gen"
	genDevDir = "dev"
)

// mountGenFiles mounts the run's tmpfs of generated files under the run
// directory dir (in the runs' mount namespace, mountns_linux.go) and makes
// the device nodes in it. It is the one mount of the run without nodev,
// for those nodes; only host root can make a node there. 0711: init, as
// the sandbox's setup uid, binds the files by path; nothing inside can
// list them.
func mountGenFiles(m *runMounts, dir string) (string, error) {
	gen := filepath.Join(dir, genDir)
	if err := os.Mkdir(gen, 0o700); err != nil {
		return "", fmt.Errorf("create the run's generated files dir: %w", err)
	}
	if err := m.do(func() error {
		return unix.Mount("sandboxd-gen", gen, "tmpfs", unix.MS_NOSUID|unix.MS_NOEXEC, "size=256k,nr_inodes=256,mode=0711")
	}); err != nil {
		return "", fmt.Errorf("mount the run's generated files tmpfs: %w", &os.PathError{Op: "mount", Path: gen, Err: err})
	}
	if err := makeDevices(m.path(filepath.Join(gen, genDevDir))); err != nil {
		return "", err
	}
	return gen, nil
}

// makeDevices makes nsinit.Devices in dir as the host has them (a user
// namespace cannot mknod; init binds these).
func makeDevices(dir string) error {
	if err := os.Mkdir(dir, 0o711); err != nil {
		return fmt.Errorf("create the run's device dir: %w", err)
	}
	for _, d := range nsinit.Devices {
		var st unix.Stat_t
		if err := unix.Stat("/dev/"+d, &st); err != nil {
			return fmt.Errorf("stat the host's /dev/%s: %w", d, err)
		}
		if st.Mode&unix.S_IFMT != unix.S_IFCHR {
			return fmt.Errorf("the host's /dev/%s is not a character device", d)
		}
		p := filepath.Join(dir, d)
		if err := unix.Mknod(p, unix.S_IFCHR|0o666, int(st.Rdev)); err != nil {
			return fmt.Errorf("make device %s: %w", p, err)
		}
		// mknod's mode is cut by the umask.
		if err := unix.Chmod(p, 0o666); err != nil {
			return fmt.Errorf("chmod device %s: %w", p, err)
		}
	}
	return nil
}

// procFileNames maps each generated file to the /proc path it covers.
var procFileNames = []struct{ name, path string }{
	{"meminfo", "meminfo"},
	{"loadavg", "loadavg"},
	{"uptime", "uptime"},
	{"boot_id", "sys/kernel/random/boot_id"},
}

// writeProcFiles generates the sandbox's /proc files for limits l and
// returns them as init shows them.
func (s *sandbox) writeProcFiles(l limits.Limits) ([]nsinit.ProcFile, error) {
	dir := s.procDir
	if err := os.Mkdir(s.r.mounts.path(dir), 0o711); err != nil {
		return nil, fmt.Errorf("create the sandbox's /proc files: %w", err)
	}
	content := map[string]string{
		"meminfo": meminfo(l.Memory),
		// No load, no uptime: the host's figures are not the sandbox's.
		"loadavg": "0.00 0.00 0.00 1/1 1\n",
		"uptime":  "0.00 0.00\n",
		"boot_id": newBootID(),
	}
	var files []nsinit.ProcFile
	for _, f := range procFileNames {
		src := filepath.Join(dir, f.name)
		if err := os.WriteFile(s.r.mounts.path(src), []byte(content[f.name]), 0o644); err != nil {
			return nil, fmt.Errorf("write the sandbox's /proc/%s: %w", f.path, err)
		}
		files = append(files, nsinit.ProcFile{Source: src, Path: f.path})
	}
	return files, nil
}

// updateMeminfo rewrites the sandbox's meminfo in place for new limits (a
// warm sandbox taking a run's): the bind inside shows the same inode.
func (s *sandbox) updateMeminfo(l limits.Limits) error {
	if err := os.WriteFile(s.r.mounts.path(filepath.Join(s.procDir, "meminfo")), []byte(meminfo(l.Memory)), 0o644); err != nil {
		return fmt.Errorf("update the sandbox's /proc/meminfo: %w", err)
	}
	return nil
}

// removeProcFiles removes the sandbox's generated files; the binds inside
// went with its mount namespace.
func (s *sandbox) removeProcFiles() {
	if err := os.RemoveAll(s.r.mounts.path(s.procDir)); err != nil {
		s.r.log.Error("remove the sandbox's /proc files", "run", s.ws.id, "err", err)
	}
}

// meminfo is a /proc/meminfo of a machine whose memory is the run's limit,
// all of it free and no swap, as LXCFS shows a container: programs that
// size themselves from MemTotal or MemAvailable size themselves to the
// run. The fields are the ones free(1), psutil and the JVM parse.
func meminfo(memory limits.Bytes) string {
	kb := int64(memory) / 1024
	var b []byte
	line := func(k string, v int64) { b = fmt.Appendf(b, "%-16s%8d kB\n", k+":", v) }
	line("MemTotal", kb)
	line("MemFree", kb)
	line("MemAvailable", kb)
	for _, k := range []string{"Buffers", "Cached", "SwapCached", "Active", "Inactive", "Active(anon)", "Inactive(anon)", "Active(file)", "Inactive(file)", "Unevictable", "Mlocked"} {
		line(k, 0)
	}
	line("SwapTotal", 0)
	line("SwapFree", 0)
	for _, k := range []string{"Dirty", "Writeback", "AnonPages", "Mapped", "Shmem", "KReclaimable", "Slab", "SReclaimable", "SUnreclaim", "KernelStack", "PageTables"} {
		line(k, 0)
	}
	line("CommitLimit", kb)
	line("Committed_AS", 0)
	return string(b)
}

// newBootID is a random boot id of the kernel's format (a version 4 UUID):
// one per sandbox, so no two tenants, and no tenant and the host, can tell
// they share a boot.
func newBootID() string {
	var u [16]byte
	_, _ = rand.Read(u[:])
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x\n", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16])
}
