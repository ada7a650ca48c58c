//! `make bench` (README): the benchmark runs the runtime under test beside runc and crun, prints
//! a ratio for every workload and draws its chart. One round of one lifecycle; nothing about
//! the times, which belong to the benchmark alone.

use std::fs;
use std::path::Path;

use crate::common::{COMMAND_TIMEOUT, Container, rootfs_template, runtime};

/// Each workload's row, and how many ratios against crun it has: runc's and the runtime under
/// test's, and the floor's where there is one.
const WORKLOADS: [(&str, usize); 6] = [
    ("run+delete", 3),
    ("with seccomp", 2),
    ("create/start/wait/delete", 2),
    ("exec /bin/true", 2),
    ("state", 3),
    ("peak RSS of run", 3),
];

#[test]
fn the_benchmark_runs_every_runtime_and_draws_its_chart() {
    // Not run: only its temporary directory, removed by the guard.
    let c = Container::new();
    let chart = c.dir.join("bench.svg");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/run");
    let under_test = format!("berth={}", runtime().display());
    let args = [
        "--rounds",
        "1",
        "--lifecycles",
        "1",
        "--repeats",
        "1",
        "--runtime",
        "crun=/usr/bin/crun",
        "--runtime",
        "runc=/usr/sbin/runc",
        "--runtime",
        &under_test,
        "--rootfs",
        rootfs_template().to_str().expect("utf-8 rootfs path"),
        "--svg",
        chart.to_str().expect("utf-8 temp dir"),
    ];
    let out = c
        .spawn_program(&script, &args, |_| {})
        .wait(COMMAND_TIMEOUT)
        .success();
    for (workload, expected) in WORKLOADS {
        let row = out.stdout.lines().find(|line| line.contains(workload));
        let ratios = row.map_or(0, |row| row.matches("(x").count());
        assert_eq!(ratios, expected, "ratios for {workload:?}:\n{out}");
    }
    let svg = fs::read_to_string(&chart).expect("the benchmark's chart");
    assert!(
        svg.starts_with("<svg") && svg.contains("berth"),
        "not a chart of berth:\n{svg}"
    );
}
