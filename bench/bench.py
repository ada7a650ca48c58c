#!/usr/bin/env python3
"""Side-by-side benchmark of OCI runtimes on one bundle (berth, runc, crun by default).

Measured, interleaved round by round (runtime order shuffled each round) so that machine noise
hits every runtime alike:
  run+delete   `run` of /bin/true, then `delete --force` (ms per pair)
  + seccomp    the same with a seccomp profile shaped like Docker's default (deny, three
               architectures, ~360 syscalls allowed by name); the row below it is the difference
  churn        20 lifecycles of create, start, wait for exit, delete (ms for all 20)
  exec         `exec ID /bin/true` into a running container (ms)
  state        `state ID` of a running container (ms)
  peak RSS     the largest max-RSS of `run` (GNU time's %M, in MiB; see measure_rss)

Medians over rounds; ratios are runtime / berth (below 1 means faster than berth).
Run it through bench/run, which provides the private mount namespace crun needs on this host.
Needs root. Python 3 standard library only.
"""

import argparse
import json
import os
import random
import re
import select
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_CONFIG = os.path.join(REPO, "integration", "common", "default-config.json")
UNISTD = "/usr/include/x86_64-linux-gnu/asm/unistd_64.h"  # Debian's linux-libc-dev


class Runtime:
    def __init__(self, name, path, workdir):
        self.name = name
        self.path = path
        self.root = os.path.join(workdir, "root-" + name)
        self.log = os.path.join(workdir, name + ".stderr")
        self.peak_rss_kib = 0
        self.rss_file = os.path.join(workdir, name + ".rss")
        self.samples = {}  # metric -> list of seconds

    def record(self, metric, seconds):
        self.samples.setdefault(metric, []).append(seconds)

    def command(self, *args):
        """Runs the runtime; returns (seconds, exit code). Output goes to /dev/null and a log."""
        argv = [self.path, "--root", self.root, *args]
        actions = [
            (os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
            (os.POSIX_SPAWN_OPEN, 1, "/dev/null", os.O_WRONLY, 0),
            (os.POSIX_SPAWN_OPEN, 2, self.log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644),
        ]
        start = time.perf_counter()
        pid = os.posix_spawn(argv[0], argv, os.environ, file_actions=actions)
        _, status = os.waitpid(pid, 0)
        elapsed = time.perf_counter() - start
        return elapsed, os.waitstatus_to_exitcode(status)

    def measure_rss(self, *args):
        """Runs the runtime under GNU time to get its max RSS.

        Not via wait4 from here: a child forked from this Python process starts with Python's
        own RSS as its high-water mark, which would hide any runtime smaller than Python.
        GNU time is small, so the runtime it forks starts near zero.
        """
        wrapped = ["/usr/bin/time", "-f", "%M", "-o", self.rss_file, self.path, "--root", self.root, *args]
        code = subprocess.run(wrapped, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL).returncode
        if code != 0:
            sys.exit(f"{self.name}: `{' '.join(args)}` under /usr/bin/time exited {code}")
        with open(self.rss_file) as f:
            self.peak_rss_kib = max(self.peak_rss_kib, int(f.read().split()[-1]))

    def must(self, *args):
        elapsed, code = self.command(*args)
        if code != 0:
            sys.exit(f"{self.name}: `{' '.join(args)}` exited {code}; see {self.log}")
        return elapsed


def docker_like_seccomp():
    """Deny by default, allow every syscall this machine's kernel headers name: the size and shape
    of Docker's default profile (which allows about 350), without needing a copy of it."""
    with open(UNISTD) as f:
        names = sorted(set(re.findall(r"#define __NR_(\w+)", f.read())))
    return {
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": 1,
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": [{"names": names, "action": "SCMP_ACT_ALLOW"}],
    }


def make_bundle(workdir, rootfs, name, args, seccomp=None):
    """A bundle whose config is the integration tests' default with `args` as the process."""
    bundle = os.path.join(workdir, name)
    os.makedirs(bundle)
    with open(DEFAULT_CONFIG) as f:
        config = json.load(f)
    config["process"]["args"] = args
    if seccomp:
        config["linux"]["seccomp"] = seccomp
    config["root"]["path"] = rootfs  # absolute: every bundle shares the one read-only rootfs
    # Absolute, so no runtime nests it inside the benchmark's own cgroup.
    config["linux"]["cgroupsPath"] = "/berth-bench"
    with open(os.path.join(bundle, "config.json"), "w") as f:
        json.dump(config, f)
    return bundle


def run_and_delete(rt, bundle, cid, metric="run+delete"):
    run = rt.must("run", "--bundle", bundle, cid)
    delete = rt.must("delete", "--force", cid)
    rt.record(metric, run + delete)


def read_pid(path):
    with open(path) as f:
        return int(f.read().strip())


def churn(rt, bundle, prefix, lifecycles):
    start = time.perf_counter()
    for n in range(lifecycles):
        cid = f"{prefix}-{n}"
        pid_file = os.path.join(bundle, f"{cid}.pid")
        rt.must("create", "--bundle", bundle, "--pid-file", pid_file, cid)
        # A pidfd taken while the init is blocked in `create` tells us when it exits, without
        # polling `state` (which would add runtime calls to the measurement).
        pidfd = os.pidfd_open(read_pid(pid_file))
        rt.must("start", cid)
        select.select([pidfd], [], [])
        os.close(pidfd)
        os.unlink(pid_file)
        _, code = rt.command("delete", cid)
        if code != 0:  # the runtime had not yet noticed the exit
            rt.must("delete", "--force", cid)
    rt.record("churn", time.perf_counter() - start)


def exec_and_state(rt, bundle, cid, repeats):
    rt.must("run", "--detach", "--bundle", bundle, cid)
    for _ in range(repeats):
        rt.record("exec", rt.must("exec", cid, "/bin/true"))
    for _ in range(repeats):
        rt.record("state", rt.must("state", cid))
    rt.must("delete", "--force", cid)


def table(runtimes, lifecycles):
    base = runtimes[0]
    rows = [
        ("run+delete (ms)", "run+delete", 1000),
        (f"churn x{lifecycles} (ms)", "churn", 1000),
        ("exec (ms)", "exec", 1000),
        ("state (ms)", "state", 1000),
    ]
    header = ["metric"] + [rt.name for rt in runtimes] + [f"{rt.name}/{base.name}" for rt in runtimes[1:]]
    lines = [header]
    def add(label, medians, ratios=True):
        shown = [f"{m / medians[0]:.2f}x" if ratios else "" for m in medians[1:]]
        lines.append([label] + [f"{m:.2f}" for m in medians] + shown)

    for label, metric, scale in rows:
        medians = [statistics.median(rt.samples[metric]) * scale for rt in runtimes]
        add(label, medians)
        if metric == "run+delete":
            with_seccomp = [statistics.median(rt.samples["run+delete seccomp"]) * scale for rt in runtimes]
            add("  + seccomp (ms)", with_seccomp)
            # A difference of two medians: a ratio of it means nothing.
            add("  seccomp cost (ms)", [s - m for s, m in zip(with_seccomp, medians)], ratios=False)
    rss = [rt.peak_rss_kib / 1024 for rt in runtimes]
    lines.append(["peak RSS (MiB)"] + [f"{r:.1f}" for r in rss] + [f"{r / rss[0]:.2f}x" for r in rss[1:]])
    widths = [max(len(row[i]) for row in lines) for i in range(len(header))]
    for row in lines:
        print("  ".join(cell.rjust(w) if i else cell.ljust(w) for i, (cell, w) in enumerate(zip(row, widths))))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runtime", action="append", metavar="NAME=PATH",
                        help="runtime to compare; the first is the baseline "
                             "(default: berth=target/release/berth runc=/usr/sbin/runc crun=/usr/bin/crun)")
    parser.add_argument("--rootfs", default=os.path.join(REPO, "build", "rootfs"))
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--lifecycles", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=10, help="exec and state calls per round")
    opts = parser.parse_args()

    specs = opts.runtime or [
        "berth=" + os.environ.get("BERTH_BIN", os.path.join(REPO, "target", "release", "berth")),
        "runc=" + (shutil.which("runc") or "/usr/sbin/runc"),
        "crun=" + (shutil.which("crun") or "/usr/bin/crun"),
    ]
    if os.geteuid() != 0:
        sys.exit("bench: needs root")
    if not os.path.exists(os.path.join(opts.rootfs, "bin", "busybox")):
        sys.exit(f"bench: no rootfs at {opts.rootfs} (make rootfs)")

    workdir = tempfile.mkdtemp(prefix="berth-bench-")
    runtimes = []
    for spec in specs:
        name, _, path = spec.partition("=")
        if not os.access(path, os.X_OK):
            sys.exit(f"bench: {name}: {path} is not executable")
        runtimes.append(Runtime(name, os.path.abspath(path), workdir))
    true_bundle = make_bundle(workdir, os.path.abspath(opts.rootfs), "bundle-true", ["/bin/true"])
    sleep_bundle = make_bundle(workdir, os.path.abspath(opts.rootfs), "bundle-sleep", ["sleep", "1000"])
    seccomp_bundle = make_bundle(workdir, os.path.abspath(opts.rootfs), "bundle-seccomp", ["/bin/true"],
                                 seccomp=docker_like_seccomp())

    print(f"{opts.rounds} rounds, interleaved; medians; workdir {workdir}", flush=True)
    try:
        for round_no in range(opts.rounds):
            order = random.sample(runtimes, len(runtimes))
            for rt in order:
                run_and_delete(rt, true_bundle, f"{rt.name}-run-{round_no}")
                rt.measure_rss("run", "--bundle", true_bundle, f"{rt.name}-rss-{round_no}")
                rt.must("delete", "--force", f"{rt.name}-rss-{round_no}")
                run_and_delete(rt, seccomp_bundle, f"{rt.name}-seccomp-{round_no}", "run+delete seccomp")
            for rt in order:
                churn(rt, true_bundle, f"{rt.name}-churn-{round_no}", opts.lifecycles)
            for rt in order:
                exec_and_state(rt, sleep_bundle, f"{rt.name}-exec-{round_no}", opts.repeats)
            print(f"round {round_no + 1}/{opts.rounds} done", file=sys.stderr, flush=True)
        table(runtimes, opts.lifecycles)
    finally:
        for rt in runtimes:
            # Whatever a failed round left behind.
            listed = subprocess.run([rt.path, "--root", rt.root, "list", "--quiet"], capture_output=True, text=True)
            for cid in listed.stdout.split():
                subprocess.run([rt.path, "--root", rt.root, "delete", "--force", cid], capture_output=True)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
