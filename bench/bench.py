#!/usr/bin/env python3
"""Side-by-side benchmark of OCI runtimes on one bundle (crun, runc, berth by default).

Measured interleaved: within a round, each workload runs one step (one lifecycle, one call) per
runtime in turn, the order shuffled at every step, so that machine noise hits every runtime alike
(in the QEMU VM of tools/vm a burst of the host's load lasts seconds: batches of one runtime's 20
runs caught it one runtime at a time):
  run+delete   N x (`run` of /bin/true, then `delete --force`) (ms for all N)
  + seccomp    the same with a seccomp profile shaped like Docker's default (deny, three
               architectures, ~360 syscalls allowed by name)
  churn        N lifecycles of create, start, wait for exit, delete (ms for all N)
  exec         `exec ID /bin/true` into a running container (ms)
  state        `state ID` of a running container (ms)
  peak RSS     the largest max-RSS of `run` (GNU time's %M, in MiB; see measure_rss)
The floor: `unshare` of the same namespaces + `chroot` into the rootfs + /bin/true, N times
(no cgroup, no mounts: what any runtime must at least pay for run+delete), and its peak RSS;
beside `state`, the rootfs's /bin/true run directly: the start and exit of a static executable
that does nothing, what any command costs at least.

Each cell is the median over rounds; each ratio is the median of the per-round ratios against
the baseline (crun), so that a slow round weighs on every runtime alike; the table gives their
range too (the spread). --svg draws the ratios, the range as a line across each bar.
Run it through bench/run, which provides the private mount namespace crun needs on a hybrid host.
Needs root. Python 3 standard library only.
"""

import argparse
import json
import os
import random
import re
import select
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_CONFIG = os.path.join(REPO, "integration", "common", "default-config.json")
UNISTD = "/usr/include/x86_64-linux-gnu/asm/unistd_64.h"  # Debian's linux-libc-dev


def timed_spawn(argv, log):
    """Runs argv with stdin and stdout on /dev/null and stderr appended to log; returns (seconds,
    exit code). posix_spawnp, the cheapest start Python has, for the runtimes and the floor alike."""
    actions = [
        (os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
        (os.POSIX_SPAWN_OPEN, 1, "/dev/null", os.O_WRONLY, 0),
        (os.POSIX_SPAWN_OPEN, 2, log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644),
    ]
    start = time.perf_counter()
    pid = os.posix_spawnp(argv[0], argv, os.environ, file_actions=actions)
    try:
        _, status = os.waitpid(pid, 0)
    except BaseException:
        # Stopped (see stop_on_termination): the call finishes first, so that the cleanup
        # finds the container it makes.
        os.waitpid(pid, 0)
        raise
    elapsed = time.perf_counter() - start
    return elapsed, os.waitstatus_to_exitcode(status)


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
        return timed_spawn([self.path, "--root", self.root, *args], self.log)

    def measure_rss(self, *args):
        """Runs the runtime under GNU time to get its max RSS.

        Not via wait4 from here: a child forked from this Python process starts with Python's
        own RSS as its high-water mark, which would hide any runtime smaller than Python.
        GNU time is small, so the runtime it forks starts near zero.
        """
        wrapped = ["/usr/bin/time", "-f", "%M", "-o", self.rss_file, self.path, "--root", self.root, *args]
        # Not subprocess.run, which kills time but not the runtime when the run is stopped:
        # Popen's exit waits for the call to finish, so that the cleanup finds its container.
        with subprocess.Popen(wrapped, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL) as call:
            code = call.wait()
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
    # Absolute, so no runtime nests it inside the benchmark's own cgroup; the run's and the
    # bundle's own, so that two benchmarks (or a benchmark and the test that runs one) never
    # share it, nor do containers that run at once (a `delete --force` kills the whole cgroup).
    config["linux"]["cgroupsPath"] = f"/berth-bench-{os.getpid()}-{name}"
    with open(os.path.join(bundle, "config.json"), "w") as f:
        json.dump(config, f)
    return bundle


def interleaved(runtimes, steps, step):
    """`steps` calls of step(rt, n) per runtime, the runtimes' order shuffled at every step;
    returns each runtime's list of the seconds its steps took."""
    took = {rt: [] for rt in runtimes}
    for n in range(steps):
        for rt in random.sample(runtimes, len(runtimes)):
            took[rt].append(step(rt, n))
    return took


def run_and_delete(rt, bundle, cid):
    return rt.must("run", "--bundle", bundle, cid) + rt.must("delete", "--force", cid)


class Floor:
    """`unshare` + `chroot` + /bin/true: the namespaces, the root switch and an exec, nothing else;
    and the rootfs's /bin/true alone, a static executable that does nothing."""

    name = "floor"

    def __init__(self, rootfs, workdir):
        self.static_true = [os.path.join(rootfs, "bin", "true")]
        self.argv = ["unshare", "--pid", "--net", "--ipc", "--uts", "--mount", "--fork",
                     "chroot", rootfs, "/bin/true"]
        self.log = os.path.join(workdir, "floor.stderr")
        self.rss_file = os.path.join(workdir, "floor.rss")
        self.peak_rss_kib = 0
        self.samples = {}

    def record(self, metric, seconds):
        self.samples.setdefault(metric, []).append(seconds)

    def run_once(self):
        return self.must(self.argv)

    def static_start(self):
        return self.must(self.static_true)

    def must(self, argv):
        elapsed, code = timed_spawn(argv, self.log)
        if code != 0:
            sys.exit(f"floor: `{' '.join(argv)}` exited {code}; see {self.log}")
        return elapsed

    def measure_rss(self):
        subprocess.run(["/usr/bin/time", "-f", "%M", "-o", self.rss_file, *self.argv], check=True)
        with open(self.rss_file) as f:
            self.peak_rss_kib = max(self.peak_rss_kib, int(f.read().split()[-1]))


def read_pid(path):
    with open(path) as f:
        return int(f.read().strip())


def lifecycle(rt, bundle, cid):
    """create, start, wait for the exit, delete; returns the seconds it took."""
    start = time.perf_counter()
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
    return time.perf_counter() - start


def measure_round(runtimes, floor, bundles, round_no, opts):
    """One round of every workload, each interleaved across the runtimes."""
    true_bundle, seccomp_bundle, sleep_bundles = bundles
    floor_too = runtimes + [floor]

    def run_step(rt, n):
        if rt is floor:
            return floor.run_once()
        return run_and_delete(rt, true_bundle, f"{rt.name}-run-{round_no}-{n}")

    for rt, took in interleaved(floor_too, opts.lifecycles, run_step).items():
        rt.record("run+delete", sum(took))
    for rt, took in interleaved(runtimes, opts.lifecycles, lambda rt, n: run_and_delete(
            rt, seccomp_bundle, f"{rt.name}-seccomp-{round_no}-{n}")).items():
        rt.record("run+delete seccomp", sum(took))
    for rt, took in interleaved(runtimes, opts.lifecycles, lambda rt, n: lifecycle(
            rt, true_bundle, f"{rt.name}-churn-{round_no}-{n}")).items():
        rt.record("churn", sum(took))
    for rt in runtimes:
        rt.measure_rss("run", "--bundle", true_bundle, f"{rt.name}-rss-{round_no}")
        rt.must("delete", "--force", f"{rt.name}-rss-{round_no}")
    floor.measure_rss()

    running = {rt: f"{rt.name}-exec-{round_no}" for rt in runtimes}
    for rt, cid in running.items():
        rt.must("run", "--detach", "--bundle", sleep_bundles[rt], cid)
    calls = interleaved(runtimes, opts.repeats, lambda rt, n: rt.must("exec", running[rt], "/bin/true"))
    for rt, took in calls.items():
        rt.record("exec", statistics.median(took))
    def state_step(rt, n):
        if rt is floor:
            return floor.static_start()
        return rt.must("state", running[rt])

    calls = interleaved(floor_too, opts.repeats, state_step)
    for rt, took in calls.items():
        rt.record("state", statistics.median(took))
    for rt, cid in running.items():
        rt.must("delete", "--force", cid)


ROWS = [
    # (label, metric); the label's N is --lifecycles.
    ("{n} x run+delete (ms)", "run+delete"),
    ("  with seccomp (ms)", "run+delete seccomp"),
    ("{n} x create/start/wait/delete (ms)", "churn"),
    ("exec /bin/true (ms)", "exec"),
    ("state (ms)", "state"),
]


def round_ratios(rt, base, metric):
    """The per-round ratios of rt to base (rounds are interleaved)."""
    return [a / b for a, b in zip(rt.samples.get(metric, []), base.samples[metric])]


def results(runtimes, floor, base):
    """[(label, [(name, value, ratio to base, (lowest, highest) per-round ratio)])]; value None
    where a column has no such row."""
    columns = runtimes + [floor]
    rows = []
    for label, metric in ROWS:
        cells = []
        for rt in columns:
            samples = rt.samples.get(metric)
            value = statistics.median(samples) * 1000 if samples else None
            ratios = round_ratios(rt, base, metric)
            spread = (min(ratios), max(ratios)) if ratios else None
            cells.append((rt.name, value, statistics.median(ratios) if ratios else None, spread))
        rows.append((label, cells))
    base_rss = base.peak_rss_kib / 1024
    rows.append(("peak RSS of run (MiB)",
                 [(rt.name, rt.peak_rss_kib / 1024, rt.peak_rss_kib / 1024 / base_rss, None)
                  for rt in columns]))
    return rows


def print_table(rows, base, lifecycles):
    names = [name for name, _, _, _ in rows[0][1]]
    header = ["", *[f"{name}" for name in names]]
    lines = [header]
    for label, cells in rows:
        shown = []
        for name, value, r, spread in cells:
            if value is None:
                shown.append("-")
            elif name == base.name:
                shown.append(f"{value:.2f}")
            elif spread and spread[0] != spread[1]:
                shown.append(f"{value:.2f} (x{r:.2f}, {spread[0]:.2f}-{spread[1]:.2f})")
            else:
                shown.append(f"{value:.2f} (x{r:.2f})")
        lines.append([label.format(n=lifecycles), *shown])
    widths = [max(len(row[i]) for row in lines) for i in range(len(header))]
    print(f"ratios: median of per-round ratios against {base.name} (lowest-highest round)")
    for row in lines:
        print("  ".join(cell.rjust(w) if i else cell.ljust(w) for i, (cell, w) in enumerate(zip(row, widths))))


def svg_chart(rows, base, lifecycles, title):
    """Horizontal bars: each runtime's ratio against the baseline, per row, with the range of
    the per-round ratios as a line across the bar; a dashed line at 1."""
    colors = {"runc": "#9e9e9e", "berth": "#1565c0", "floor": "#c8e6c9"}
    others = [name for name, _, _, _ in rows[0][1] if name != base.name]
    bar, gap, label_w, plot_w, top = 14, 12, 250, 420, 50
    widest = max(max(r, spread[1] if spread else 0)
                 for _, cells in rows for n, v, r, spread in cells if r and n != base.name)
    scale = plot_w / max(3.0, widest)
    height = top + len(rows) * (len(others) * bar + gap) + 40
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{label_w + plot_w + 80}" height="{height}" '
           'font-family="sans-serif" font-size="12">',
           f'<rect width="100%" height="100%" fill="white"/>',
           f'<text x="10" y="20" font-size="14" font-weight="bold">{title}</text>',
           f'<text x="10" y="38">time or memory relative to {base.name} (= 1; shorter is better)</text>']
    y = top
    for label, cells in rows:
        out.append(f'<text x="10" y="{y + len(others) * bar / 2 + 4}">{label.format(n=lifecycles)}</text>')
        for name, value, r, spread in cells:
            if name == base.name:
                continue
            if r is not None:
                w = r * scale
                out.append(f'<rect x="{label_w}" y="{y}" width="{w:.1f}" height="{bar - 2}" '
                           f'fill="{colors.get(name, "#ffb74d")}"/>')
                if spread:
                    low, high = label_w + spread[0] * scale, label_w + spread[1] * scale
                    out.append(f'<line x1="{low:.1f}" y1="{y + (bar - 2) / 2}" x2="{high:.1f}" '
                               f'y2="{y + (bar - 2) / 2}" stroke="black"/>')
                    w = max(w, spread[1] * scale)
                out.append(f'<text x="{label_w + w + 4:.1f}" y="{y + bar - 4}">{name} x{r:.2f}</text>')
            y += bar
        y += gap
    x1 = label_w + scale
    out.append(f'<line x1="{x1:.1f}" y1="{top - 6}" x2="{x1:.1f}" y2="{y}" stroke="black" stroke-dasharray="4 3"/>')
    out.append(f'<text x="{x1 + 3:.1f}" y="{y + 14}">{base.name}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def stop_on_termination():
    """SIGTERM or SIGHUP (a test's timeout, a closed terminal) ends the run through main's
    `finally`, which deletes the runtimes' containers and with them their cgroups."""
    def stop(signum, _frame):
        sys.exit(f"bench: stopped by signal {signum}")

    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, stop)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runtime", action="append", metavar="NAME=PATH",
                        help="runtime to compare; the first is the baseline "
                             "(default: crun=/usr/bin/crun runc=/usr/sbin/runc berth=target/dist/berth)")
    parser.add_argument("--rootfs", default=os.path.join(REPO, "build", "rootfs"))
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--lifecycles", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=10, help="exec and state calls per round")
    parser.add_argument("--svg", metavar="PATH", help="also draw the ratios as an SVG chart")
    parser.add_argument("--title", default="berth vs runc vs crun", help="the chart's title")
    opts = parser.parse_args()

    specs = opts.runtime or [
        "crun=" + (shutil.which("crun") or "/usr/bin/crun"),
        "runc=" + (shutil.which("runc") or "/usr/sbin/runc"),
        "berth=" + os.environ.get("BERTH_BIN", os.path.join(REPO, "target", "dist", "berth")),
    ]
    if os.geteuid() != 0:
        sys.exit("bench: needs root")
    if not os.path.exists(os.path.join(opts.rootfs, "bin", "busybox")):
        sys.exit(f"bench: no rootfs at {opts.rootfs} (make rootfs)")

    stop_on_termination()
    workdir = tempfile.mkdtemp(prefix="berth-bench-")
    runtimes = []
    try:
        for spec in specs:
            name, _, path = spec.partition("=")
            if not os.access(path, os.X_OK):
                sys.exit(f"bench: {name}: {path} is not executable")
            runtimes.append(Runtime(name, os.path.abspath(path), workdir))
        measure(runtimes, os.path.abspath(opts.rootfs), workdir, opts)
    finally:
        for signum in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, signal.SIG_IGN)  # a second signal must not cut the cleanup
        for rt in runtimes:
            # Whatever a failed or stopped round left behind.
            listed = subprocess.run([rt.path, "--root", rt.root, "list", "--quiet"], capture_output=True, text=True)
            for cid in listed.stdout.split():
                subprocess.run([rt.path, "--root", rt.root, "delete", "--force", cid], capture_output=True)
        shutil.rmtree(workdir, ignore_errors=True)


def measure(runtimes, rootfs, workdir, opts):
    """Every round, then the table and the chart."""
    bundles = (
        make_bundle(workdir, rootfs, "bundle-true", ["/bin/true"]),
        make_bundle(workdir, rootfs, "bundle-seccomp", ["/bin/true"], seccomp=docker_like_seccomp()),
        {rt: make_bundle(workdir, rootfs, f"bundle-sleep-{rt.name}", ["sleep", "1000"]) for rt in runtimes},
    )
    floor = Floor(rootfs, workdir)
    print(f"{opts.rounds} rounds, interleaved; medians; workdir {workdir}", flush=True)
    for round_no in range(opts.rounds):
        measure_round(runtimes, floor, bundles, round_no, opts)
        print(f"round {round_no + 1}/{opts.rounds} done", file=sys.stderr, flush=True)
    rows = results(runtimes, floor, runtimes[0])
    print_table(rows, runtimes[0], opts.lifecycles)
    if opts.svg:
        with open(opts.svg, "w") as f:
            f.write(svg_chart(rows, runtimes[0], opts.lifecycles, opts.title))
        print(f"chart: {opts.svg}")

if __name__ == "__main__":
    main()
