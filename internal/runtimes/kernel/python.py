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
import ast, base64, builtins, fcntl, io, json, linecache, os, signal, sys, traceback, types

_MAX_REPR = 64 << 10


class _Kernel:
    def __init__(self):
        # The pipes move out of the way of the cells' own file descriptors,
        # and are close-on-exec: no process a cell starts inherits them.
        self.requests = os.fdopen(fcntl.fcntl(3, fcntl.F_DUPFD_CLOEXEC, 100), "rb")
        self.answers = fcntl.fcntl(4, fcntl.F_DUPFD_CLOEXEC, 100)
        os.close(3)
        os.close(4)
        self.running = False
        self.taken = False
        self.pending = False
        self.count = 0
        self.cell_id = None
        main = types.ModuleType("__main__")
        main.__builtins__ = builtins
        sys.modules["__main__"] = main
        self.ns = main.__dict__
        sys.path[0] = os.getcwd()
        builtins.display = self.display
        signal.signal(signal.SIGINT, self._on_sigint)
        sys.meta_path.insert(0, _PyplotHook(self))

    def _on_sigint(self, signum, frame):
        if self.running:
            raise KeyboardInterrupt
        if self.taken:
            # Between taking a cell and running it: the cell's.
            self.pending = True

    def send(self, msg):
        data = (json.dumps(msg, ensure_ascii=False) + "\n").encode("utf-8", "surrogateescape")
        # A line is written whole: an interrupt mid-write (a display
        # larger than the pipe) would leave half a line for the next
        # answer to run into. It is taken once the line is out.
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            while data:
                data = data[os.write(self.answers, data):]
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})

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
            req = json.loads(line)
            self.cell_id = req["id"]
            answer = self.execute(req["code"])
            answer.update(type="done", id=req["id"])
            self.taken = False
            self.send(answer)

    def execute(self, code):
        self.count += 1
        name = "<cell-%d>" % self.count
        linecache.cache[name] = (len(code), None, code.splitlines(True), name)
        answer = {"status": "ok"}
        try:
            tree = ast.parse(code, name)
            last = None
            if tree.body and isinstance(tree.body[-1], ast.Expr):
                last = ast.Expression(tree.body.pop().value)
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
        data["image/png"] = base64.b64encode(buf.getvalue()).decode()
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
                v = base64.b64encode(v).decode()
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


class _PyplotHook:
    """Makes plt.show() put the open figures into the cell's result, as a
    notebook's inline backend does, once a cell imports pyplot."""

    def __init__(self, kernel):
        self.kernel = kernel

    def find_spec(self, name, path, target=None):
        if name != "matplotlib.pyplot":
            return None
        sys.meta_path.remove(self)
        import importlib.util
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:
            return spec
        loader, kernel = spec.loader, self.kernel
        exec_module = loader.exec_module

        def patched(module):
            exec_module(module)
            module.show = lambda *a, **k: kernel.flush_figures()

        loader.exec_module = patched
        return spec


os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("MPLCONFIGDIR", "/tmp/.matplotlib")
_Kernel().serve()
