package wasm

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// ProbeWorker starts one wasm worker as the daemon would (the first
// worker uid, no capabilities, its own memory cgroup under
// DefaultCgroupParent, the cgroup limit of a run of memory bytes), reads
// what the kernel says of it, and kills it. The process must be root and
// have called MaybeRun.
func ProbeWorker(ctx context.Context, memory uint64) (WorkerStatus, error) {
	var st WorkerStatus
	if os.Geteuid() != 0 {
		return st, errors.New("workers are confined only when the runner is root: run as root")
	}
	// A runner of its own, with a compilation cache of its own (removed
	// by Close), as the daemon's would start its workers.
	r, err := New(ctx, Config{Mode: ModeWorker, Workers: 1, NoDiskCache: true})
	if err != nil {
		return st, err
	}
	defer r.Close(context.Background())
	p, ok := r.exec.(*workerPool)
	if !ok {
		return st, errors.New("the runner has no worker pool")
	}
	w, err := p.get(ctx)
	if err != nil {
		return st, err
	}
	defer p.discard(w)
	if _, err := w.limit(memory); err != nil {
		return st, err
	}
	st.PID = w.cmd.Process.Pid
	status, err := readStatus(fmt.Sprintf("/proc/%d/status", st.PID))
	if err != nil {
		return st, err
	}
	st.Uid, st.Gid, st.CapEff, st.CapPrm = status["Uid"], status["Gid"], status["CapEff"], status["CapPrm"]
	st.NoNewPrivs, st.Seccomp = status["NoNewPrivs"], status["Seccomp"]
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", st.PID))
	if err != nil {
		return st, err
	}
	for _, t := range tasks {
		ts, err := readStatus(fmt.Sprintf("/proc/%d/task/%s/status", st.PID, t.Name()))
		if err != nil {
			continue // the thread ended
		}
		st.Threads++
		if ts["Seccomp"] == "2" && ts["NoNewPrivs"] == "1" {
			st.ThreadsFiltered++
		}
	}
	if w.cg == nil {
		return st, errors.New("the worker has no cgroup")
	}
	st.Cgroup = w.cg.dir
	if st.MemoryLimit, err = readCgroupUint(filepath.Join(w.cg.dir, w.cg.f.limit)); err != nil {
		return st, err
	}
	cg, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", st.PID))
	if err != nil {
		return st, err
	}
	st.InCgroup = strings.Contains(string(cg), "/"+filepath.Base(p.cgroups.dir)+"/"+filepath.Base(w.cg.dir)+"\n")
	return st, nil
}

// readStatus reads a /proc status file as key: value.
func readStatus(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	m := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok {
			m[k] = strings.TrimSpace(v)
		}
	}
	return m, sc.Err()
}
