package e2b

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"

	"github.com/sandboxd/sandboxd/internal/run"
	"github.com/sandboxd/sandboxd/internal/session"
)

// runCode's envs (env_vars) hold for that one execution: a hidden cell
// before it sets them in the kernel's process environment (what the
// cell's code and its subprocesses see), keeping the values they replace,
// and one after it puts those back. The variables go in as base64 JSON,
// never as code. The hidden cells count as executions of the kernel.

// envCells are the cells that set env in a kernel of runtime rt and put
// it back; ok is false for a runtime without them.
func envCells(rt string, env map[string]string) (set, restore string, ok bool) {
	b, _ := json.Marshal(env)
	arg := base64.StdEncoding.EncodeToString(b)
	switch rt {
	case "python":
		return fmt.Sprintf(`(lambda os, b, e: (setattr(b, "_sandboxd_e2b_env", {k: os.environ.get(k) for k in e}), os.environ.update(e), None)[-1])(__import__("os"), __import__("builtins"), __import__("json").loads(__import__("base64").b64decode(%q)))`, arg),
			`(lambda os, b: ([os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v) for k, v in b.__dict__.pop("_sandboxd_e2b_env", {}).items()], None)[-1])(__import__("os"), __import__("builtins"))`,
			true
	case "javascript":
		return fmt.Sprintf(`void (() => { const e = JSON.parse(Buffer.from(%q, "base64").toString()); globalThis.__sandboxd_e2b_env = {}; for (const [k, v] of Object.entries(e)) { globalThis.__sandboxd_e2b_env[k] = process.env[k]; process.env[k] = v } })()`, arg),
			`void (() => { for (const [k, v] of Object.entries(globalThis.__sandboxd_e2b_env || {})) { if (v === undefined) delete process.env[k]; else process.env[k] = v } delete globalThis.__sandboxd_e2b_env })()`,
			true
	}
	return "", "", false
}

// withEnv runs cell in sess with env set around it (see envCells).
func withEnv(ctx context.Context, sess *session.Session, env map[string]string, cell func() (*run.CellResult, error)) (*run.CellResult, error) {
	if len(env) == 0 {
		return cell()
	}
	rt := sess.Info().Runtime
	set, restore, ok := envCells(rt, env)
	if !ok {
		return nil, fmt.Errorf("%w: env_vars in a %s context; give them when the sandbox is created (envs)", errNotOffered, rt)
	}
	if err := hidden(ctx, sess, set); err != nil {
		return nil, fmt.Errorf("set env_vars: %w", err)
	}
	// Put back even when the client went away: the next cell must not
	// see them.
	defer func() { _ = hidden(context.WithoutCancel(ctx), sess, restore) }()
	return cell()
}

// hidden runs a cell of sandboxd's own, whose output nobody sees.
func hidden(ctx context.Context, sess *session.Session, code string) error {
	res, err := sess.Exec(ctx, run.CellRequest{Code: code}, run.CellStream{})
	if err == nil && res.Status != run.StatusOK {
		err = fmt.Errorf("the kernel answered %s: %s", res.Status, res.Reason)
		if res.Error != nil {
			err = fmt.Errorf("the kernel answered %s: %s", res.Error.Name, res.Error.Value)
		}
	}
	return err
}
