/*
 * qjs-driver: the sandboxd entry point of QuickJS for wasm32-wasi.
 *
 *   qjs.wasm FILE [ARGS...]   evaluate FILE
 *   qjs.wasm - [ARGS...]      evaluate the script read from stdin
 *
 * Globals the script gets, besides the ECMAScript built-ins:
 *   scriptArgs               [FILE, ARGS...], as QuickJS's own qjs sets it
 *   print(...args)           the arguments, space-separated, and a newline
 *                            on stdout
 *   console.log/info/debug   the same as print
 *   console.error/warn       the same on stderr
 *   readStdin()              the rest of stdin as a string (UTF-8)
 *   setTimeout/clearTimeout  timers, run once the job queue is empty
 *
 * There is no std or os module: a script has no file system, process or
 * network API. It can only compute, print and read stdin.
 *
 * Environment:
 *   QJS_MEMORY_LIMIT  bytes the JS heap may use (JS_SetMemoryLimit); past it
 *                     allocation throws an out-of-memory InternalError
 *   QJS_STACK_SIZE    bytes of native stack JS recursion may use
 *                     (JS_SetMaxStackSize); default 1 MiB, under the 2 MiB
 *                     stack the module is linked with: about 3600 frames of
 *                     a small recursive function (each also costs ~28 KB of
 *                     the wasm engine's own stack on the host); at most the
 *                     linked stack less 256 KiB
 *
 * Exit status: 0, or 1 after an uncaught exception or an unhandled promise
 * rejection (printed to stderr with its stack), or 2 for a usage or I/O
 * error.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "quickjs.h"

#define DEFAULT_STACK_SIZE (1024 * 1024)
/* Room left below the JS limit for the C code under it. */
#define STACK_MARGIN (256 * 1024)

/* The bounds of the stack wasm-ld laid out (-z stack-size). */
extern unsigned char __stack_low, __stack_high;

/* A pending setTimeout. Timers are few; a list sorted by due time will do. */
struct timer {
	struct timer *next;
	int64_t id;
	int64_t due_ms;
	JSValue func;
};

/* An unhandled rejection seen by the tracker and not handled since. */
struct rejection {
	struct rejection *next;
	JSValue promise;
	JSValue reason;
};

struct driver {
	JSContext *ctx;
	struct timer *timers;
	int64_t next_timer_id;
	struct rejection *rejections;
};

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void dump_value(JSContext *ctx, FILE *f, JSValueConst v)
{
	const char *s = JS_ToCString(ctx, v);
	if (s) {
		fprintf(f, "%s\n", s);
		JS_FreeCString(ctx, s);
	} else {
		fprintf(f, "[exception]\n");
	}
}

/* dump_error prints an exception and, for Error objects, its stack. */
static void dump_error(JSContext *ctx, JSValueConst exc)
{
	dump_value(ctx, stderr, exc);
	if (JS_IsError(ctx, exc)) {
		JSValue stack = JS_GetPropertyStr(ctx, exc, "stack");
		if (!JS_IsUndefined(stack))
			dump_value(ctx, stderr, stack);
		JS_FreeValue(ctx, stack);
	}
	fflush(stderr);
}

static void dump_exception(JSContext *ctx)
{
	JSValue exc = JS_GetException(ctx);
	dump_error(ctx, exc);
	JS_FreeValue(ctx, exc);
}

static JSValue write_args(JSContext *ctx, FILE *f, int argc, JSValueConst *argv)
{
	for (int i = 0; i < argc; i++) {
		size_t len;
		const char *s = JS_ToCStringLen(ctx, &len, argv[i]);
		if (!s)
			return JS_EXCEPTION;
		if (i > 0)
			fputc(' ', f);
		fwrite(s, 1, len, f);
		JS_FreeCString(ctx, s);
	}
	fputc('\n', f);
	/* Live output: the host streams what arrives, line by line. */
	fflush(f);
	return JS_UNDEFINED;
}

static JSValue js_print(JSContext *ctx, JSValueConst this_val, int argc, JSValueConst *argv)
{
	return write_args(ctx, stdout, argc, argv);
}

static JSValue js_eprint(JSContext *ctx, JSValueConst this_val, int argc, JSValueConst *argv)
{
	return write_args(ctx, stderr, argc, argv);
}

static JSValue js_read_stdin(JSContext *ctx, JSValueConst this_val, int argc, JSValueConst *argv)
{
	size_t len = 0, cap = 4096;
	char *buf = js_malloc(ctx, cap);
	if (!buf)
		return JS_EXCEPTION;
	for (;;) {
		if (len == cap) {
			char *nbuf = js_realloc(ctx, buf, cap * 2);
			if (!nbuf) {
				js_free(ctx, buf);
				return JS_EXCEPTION;
			}
			buf = nbuf;
			cap *= 2;
		}
		size_t n = fread(buf + len, 1, cap - len, stdin);
		len += n;
		if (n == 0)
			break;
	}
	JSValue s = JS_NewStringLen(ctx, buf, len);
	js_free(ctx, buf);
	return s;
}

static JSValue js_set_timeout(JSContext *ctx, JSValueConst this_val, int argc, JSValueConst *argv)
{
	struct driver *d = JS_GetContextOpaque(ctx);
	int64_t delay = 0;
	if (argc < 1 || !JS_IsFunction(ctx, argv[0]))
		return JS_ThrowTypeError(ctx, "setTimeout: not a function");
	if (argc > 1 && JS_ToInt64(ctx, &delay, argv[1]))
		return JS_EXCEPTION;
	if (delay < 0)
		delay = 0;
	struct timer *t = js_malloc(ctx, sizeof(*t));
	if (!t)
		return JS_EXCEPTION;
	t->id = ++d->next_timer_id;
	t->due_ms = now_ms() + delay;
	t->func = JS_DupValue(ctx, argv[0]);
	struct timer **p = &d->timers;
	while (*p && (*p)->due_ms <= t->due_ms)
		p = &(*p)->next;
	t->next = *p;
	*p = t;
	return JS_NewInt64(ctx, t->id);
}

static JSValue js_clear_timeout(JSContext *ctx, JSValueConst this_val, int argc, JSValueConst *argv)
{
	struct driver *d = JS_GetContextOpaque(ctx);
	int64_t id;
	if (argc < 1 || JS_ToInt64(ctx, &id, argv[0]))
		return JS_UNDEFINED;
	for (struct timer **p = &d->timers; *p; p = &(*p)->next) {
		if ((*p)->id == id) {
			struct timer *t = *p;
			*p = t->next;
			JS_FreeValue(ctx, t->func);
			js_free(ctx, t);
			break;
		}
	}
	return JS_UNDEFINED;
}

static void rejection_tracker(JSContext *ctx, JSValueConst promise, JSValueConst reason,
			      JS_BOOL is_handled, void *opaque)
{
	struct driver *d = opaque;
	if (!is_handled) {
		struct rejection *r = js_malloc(ctx, sizeof(*r));
		if (!r)
			return;
		r->promise = JS_DupValue(ctx, promise);
		r->reason = JS_DupValue(ctx, reason);
		r->next = d->rejections;
		d->rejections = r;
		return;
	}
	for (struct rejection **p = &d->rejections; *p; p = &(*p)->next) {
		if (JS_VALUE_GET_PTR((*p)->promise) == JS_VALUE_GET_PTR(promise)) {
			struct rejection *r = *p;
			*p = r->next;
			JS_FreeValue(ctx, r->promise);
			JS_FreeValue(ctx, r->reason);
			js_free(ctx, r);
			break;
		}
	}
}

/* run_jobs drains the job queue; it returns -1 after an uncaught exception. */
static int run_jobs(JSContext *ctx)
{
	JSContext *jctx;
	for (;;) {
		int err = JS_ExecutePendingJob(JS_GetRuntime(ctx), &jctx);
		if (err == 0)
			return 0;
		if (err < 0) {
			dump_exception(jctx);
			return -1;
		}
	}
}

/* check_rejections reports the rejections still unhandled once the queue is
 * empty, as Node does; it returns -1 if there was one. */
static int check_rejections(struct driver *d)
{
	if (!d->rejections)
		return 0;
	fprintf(stderr, "Uncaught (in promise) ");
	dump_error(d->ctx, d->rejections->reason);
	return -1;
}

/* loop runs jobs and timers until there is nothing left to do. */
static int loop(struct driver *d)
{
	for (;;) {
		if (run_jobs(d->ctx) < 0 || check_rejections(d) < 0)
			return -1;
		struct timer *t = d->timers;
		if (!t)
			return 0;
		int64_t wait = t->due_ms - now_ms();
		if (wait > 0) {
			struct timespec ts = {.tv_sec = wait / 1000, .tv_nsec = (wait % 1000) * 1000000};
			while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
			}
		}
		d->timers = t->next;
		JSValue r = JS_Call(d->ctx, t->func, JS_UNDEFINED, 0, NULL);
		JS_FreeValue(d->ctx, t->func);
		js_free(d->ctx, t);
		if (JS_IsException(r)) {
			dump_exception(d->ctx);
			return -1;
		}
		JS_FreeValue(d->ctx, r);
	}
}

static char *read_all(FILE *f, size_t *plen)
{
	size_t len = 0, cap = 64 * 1024;
	char *buf = malloc(cap + 1);
	if (!buf)
		return NULL;
	for (;;) {
		if (len == cap) {
			char *nbuf = realloc(buf, cap * 2 + 1);
			if (!nbuf) {
				free(buf);
				return NULL;
			}
			buf = nbuf;
			cap *= 2;
		}
		size_t n = fread(buf + len, 1, cap - len, f);
		len += n;
		if (n == 0)
			break;
	}
	if (ferror(f)) {
		free(buf);
		return NULL;
	}
	buf[len] = '\0';
	*plen = len;
	return buf;
}

static size_t env_size(const char *name, size_t def)
{
	const char *v = getenv(name);
	if (!v || !*v)
		return def;
	char *end;
	unsigned long long n = strtoull(v, &end, 10);
	if (*end != '\0') {
		fprintf(stderr, "qjs: %s=%s is not a number of bytes\n", name, v);
		exit(2);
	}
	return (size_t)n;
}

static int set_fn(JSContext *ctx, JSValueConst obj, const char *name, JSCFunction *fn, int len)
{
	return JS_SetPropertyStr(ctx, obj, name, JS_NewCFunction(ctx, fn, name, len));
}

static void add_globals(JSContext *ctx, int argc, char **argv)
{
	JSValue global = JS_GetGlobalObject(ctx);
	JSValue args = JS_NewArray(ctx);
	for (int i = 1; i < argc; i++)
		JS_SetPropertyUint32(ctx, args, i - 1, JS_NewString(ctx, argv[i]));
	JS_SetPropertyStr(ctx, global, "scriptArgs", args);

	set_fn(ctx, global, "print", js_print, 1);
	set_fn(ctx, global, "readStdin", js_read_stdin, 0);
	set_fn(ctx, global, "setTimeout", js_set_timeout, 2);
	set_fn(ctx, global, "clearTimeout", js_clear_timeout, 1);

	JSValue console = JS_NewObject(ctx);
	set_fn(ctx, console, "log", js_print, 1);
	set_fn(ctx, console, "info", js_print, 1);
	set_fn(ctx, console, "debug", js_print, 1);
	set_fn(ctx, console, "error", js_eprint, 1);
	set_fn(ctx, console, "warn", js_eprint, 1);
	JS_SetPropertyStr(ctx, global, "console", console);
	JS_FreeValue(ctx, global);
}

/* eval_source evaluates the script, as a module if it looks like one, and
 * runs the event loop. It returns the exit status. */
static int eval_source(struct driver *d, const char *src, size_t len, const char *name)
{
	JSContext *ctx = d->ctx;
	int module = JS_DetectModule(src, len);
	JSValue v = JS_Eval(ctx, src, len, name, module ? JS_EVAL_TYPE_MODULE : JS_EVAL_TYPE_GLOBAL);
	if (JS_IsException(v)) {
		dump_exception(ctx);
		return 1;
	}
	if (loop(d) < 0) {
		JS_FreeValue(ctx, v);
		return 1;
	}
	/* A module's evaluation yields a promise: a top-level await that
	 * rejected is an uncaught exception. */
	if (module && JS_PromiseState(ctx, v) == JS_PROMISE_REJECTED) {
		JSValue reason = JS_PromiseResult(ctx, v);
		dump_error(ctx, reason);
		JS_FreeValue(ctx, reason);
		JS_FreeValue(ctx, v);
		return 1;
	}
	JS_FreeValue(ctx, v);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: qjs FILE|- [ARGS...]\n");
		return 2;
	}
	const char *name = argv[1];
	FILE *f = stdin;
	if (strcmp(name, "-") != 0) {
		f = fopen(name, "rb");
		if (!f) {
			fprintf(stderr, "qjs: %s: %s\n", name, strerror(errno));
			return 2;
		}
	} else {
		name = "<stdin>";
	}
	size_t len;
	char *src = read_all(f, &len);
	if (f != stdin)
		fclose(f);
	if (!src) {
		fprintf(stderr, "qjs: read %s: %s\n", name, strerror(errno));
		return 2;
	}

	JSRuntime *rt = JS_NewRuntime();
	if (!rt) {
		fprintf(stderr, "qjs: cannot allocate the JS runtime\n");
		return 2;
	}
	size_t mem = env_size("QJS_MEMORY_LIMIT", 0);
	if (mem > 0)
		JS_SetMemoryLimit(rt, mem);
	/* Never past the linked stack: below it lies nothing but a trap. */
	size_t stack = env_size("QJS_STACK_SIZE", DEFAULT_STACK_SIZE);
	size_t linked = (size_t)(&__stack_high - &__stack_low);
	if (linked > STACK_MARGIN && stack > linked - STACK_MARGIN)
		stack = linked - STACK_MARGIN;
	JS_SetMaxStackSize(rt, stack);
	JSContext *ctx = JS_NewContext(rt);
	if (!ctx) {
		fprintf(stderr, "qjs: cannot allocate the JS context\n");
		return 2;
	}
	struct driver d = {.ctx = ctx};
	JS_SetContextOpaque(ctx, &d);
	JS_SetHostPromiseRejectionTracker(rt, rejection_tracker, &d);
	add_globals(ctx, argc, argv);

	int status = eval_source(&d, src, len, name);
	fflush(stdout);
	fflush(stderr);
	/* The process ends here; freeing the runtime would only cost time (and
	 * assert on objects a failed script left reachable). */
	return status;
}
