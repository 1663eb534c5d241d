# sandboxd's fork server (zygote_linux.go). It runs on the host, as root,
# inside a warm runner that has done its start-up (the interpreter, the
# common standard library); it holds nothing of any run. For each run the
# daemon sends it, over fd 3 (a SOCK_SEQPACKET socket), one message whose
# only content is file descriptors; it forks the run's process straight
# into the sandbox's pid namespace, and that child does the rest, so that
# no run's data ever passes through the server's memory, which every
# later child shares.
#
# The sandbox is one the pool made ahead: its PID 1 holds its user,
# mount, network, IPC, UTS, pid and time namespaces without a program
# (nsinit.Config.Enter). The server points its own children's pid
# namespace at it through init's pidfd for the one fork, and back. The
# run's process closes every file but its run's, sets the run's rlimits,
# enters the other namespaces through the same pidfd, joins the run's
# cgroup and cgroup namespace, drops every capability and the bounding
# set, takes the run's ids, installs the run's seccomp filter and runs
# the program as the warm runner would (_run), then ends as python3
# would (_finish). Every step that must fail closed does: the child
# exits before running anything of the run. The server reaps it, writes
# its wait status to init's status pipe as init's last message
# (nsinit.Message) and kills init, which ends the sandbox as the reaper's
# exit would.
import _thread, builtins, ctypes, resource, select, signal, socket

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
_libc.sbrk.restype = ctypes.c_void_p

CLONE_NEWTIME = 0x00000080
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
PR_SET_DUMPABLE = 4
PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4
SYS_CAPSET = 126
SYS_SECCOMP = 317
SYS_PIDFD_SEND_SIGNAL = 424
SECCOMP_SET_MODE_FILTER = 1
SECCOMP_FILTER_FLAG_TSYNC = 1
LINUX_CAPABILITY_VERSION_3 = 0x20080522


class _Step(Exception):
    def __init__(self, op, err):
        super().__init__(str(err))
        self.op = op


def _check(op, ret):
    if ret < 0:
        e = ctypes.get_errno()
        raise _Step(op, OSError(e, os.strerror(e)))
    return ret


class _Fprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def _drop_capabilities():
    # Entered from the host's root, this process holds every capability
    # in the sandbox's user namespace, and its setresuid will not clear
    # them (its uid is not that namespace's root): drop all explicitly.
    c = 0
    while _libc.prctl(PR_CAPBSET_DROP, c, 0, 0, 0) == 0:
        c += 1
    if ctypes.get_errno() != 22 or c == 0:  # EINVAL: past the last one
        _check("drop the bounding set", -1)


def _clear_capabilities():
    header = (ctypes.c_uint32 * 2)(LINUX_CAPABILITY_VERSION_3, 0)
    data = (ctypes.c_uint32 * 6)()
    _check("clear capabilities", _libc.syscall(SYS_CAPSET, header, data))
    _check("clear ambient capabilities", _libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0))


def _seccomp(raw):
    buf = ctypes.create_string_buffer(raw, len(raw))
    prog = _Fprog(len(raw) // 8, ctypes.addressof(buf))
    _check("install seccomp filter", _libc.syscall(SYS_SECCOMP, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC, ctypes.byref(prog)))


def _program(cfg, pidfd, stat, stdio, tasks):
    # The run's process, in the sandbox's pid namespace, still with the
    # capabilities of its user namespace. It joins the run's cgroup
    # before its cgroup namespace (whose root that cgroup is).
    for fd in tasks:
        try:
            os.write(fd, b"0")
        except OSError as e:
            raise _Step("join the run's cgroup", e)
        os.close(fd)
    _check("enter the cgroup namespace", _libc.setns(pidfd, CLONE_NEWCGROUP))
    os.close(pidfd)
    os.setsid()
    _drop_capabilities()
    ids = cfg["gid"], cfg["uid"]
    try:
        os.setgroups([])
        os.setresgid(ids[0], ids[0], ids[0])
        os.setresuid(ids[1], ids[1], ids[1])
    except OSError as e:
        raise _Step("set the run's ids", e)
    _clear_capabilities()
    # The ids' change made the process undumpable, which a program
    # started by execve is not: its /proc files would be root's.
    _check("set dumpable", _libc.prctl(PR_SET_DUMPABLE, 1, 0, 0, 0))
    _check("set no_new_privs", _libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))
    try:
        os.chdir(cfg["dir"])
    except OSError as e:
        raise _Step("enter the working directory", e)
    for i, fd in enumerate(stdio):
        os.dup2(fd, i)
    filt = cfg.get("seccomp")
    if filt:
        _seccomp(bytes.fromhex(filt))
    # The status pipe too: from here on the program's own exit status is
    # all that reports.
    os.closerange(3, 1 << 20)


PR_SET_MM, PR_SET_MM_MAP = 35, 14
# The blocks _show_as points the process's command line and environment
# at: they must outlive _enter's frame.
_shown = []


class _MMMap(ctypes.Structure):
    _fields_ = [(n, ctypes.c_uint64) for n in ("start_code", "end_code", "start_data", "end_data", "start_brk", "brk", "start_stack", "arg_start", "arg_end", "env_start", "env_end", "auxv")] + [("auxv_size", ctypes.c_uint32), ("exe_fd", ctypes.c_uint32)]


def _show_as(argv, env):
    # The run's process shows its own command line and environment in
    # /proc/<pid>/cmdline and environ, inside the sandbox and to the
    # host's ps, as a process the program's interpreter was started as
    # would; not the server's. PR_SET_MM_MAP (what CRIU restores a
    # process's layout by) replaces them whole and needs no capability
    # when it changes neither the executable nor the auxiliary vector.
    blocks = []
    for items in (argv, ["%s=%s" % kv for kv in env.items()]):
        b = b"".join(os.fsencode(x) + b"\0" for x in items)
        buf = ctypes.create_string_buffer(b, len(b))
        _shown.append(buf)
        blocks.append((ctypes.addressof(buf), ctypes.addressof(buf) + len(b)))
    with open("/proc/self/stat", "rb") as f:
        stat = [int(x) for x in f.read().rsplit(b")", 1)[1].split()[1:]]
    # proc(5)'s field n is stat[n - 4] here.
    m = _MMMap(start_code=stat[22], end_code=stat[23], start_stack=stat[24],
               start_data=stat[41], end_data=stat[42], start_brk=stat[43],
               brk=_libc.sbrk(0), exe_fd=0xFFFFFFFF)
    m.arg_start, m.arg_end = blocks[0]
    m.env_start, m.env_end = blocks[1]
    # A kernel without CONFIG_CHECKPOINT_RESTORE refuses it: the run then
    # shows the server's, which is cosmetic, not a reason to fail it.
    _libc.prctl(PR_SET_MM, PR_SET_MM_MAP, ctypes.byref(m), ctypes.sizeof(m), 0)


def _report(stat, msg):
    try:
        os.write(stat, json.dumps(msg).encode() + b"\n")
    except OSError:
        pass  # the daemon is gone: nobody to tell


def _kill(pidfd):
    _libc.syscall(SYS_PIDFD_SEND_SIGNAL, pidfd, signal.SIGKILL, None, 0)


def _enter(fds):
    # The run's process, just forked into the sandbox's pid namespace, on
    # the host otherwise. Returns the run's control; any failure is
    # reported on the status pipe and ends the process before the run.
    # The server's wakeup pipe is not this process's to write to.
    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    cfgfd, pidfd, stat, stdin, stdout, stderr, *tasks = fds
    stdio = (stdin, stdout, stderr)
    try:
        # First of all, as any of them could be another run's: every
        # file but this run's is closed (the server's socket and its
        # other runs' status pipes and pidfds among them).
        keep = sorted(set(fds))
        lo = 3
        for fd in keep:
            os.closerange(lo, fd)
            lo = fd + 1
        os.closerange(lo, 1 << 20)
        cfg = json.loads(os.pread(cfgfd, os.fstat(cfgfd).st_size, 0))
        os.close(cfgfd)
        ctl = cfg["control"]
        env = dict(os.environ)
        env.update(ctl.get("env") or {})
        _show_as(cfg["argv"] + [ctl["entry"]] + list(ctl.get("args", [])), env)
        for res, value in cfg["rlimits"]:
            if value >= 1 << 63:
                value = resource.RLIM_INFINITY
            resource.setrlimit(res, (value, value))
        _check("enter the sandbox", _libc.setns(pidfd, CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWTIME))
        _program(cfg, pidfd, stat, stdio, tasks)
    except BaseException as e:
        _report(stat, {"error": str(e), "op": getattr(e, "op", "start the program")})
        os._exit(125)
    return ctl


# The runs in flight: each run's process's pid to its status pipe and
# init's pidfd, for _ended.
_runs = {}


def _ended(pid, ws):
    run = _runs.pop(pid, None)
    if run is None:
        return
    stat, pidfd = run
    st = {"code": -1}
    if os.WIFEXITED(ws):
        st["code"] = os.WEXITSTATUS(ws)
    elif os.WIFSIGNALED(ws):
        st["signal"] = os.WTERMSIG(ws)
        st["core"] = os.WCOREDUMP(ws)
    _report(stat, {"exit": st})
    # The status pipe's EOF, which the daemon's result waits for, comes
    # with init's end.
    os.close(stat)
    # As the reaper's exit would: init's end ends the namespace, and with
    # it whatever the program left behind.
    _kill(pidfd)
    os.close(pidfd)


def _reap():
    while True:
        try:
            pid, ws = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        _ended(pid, ws)


def _fork_into(pidfd, own):
    # Forks a child into the pid namespace of pidfd's process; -1 if it
    # cannot. setns(CLONE_NEWPID) moves only the caller's children-to-be;
    # the server's own are moved back at once, and a server that could
    # not move them back must not fork again.
    if _libc.setns(pidfd, CLONE_NEWPID) != 0:
        return -1
    pid = -1
    try:
        pid = os.fork()
    except OSError:
        pass
    if pid != 0 and _libc.setns(own, CLONE_NEWPID) != 0:
        os.write(2, b"fork server: cannot return to its own pid namespace\n")
        os._exit(1)
    return pid


def _serve():
    # Returns in a run's process only, with its control; the server
    # returns None when the daemon closes its socket. Each run's process
    # is reaped as it ends (_reap), which reports its status, by this
    # loop and not by a Python signal handler: such a handler runs only
    # between bytecodes, and a SIGCHLD that lands after the last check
    # and before the blocking receive leaves its run unreported until
    # the next request comes. The signal's C half writes a byte to the
    # wakeup pipe instead, which the loop polls beside the socket, so a
    # child that ends at any moment wakes it; and while runs are in
    # flight the loop reaps at least once a second whatever woke it, so
    # that no run's end, by any path not foreseen here, waits for more
    # than that.
    wake, wakew = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(wakew, warn_on_full_buffer=False)
    signal.signal(signal.SIGCHLD, lambda signum, frame: None)
    # Two files per run in flight (its status pipe and init's pidfd);
    # each run's process sets its own limit.
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    own = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
    gc.freeze()
    sock = socket.socket(fileno=3)
    poll = select.poll()
    poll.register(wake, select.POLLIN)
    poll.register(sock, select.POLLIN)
    while True:
        # With no run in flight there is nothing to reap: no timer then.
        ready = {fd for fd, _ in poll.poll(1000 if _runs else None)}
        if wake in ready:
            # Emptied before the reaping, so that a child ending after
            # it leaves a byte for the next poll.
            try:
                while os.read(wake, 512):
                    pass
            except BlockingIOError:
                pass
        _reap()
        if sock.fileno() not in ready:
            continue
        msg, fds, _, _ = socket.recv_fds(sock, 1, 16)
        if not msg:
            signal.set_wakeup_fd(-1)
            for fd in (own, wake, wakew):
                os.close(fd)
            return None
        pid = _fork_into(fds[1], own) if len(fds) >= 6 else -1
        if pid == 0:
            ctl = None
            try:
                # Closed here, not left to the closing of every file in
                # _enter: the socket object would close fd 3 again when
                # this frame ends, whatever holds that number by then.
                sock.close()
                ctl = _enter(fds)
            finally:
                if ctl is None:
                    os._exit(1)
            return ctl
        for i, fd in enumerate(fds):
            if pid > 0 and i in (1, 2):
                continue
            os.close(fd)
        if pid > 0:
            # Recorded before the next reaping, which only this loop
            # does: no run ends unrecorded.
            _runs[pid] = (fds[2], fds[1])
        # The fork's outcome: the daemon's request fails at once when no
        # child could take it.
        sock.send(b"1" if pid > 0 else b"0")


def _exit_code(e):
    # What python3 does with the SystemExit that ends it
    # (_Py_HandleSystemExit): None is 0, an int is itself, anything else
    # is printed to stderr and is 1.
    code = e.code
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF if -(1 << 63) <= code < 1 << 63 else 0xFF
    try:
        if sys.stderr is not None:
            print(code, file=sys.stderr)
        else:
            os.write(2, str(code).encode() + b"\n")
    except Exception:
        pass
    return 1


def _flush_std():
    # flush_std_files: a closed file is skipped; False when one failed.
    ok = True
    for f in (sys.stdout, sys.stderr):
        if f is None or getattr(f, "closed", False) is True:
            continue
        try:
            f.flush()
        except Exception:
            ok = False
    return ok


def _clear_module(d):
    # _PyModule_ClearDict: the names with one leading underscore first,
    # then all others but __builtins__, each set to None.
    def private(k):
        return k[:1] == "_" and k[1:2] != "_"

    for wanted in (private, lambda k: k != "__builtins__"):
        for k in list(d):
            if isinstance(k, str) and wanted(k) and d.get(k) is not None:
                d[k] = None


def _finish(code):
    # The run's process ends as python3 ends (Py_FinalizeEx) in all a
    # program can see, without tearing down what it shares with the
    # server. python3 clears every module and frees every object; most of
    # them are the server's here, on pages the fork shares, and each
    # refcount the teardown writes copies a page: some 1100 for
    # `print(1)`, a fifth of a pooled run's CPU, for nothing the program
    # can observe. What the program made (its modules, __main__ among
    # them, and all they hold) is cleared as python3 clears it, so its
    # finalizers run and its unclosed files are flushed; then the process
    # exits. Wherever that could differ, python3's own shutdown runs
    # instead: threads still running (it joins or abandons them), a name
    # the program added to builtins, a frozen generation the program
    # froze into or emptied, a flush of stdout or stderr that failed (it
    # reports it), and an object with a finalizer that is still alive
    # once the program's modules are gone (the server's modules hold it,
    # which python3 would clear too). RATIONALE, "A fork server".
    if _thread._count():
        sys.exit(code)
    t = sys.modules.get("threading")
    if t is not None:
        t._shutdown()
    atexit._run_exitfuncs()
    # (The frozen generation only shrinks as the server's objects the
    # program let go of die, a few; gc.freeze() grows it by at least the
    # program's own objects, gc.unfreeze() empties it.)
    frozen = gc.get_freeze_count()
    if _thread._count() or len(builtins.__dict__) != _builtins_len or frozen > _frozen or frozen == 0 or not _flush_std():
        sys.exit(code)
    # _PySignal_Fini: a signal the program handled now acts by default.
    for s in signal.valid_signals():
        h = signal.getsignal(s)
        if callable(h):
            signal.signal(s, signal.SIG_DFL)
    if gc.isenabled():
        gc.collect()
    # finalize_modules: sys's files back to the originals, the modules out
    # of sys.modules, what is left of them cleared newest first, and the
    # garbage collected whether or not the program turned the collector
    # off.
    sys.stdin, sys.stdout, sys.stderr = sys.__stdin__, sys.__stdout__, sys.__stderr__
    mods = [sys.modules.pop(n) for n in reversed(list(sys.modules)) if n not in _preloaded or n == "__main__"]
    gc.collect()
    # Each let go as it is cleared (a program with thousands of modules
    # must not pay for list.pop(0)).
    for i in range(len(mods)):
        m, mods[i] = mods[i], None
        if isinstance(m, types.ModuleType):
            _clear_module(m.__dict__)
        m = None
    gc.collect()
    # What is left with a finalizer is the program's, held by the server's
    # modules or builtins (`json.cache = open(...)`): the interpreter's
    # shutdown, which clears those too, finalizes it. (get_objects lists
    # what the collector tracks outside the frozen generation: what was
    # made since the server's freeze, unless the program froze or
    # unfroze, which is why that hands over too.)
    for o in gc.get_objects():
        if hasattr(type(o), "__del__"):
            sys.exit(code)
    os._exit(code if _flush_std() else 120)


# What the server holds: a run's modules are the others (and __main__).
_preloaded = frozenset(sys.modules)
_builtins_len = len(builtins.__dict__)
_ctl = _serve()
_frozen = gc.get_freeze_count()
if _ctl is None:
    # The daemon let this server go (or is gone): its runs go on to their
    # end, each reaped and reported as before.
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    while True:
        try:
            _ended(*os.wait())
        except ChildProcessError:
            break
        except InterruptedError:
            pass
    sys.exit(0)
try:
    _run(_ctl)
    _code = 0
except SystemExit as e:
    _code = _exit_code(e)
_finish(_code)
