//! Signals: 0 (is it alive?) and the realtime ones systemd-based images stop on (SIGRTMIN+3 is
//! 37), sent with `kill` by number, as engines send them, and by name, and forwarded by a
//! foreground `run`.

use std::time::{Duration, Instant};

use crate::common::{COMMAND_TIMEOUT, Container, is_berth, set_args};

/// A running container whose init records, one line each, the signals 37 and 62 it receives.
fn recorder() -> Container {
    let mut c = Container::new();
    let script = "for s in 37 62; do trap \"echo $s >> /dev/shm/got\" $s; done; \
                  touch /dev/shm/got; while :; do sleep 0.05; done";
    c.configure(|spec| set_args(spec, &["sh", "-c", script]));
    c.create().success();
    c.start().success();
    c
}

/// Waits until the recorder has recorded `expected` (one signal per line, in order); the file
/// exists once the traps are set.
#[track_caller]
fn assert_recorded(c: &Container, expected: &str) {
    let deadline = Instant::now() + COMMAND_TIMEOUT;
    loop {
        let out = c.exec(&[], &["cat", "/dev/shm/got"]);
        let got = out.stdout;
        if out.code == 0 && got == expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "recorded {got:?}, expected {expected:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn realtime_signals_by_number_reach_the_container() {
    let c = recorder();
    assert_recorded(&c, "");
    c.kill("37").success();
    assert_recorded(&c, "37\n");
    c.cmd(&["kill", "--all", &c.id, "62"]).success();
    assert_recorded(&c, "37\n62\n");
}

#[test]
fn realtime_signals_by_name_reach_the_container() {
    if !is_berth() {
        return; // runc 1.1.5 takes realtime signals by number only ("unknown signal")
    }
    let c = recorder();
    assert_recorded(&c, "");
    let mut expected = String::new();
    for (name, number) in [
        ("SIGRTMIN+3", 37),
        ("RTMIN+3", 37),
        ("rtmin+3", 37),
        ("SIGRTMAX-2", 62),
    ] {
        c.kill(name).success();
        expected.push_str(&format!("{number}\n"));
        assert_recorded(&c, &expected);
    }
}

#[test]
fn kill_0_tells_whether_the_container_runs() {
    let mut c = Container::new();
    c.start_sleeper();
    c.kill("0").success();
    c.cmd(&["kill", "--all", &c.id, "0"]).success();
    assert_eq!(c.status().as_deref(), Some("running"));
    c.kill("KILL").success();
    c.wait_for_status("stopped", COMMAND_TIMEOUT);
    let out = c.kill("0").failure();
    assert!(out.stderr.contains("container not running"), "{out}");
}

#[test]
fn a_foreground_run_forwards_realtime_signals() {
    let mut c = Container::new();
    let script = "trap 'exit 3' 37; touch /dev/shm/ready; while :; do sleep 0.05; done";
    c.configure(|spec| set_args(spec, &["sh", "-c", script]));
    let bundle = c.bundle.to_str().expect("utf-8 temp dir").to_string();
    let run = c.spawn(&["run", "--bundle", &bundle, &c.id]);
    c.wait_for_status("running", COMMAND_TIMEOUT);
    let deadline = Instant::now() + COMMAND_TIMEOUT;
    while c.exec(&[], &["test", "-e", "/dev/shm/ready"]).code != 0 {
        assert!(Instant::now() < deadline, "the trap was never set");
        std::thread::sleep(Duration::from_millis(20));
    }
    let run_pid = run.child.id() as libc::pid_t;
    // SAFETY: kill(2) of the runtime process this test spawned (nix names no realtime signal).
    assert_eq!(unsafe { libc::kill(run_pid, 37) }, 0);
    assert_eq!(run.wait(COMMAND_TIMEOUT).code, 3);
}
