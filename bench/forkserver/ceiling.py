#!/usr/bin/python3
"""The ceiling of a Python fork server, against bare python3.

Not sandboxd's code: a measurement for the design of one (RATIONALE.md,
"Throughput needs a fork server"). A parent holding the warm runner's
imports (internal/runtimes/warm/python.py) forks a child per run; with
--unshare the child first makes fresh mount, network, IPC, UTS and pid
namespaces, as a sandbox would (root only). Printed beside it, measured in
the same run: bare /usr/bin/python3 -c 'print(1)' processes at the same
concurrency. Argv only, no shell.

    sudo bench/forkserver/ceiling.py            # 400 runs, concurrency 2
    sudo bench/forkserver/ceiling.py -n 1000 -c 8
"""
import argparse, ctypes, os, subprocess, sys, time
import json, types, re, math, random, collections, itertools, functools, gc

CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC, CLONE_NEWPID, CLONE_NEWNET = 0x00020000, 0x04000000, 0x08000000, 0x20000000, 0x40000000
NAMESPACES = CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWPID | CLONE_NEWNET


def bare(n, conc):
    t0, running, done = time.monotonic(), [], 0
    while done < n:
        while len(running) < conc and done + len(running) < n:
            running.append(subprocess.Popen(["/usr/bin/python3", "-c", "print(1)"], stdout=subprocess.DEVNULL))
        running.pop(0).wait()
        done += 1
    return n / (time.monotonic() - t0)


def forked(n, conc, unshare):
    libc = ctypes.CDLL(None, use_errno=True)
    devnull = os.open(os.devnull, os.O_WRONLY)
    t0, running, started, done = time.monotonic(), 0, 0, 0
    while done < n:
        while running < conc and started < n:
            pid = os.fork()
            if pid == 0:
                os.dup2(devnull, 1)
                if unshare and libc.unshare(NAMESPACES) != 0:
                    os._exit(3)
                exec(compile("print(1)", "main.py", "exec"), {"__name__": "__main__"})
                sys.stdout.flush()
                os._exit(0)
            running, started = running + 1, started + 1
        _, status = os.wait()
        if status != 0:
            sys.exit(f"a forked run failed: wait status {status:#x}")
        running, done = running - 1, done + 1
    return n / (time.monotonic() - t0)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", type=int, default=400, help="runs of each")
    ap.add_argument("-c", type=int, default=2, help="concurrency")
    a = ap.parse_args()
    gc.freeze()
    base = bare(a.n, a.c)
    print(f"{a.n} runs of print(1) at concurrency {a.c}; load {os.getloadavg()[0]:.2f}")
    print(f"bare python3 processes       {base:7.1f}/s")
    r = forked(a.n, a.c, False)
    print(f"fork server                  {r:7.1f}/s  {r / base:.2f}x bare")
    if os.geteuid() == 0:
        r = forked(a.n, a.c, True)
        print(f"fork server, new namespaces  {r:7.1f}/s  {r / base:.2f}x bare")
    else:
        print("fork server, new namespaces: skipped, needs root")


if __name__ == "__main__":
    main()
