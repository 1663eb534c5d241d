# sandboxd's Python kernel: one persistent interpreter for a session.
#
# The protocol (PROTOCOL.md next to this file) is one JSON object per line:
# requests on fd 3, answers on fd 4, the cells' own output on fd 1 and 2.
#
#   -> {"id": "3", "code": "x = 1\nx + 1"}
#   <- {"type": "display", "id": "3", "data": {"image/png": "...", ...}}   (0..n)
#   <- {"type": "done", "id": "3", "status": "ok", "result": {"text/plain": "2"}}
#   <- {"type": "done", "id": "4", "status": "error",
#       "error": {"name": "ZeroDivisionError", "value": "...", "traceback": "..."}}
#
# At start it answers {"type": "ready", "language": "python", "version": ...}.
# A SIGINT while a cell runs raises KeyboardInterrupt in it; between cells
# it is ignored. The kernel runs inside the session's sandbox: nothing it
# does is trusted by the other side.
#
# An idle kernel costs its memory for the session's whole life, so it
# imports nothing at start beyond what the interpreter has already loaded
# and built-in modules: no json (it pulls in re), ast, traceback,
# linecache (tokenize, re), base64 or signal (enum). Requests are decoded
# by _json's C scanner, answers encoded by _encode below, cells parsed with
# _ast; the rest is imported where it is used (a traceback, a figure).
# A cell that imports any of them gets the real module, as in python3.
import _ast, _json, _signal, builtins, io, os, sys


_MAX_REPR = 64 << 10


class _Kernel:
    def __init__(self):
        # The pipes move out of the way of the cells' own file descriptors,
        # and are close-on-exec: no process a cell starts inherits them.
        self.requests = os.fdopen(_high(3, 100), "rb")
        self.answers = _high(4, 101)
        os.close(3)
        os.close(4)
        self.running = False
        self.taken = False
        self.pending = False
        self.count = 0
        self.cell_id = None
        main = type(sys)("__main__")
        main.__builtins__ = builtins
        sys.modules["__main__"] = main
        self.ns = main.__dict__
        sys.path[0] = os.getcwd()
        builtins.display = self.display
        _signal.signal(_signal.SIGINT, self._on_sigint)
        # Cells' sources, for tracebacks: linecache (tokenize, re) is
        # given them when something imports it (_ImportHook).
        self.sources = {}
        sys.meta_path.insert(0, _ImportHook({
            "matplotlib.pyplot": self._patch_pyplot,
            "linecache": self._fill_linecache,
        }))

    def _patch_pyplot(self, module):
        module.show = lambda *a, **k: self.flush_figures()

    def _fill_linecache(self, module):
        module.cache.update(self.sources)

    def _on_sigint(self, signum, frame):
        if self.running:
            raise KeyboardInterrupt
        if self.taken:
            # Between taking a cell and running it: the cell's.
            self.pending = True

    def send(self, msg):
        data = (_encode(msg) + "\n").encode("utf-8", "surrogateescape")
        # A line is written whole: an interrupt mid-write (a display
        # larger than the pipe) would leave half a line for the next
        # answer to run into. It is taken once the line is out.
        _signal.pthread_sigmask(_signal.SIG_BLOCK, {_signal.SIGINT})
        try:
            while data:
                data = data[os.write(self.answers, data):]
        finally:
            _signal.pthread_sigmask(_signal.SIG_UNBLOCK, {_signal.SIGINT})

    def display(self, *objs):
        """Show objects in the cell's result: figures and images as PNG,
        tables as HTML, anything else as its repr."""
        for obj in objs:
            self.send({"type": "display", "id": self.cell_id, "data": _mimebundle(obj)})

    def flush_figures(self):
        plt = sys.modules.get("matplotlib.pyplot")
        if plt is None:
            return
        for num in plt.get_fignums():
            self.display(plt.figure(num))
        plt.close("all")

    def serve(self):
        self.send({"type": "ready", "language": "python", "version": sys.version.split()[0]})
        while True:
            try:
                line = self.requests.readline()
            except KeyboardInterrupt:
                continue
            if not line:
                return
            self.taken, self.pending = True, False
            req = _decode(line.decode("utf-8", "surrogateescape"))
            self.cell_id = req["id"]
            if "env" in req:
                answer = self.setenv(req["env"])
            else:
                answer = self.execute(req["code"])
            answer.update(type="done", id=req["id"])
            self.taken = False
            self.send(answer)

    def setenv(self, env):
        """Replaces the environment with env (a kernel started ahead of its
        session takes its session's), as if it had started with it."""
        os.environ.clear()
        os.environ.update(env)
        _default_env()
        return {"status": "ok"}

    def execute(self, code):
        self.count += 1
        name = "<cell-%d>" % self.count
        self.sources[name] = (len(code), None, code.splitlines(True), name)
        lc = sys.modules.get("linecache")
        if lc is not None:
            lc.cache[name] = self.sources[name]
        answer = {"status": "ok"}
        try:
            tree = compile(code, name, "exec", _ast.PyCF_ONLY_AST)
            last = None
            if tree.body and isinstance(tree.body[-1], _ast.Expr):
                last = _ast.Expression(tree.body.pop().value)
            body = compile(tree, name, "exec")
            tail = compile(last, name, "eval") if last else None
            # Rendering the value (a huge repr, a slow _repr_html_) is the
            # cell's time too: interruptible, as the code itself.
            self.running = True
            try:
                if self.pending:
                    raise KeyboardInterrupt
                exec(body, self.ns)
                value = eval(tail, self.ns) if tail else None
                if value is not None:
                    self.ns["_"] = value
                    answer["result"] = _mimebundle(value)
            finally:
                self.running = False
        except BaseException as e:
            answer = {"status": "error", "error": _error(e)}
        # Figures are shown after a failed cell too, as in a notebook.
        try:
            self.running = True
            try:
                self.flush_figures()
            finally:
                self.running = False
        except BaseException as e:
            answer = {"status": "error", "error": _error(e)}
        for f in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
            try:
                f.flush()
            except Exception:
                pass
        return answer


def _error(e):
    # The traceback without the kernel's own frames (its globals are this
    # module's; a cell's are __main__'s): the cell's code and the
    # libraries it called, as python3 would print them.
    import traceback

    te = traceback.TracebackException(type(e), e, e.__traceback__)
    te.stack = traceback.StackSummary.extract(
        (f, n) for f, n in traceback.walk_tb(e.__traceback__) if f.f_globals is not _KERNEL_GLOBALS)
    return {"name": type(e).__name__, "value": str(e), "traceback": "".join(te.format())}


_KERNEL_GLOBALS = globals()


def _mimebundle(obj):
    data = {}
    fig = _figure_of(obj)
    if fig is not None:
        buf = io.BytesIO()
        fig.savefig(buf, format="png", bbox_inches="tight")
        data["image/png"] = _b64(buf.getvalue())
    else:
        for mime, method in (("image/png", "_repr_png_"), ("text/html", "_repr_html_"), ("text/markdown", "_repr_markdown_")):
            fn = getattr(type(obj), method, None)
            if fn is None:
                continue
            try:
                v = fn(obj)
            except Exception:
                continue
            if v is None:
                continue
            if isinstance(v, bytes):
                v = _b64(v)
            data[mime] = v
    try:
        text = repr(obj)
    except Exception as e:
        text = "<repr failed: %s>" % type(e).__name__
    if len(text) > _MAX_REPR:
        text = text[:_MAX_REPR] + "... [repr of %d characters cut]" % len(text)
    data["text/plain"] = text
    return data


def _figure_of(obj):
    mpl_figure = sys.modules.get("matplotlib.figure")
    if mpl_figure is None:
        return None
    if isinstance(obj, mpl_figure.Figure):
        return obj
    return None


def _high(fd, to):
    """A close-on-exec copy of fd as fd number to, or the lowest free one
    when the open files limit is below to."""
    try:
        return os.dup2(fd, to, inheritable=False)
    except OSError:
        return os.dup(fd)


def _b64(b):
    import binascii

    return binascii.b2a_base64(b, newline=False).decode()


class _Context:
    """What _json's scanner reads of a json.JSONDecoder."""
    strict = True
    object_hook = object_pairs_hook = parse_constant = None
    parse_float, parse_int = float, int
    memo = {}


_scan = _json.make_scanner(_Context())


def _decode(line):
    """json.loads of one request line, without the json module."""
    line = line.strip()
    obj, end = _scan(line, 0)
    _Context.memo.clear()
    if end != len(line) or not isinstance(obj, dict):
        raise ValueError("bad request")
    return obj


def _encode(v):
    """json.dumps(v, ensure_ascii=False) of an answer (dicts, lists,
    strings, numbers, booleans, None), without the json module."""
    if isinstance(v, str):
        return _json.encode_basestring(v)
    if isinstance(v, dict):
        return "{" + ", ".join(_json.encode_basestring(str(k)) + ": " + _encode(x) for k, x in v.items()) + "}"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_encode(x) for x in v) + "]"
    if v is None:
        return "null"
    if v is True or v is False:
        return "true" if v else "false"
    return repr(v)


class _ImportHook:
    """Calls after[name](module) once a module of after is first imported
    (and leaves the import itself alone): pyplot's show puts the open
    figures into the cell's result, as a notebook's inline backend does;
    linecache gets the cells' sources."""

    def __init__(self, after):
        self.after = after

    def find_spec(self, name, path, target=None):
        fix = self.after.pop(name, None)
        if fix is None:
            return None
        if not self.after:
            sys.meta_path.remove(self)
        import importlib.util
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:
            return spec
        loader = spec.loader
        exec_module = loader.exec_module

        def patched(module):
            exec_module(module)
            fix(module)

        loader.exec_module = patched
        return spec


def _default_env():
    os.environ.setdefault("MPLBACKEND", "Agg")
    os.environ.setdefault("MPLCONFIGDIR", "/tmp/.matplotlib")


_default_env()
_Kernel().serve()
