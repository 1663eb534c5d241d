# sandboxd's warm Python runner. It starts (and imports the common standard
# library) before any run is known, closes fd 4 to say it is ready, then
# waits for its run on fd 3: a JSON
# object {"entry": "main.py", "args": [...], "env": {...}}. It then runs the
# entry file as `python3 main.py args...` would, as the same __main__, with
# the same argv, sys.path[0], exit codes and tracebacks.
import atexit, os, sys

# What most programs import, loaded while nobody waits. Only modules whose
# teardown is cheap: interpreter shutdown is on the run's clock, and
# typing, dataclasses, subprocess, decimal and the like add 2-8 ms each to
# it (measured), more than importing them on demand costs a run that
# needs them.
import json, types, re, math, random, collections, itertools, functools, gc

# Everything so far is the runner's: the collector need never look at it
# again, at shutdown included (~1.5 ms less on the run's clock). Objects
# the program makes are collected as usual.
gc.freeze()

def _main():
    # Ready: say so on fd 4, then wait for the run on fd 3.
    os.close(4)
    chunks = []
    while True:
        b = os.read(3, 1 << 16)
        if not b:
            break
        chunks.append(b)
    os.close(3)
    _run(json.loads(b"".join(chunks)))

_interrupted = False

def _exit_by_sigint():
    # Registered before the program's exit handlers, so run after them.
    if _interrupted:
        # As python3 ends on an uncaught KeyboardInterrupt: killed by
        # SIGINT, once the exit handlers ran and the output is flushed.
        import signal
        for f in (sys.stdout, sys.stderr):
            try:
                f.flush()
            except Exception:
                pass
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)

def _run(ctl):
    global _interrupted
    atexit.register(_exit_by_sigint)
    entry = ctl["entry"]
    path = os.path.abspath(entry)
    sys.argv = [entry] + list(ctl.get("args", []))
    os.environ.update(ctl.get("env") or {})
    sys.path[0] = os.path.dirname(path)
    main = types.ModuleType("__main__")
    main.__file__ = path
    main.__builtins__ = __builtins__
    main.__cached__ = None
    sys.modules["__main__"] = main
    try:
        with open(path, "rb") as f:
            source = f.read()
        code = compile(source, path, "exec")
    except SyntaxError as e:
        # As python3 prints it: the file, line and caret, no traceback.
        sys.excepthook(type(e), e.with_traceback(None), None)
        sys.exit(1)
    except OSError as e:
        print("python3: can't open file %r: [Errno %d] %s" % (path, e.errno, e.strerror), file=sys.stderr)
        sys.exit(2)
    try:
        exec(code, main.__dict__)
    except SystemExit:
        raise
    except BaseException as e:
        # The traceback a cold run prints: without this runner's frame.
        tb = e.__traceback__.tb_next
        sys.excepthook(type(e), e.with_traceback(tb), tb)
        _interrupted = isinstance(e, KeyboardInterrupt)
        sys.exit(1)

if sys.argv[1:] == ["--zygote"]:
    # The fork server of internal/isolate (zygote_linux.go, zygote.py):
    # started on the host from this file (fd 4), it runs its own code
    # (fd 5) here, and each run's process calls _run.
    _zygote = os.pread(5, 1 << 20, 0)
    os.close(4)
    os.close(5)
    exec(compile(_zygote, "zygote", "exec"))
else:
    _main()
