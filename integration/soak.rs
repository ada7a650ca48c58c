//! Soak: many sequential runs must not hang or accumulate fds, mounts or state.

use std::time::Instant;

use crate::common::{Container, set_args};

const RUNS: usize = 1000;

fn open_fd_count() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .count()
}

#[test]
fn thousand_sequential_runs_leak_nothing() {
    let mut c = Container::new();
    c.configure(|spec| set_args(spec, &["/bin/true"]));
    let fds_before = open_fd_count();
    let started = Instant::now();
    // The same id every time: `run` deletes the container when it exits, so the id is free again.
    for n in 0..RUNS {
        let out = c.run();
        assert_eq!(out.code, 0, "run {n} of {RUNS} failed:\n{out}");
    }
    eprintln!("{RUNS} runs in {:?}", started.elapsed());
    c.assert_no_leaks();
    // Other tests run in parallel and open fds too, so allow slack — but a per-run leak would
    // show up as hundreds.
    let fds_after = open_fd_count();
    assert!(
        fds_after < fds_before + 64,
        "test process fds grew from {fds_before} to {fds_after} over {RUNS} runs"
    );
}
