package runtimes

import (
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"

	"github.com/sandboxd/sandboxd/internal/errdefs"
	"github.com/sandboxd/sandboxd/internal/run"
	"github.com/sandboxd/sandboxd/internal/workspace"
)

// BaseEnv is every sandboxed program's environment before its runtime's
// and its caller's additions: nothing of the host's.
var BaseEnv = []string{
	"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
	"HOME=" + workspace.Dir,
	"USER=sandbox",
	"LOGNAME=sandbox",
	"LANG=C.UTF-8",
	"TMPDIR=/tmp",
}

// ErrBadEnv: a caller's environment variable cannot be passed on.
var ErrBadEnv = errdefs.New(errdefs.ErrInvalidArgument, "bad environment variable")

// ThreadEnv sizes the thread pools of numerical libraries (OpenBLAS,
// OpenMP, MKL, numexpr) to the CPUs a program may use: they size
// themselves to the host's CPUs otherwise, which on a large host means
// more threads than the pids limit allows and far more than the CPU quota
// can run. A program's own setting wins (Environ puts the caller's last).
func ThreadEnv(cpus float64) []string {
	n := strconv.Itoa(max(1, int(math.Ceil(cpus))))
	return []string{"OMP_NUM_THREADS=" + n, "OPENBLAS_NUM_THREADS=" + n, "MKL_NUM_THREADS=" + n, "NUMEXPR_NUM_THREADS=" + n}
}

// Environ is the whole environment of a program of r that may use cpus
// CPUs: BaseEnv, r's entries, the thread sizing, then the caller's, each
// name once.
func (r *Runtime) Environ(cpus float64, user map[string]string) ([]string, error) {
	return BuildEnv(append(append([]string{}, r.Env...), ThreadEnv(cpus)...), user)
}

// BuildEnv is BaseEnv, then extra, then the caller's variables, each name
// once. A bad caller entry is ErrBadEnv.
func BuildEnv(extra []string, user map[string]string) ([]string, error) {
	return mergeEnv(append(append([]string{}, BaseEnv...), extra...), user)
}

// UserEnv is the caller's variables alone, sorted by name.
func UserEnv(user map[string]string) ([]string, error) { return mergeEnv(nil, user) }

func mergeEnv(env []string, user map[string]string) ([]string, error) {
	keys := make([]string, 0, len(user))
	for k, v := range user {
		if k == "" || strings.ContainsAny(k, "=\x00") || strings.ContainsRune(v, 0) {
			return nil, fmt.Errorf("%w %s: names must be non-empty without '=' or NUL, values without NUL", ErrBadEnv, run.Quote(k, run.MaxName))
		}
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		// Later entries win for programs that read the last one; drop the
		// earlier so every program sees one value.
		env = dropKey(env, k)
		env = append(env, k+"="+user[k])
	}
	if env == nil {
		env = []string{}
	}
	return env, nil
}

func dropKey(env []string, key string) []string {
	out := env[:0]
	for _, kv := range env {
		if !strings.HasPrefix(kv, key+"=") {
			out = append(out, kv)
		}
	}
	return out
}
