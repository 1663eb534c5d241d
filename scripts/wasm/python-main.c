/*
 * python-main.c: CPython's main for sandboxd's wasm backend, split in two
 * so that a run can start from a snapshot of the interpreter's memory
 * taken between the halves (internal/wasm/snapshot.go).
 *
 * The module is a WASI reactor (crt1-reactor: `_initialize` runs the C
 * constructors) that exports:
 *
 *   sandboxd_init  what Py_BytesMain does before running anything: the
 *                  pre-configuration and the configuration read from the
 *                  instance's argv and environment, and Py_InitializeFromConfig
 *                  (the runtime, sys, the import system, site).
 *   sandboxd_run   the rest: Py_RunMain (the script, -c or -m, then
 *                  finalisation), then exit with its status.
 *   _start         both, in one instance, after `_initialize`: the cold
 *                  start, what Programs/python.c's main gives a command.
 *
 * The halves are Modules/main.c's pymain_main through public API only:
 * _start is Py_BytesMain, statement for statement, so a cold run and a run
 * from a snapshot do the same work, the snapshot having done the first
 * half once for many runs.
 */
#include "Python.h"

#include <stdlib.h>
#include <wasi/api.h>

extern void _initialize(void);

/* The instance's argv, read from WASI as wasi-libc's __main_void does for
 * a command. */
static int read_args(char ***argvp)
{
	__wasi_size_t argc, size;
	if (__wasi_args_sizes_get(&argc, &size) != __WASI_ERRNO_SUCCESS)
		_Exit(71); /* EX_OSERR */
	char **argv = calloc(argc + 1, sizeof *argv);
	char *buf = malloc(size ? size : 1);
	if (argv == NULL || buf == NULL)
		_Exit(71);
	if (__wasi_args_get((uint8_t **)argv, (uint8_t *)buf) != __WASI_ERRNO_SUCCESS)
		_Exit(71);
	*argvp = argv;
	return (int)argc;
}

/* pymain_init's failure paths as pymain_main takes them: an exit status
 * (--version, --help, a bad option) exits with it, an error is reported
 * and exits 1. */
static void check(PyStatus st)
{
	if (PyStatus_IsExit(st))
		exit(st.exitcode);
	if (PyStatus_Exception(st))
		Py_ExitStatusException(st);
}

__attribute__((export_name("sandboxd_init"))) void sandboxd_init(void)
{
	char **argv;
	int argc = read_args(&argv);

	PyPreConfig preconfig;
	PyPreConfig_InitPythonConfig(&preconfig);
	check(Py_PreInitializeFromBytesArgs(&preconfig, argc, argv));

	PyConfig config;
	PyConfig_InitPythonConfig(&config);
	PyStatus st = PyConfig_SetBytesArgv(&config, argc, argv);
	if (!PyStatus_Exception(st))
		st = Py_InitializeFromConfig(&config);
	PyConfig_Clear(&config);
	check(st);
}

__attribute__((export_name("sandboxd_run"))) void sandboxd_run(void)
{
	exit(Py_RunMain());
}

__attribute__((export_name("_start"))) void _start(void)
{
	_initialize();
	sandboxd_init();
	sandboxd_run();
}
