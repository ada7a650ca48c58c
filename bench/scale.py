#!/usr/bin/env python3
"""berth at scale: N containers running at once (500 by default).

Creates and starts N containers of `sleep`, one after the other, each with its own namespaces
and cgroup, and reports:
  create   how long the 1st, the 10 around the middle and the last create took (ms), and the
           last 10 against the first 10 (the goal: within 20 %)
  list     `list` with 1, N/2 and N containers (ms, median of 5)
  state    `state` of the first container, the same three times (ms, median of 5)
Then it deletes them all (`delete --force`) and reports how long that took.

Runs through bench/run (the same private mount namespace as bench.py, so any runtime can be
named with --runtime). Needs root. A benchmark, not a test: it prints, it never fails on a
number. Python 3 standard library only.
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench import REPO, Runtime, make_bundle  # noqa: E402


def timed_median(rt, args, repeats=5):
    return statistics.median(rt.must(*args) for _ in range(repeats)) * 1000


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runtime", metavar="NAME=PATH",
                        default="berth=" + os.environ.get("BERTH_BIN",
                                                          os.path.join(REPO, "target", "dist", "berth")))
    parser.add_argument("--rootfs", default=os.path.join(REPO, "build", "rootfs"))
    parser.add_argument("--containers", type=int, default=500)
    opts = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("scale: needs root")

    workdir = tempfile.mkdtemp(prefix="berth-scale-")
    name, _, path = opts.runtime.partition("=")
    rt = Runtime(name, os.path.abspath(path), workdir)
    n = opts.containers
    ids = [f"scale-{i}" for i in range(n)]
    rootfs = os.path.abspath(opts.rootfs)
    creates, lists, states = [], {}, {}
    try:
        for i, cid in enumerate(ids, start=1):
            bundle = make_bundle(workdir, rootfs, cid, ["sleep", "100000"])  # a cgroup of its own
            creates.append(rt.must("create", "--bundle", bundle, cid) * 1000)
            rt.must("start", cid)
            if i in (1, n // 2, n):
                lists[i] = timed_median(rt, ["list"])
                states[i] = timed_median(rt, ["state", ids[0]])
            if i % 100 == 0:
                print(f"{i} running", file=sys.stderr, flush=True)
        first, last = statistics.median(creates[:10]), statistics.median(creates[-10:])
        middle = statistics.median(creates[n // 2 - 5:n // 2 + 5])
        print(f"{rt.name}: {n} containers running at once")
        print(f"create (ms): 1st {creates[0]:.2f}, median of the first 10 {first:.2f}, "
              f"around the middle {middle:.2f}, of the last 10 {last:.2f} (x{last / first:.2f})")
        print("list (ms):   " + ", ".join(f"{k} running {v:.2f}" for k, v in lists.items()))
        print("state (ms):  " + ", ".join(f"{k} running {v:.2f}" for k, v in states.items()))
    finally:
        start = time.perf_counter()
        listed = subprocess.run([rt.path, "--root", rt.root, "list", "--quiet"], capture_output=True, text=True)
        for cid in listed.stdout.split():
            subprocess.run([rt.path, "--root", rt.root, "delete", "--force", cid], capture_output=True)
        print(f"delete --force of all: {time.perf_counter() - start:.1f} s")
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
