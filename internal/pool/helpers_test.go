package pool

import "github.com/sandboxd/sandboxd/internal/run"

func runFile(name, content string) run.File { return run.File{Name: name, Content: []byte(content)} }
