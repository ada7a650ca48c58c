//! Fault injection: SIGKILL `create` part-way through, then `delete --force` must leave no
//! process, mount, fifo, cgroup or state dir (checked by the harness's leak check).
//!
//! runc deviates: after a killed `create`, runc has no state.json yet, so its `delete --force`
//! leaves the container's cgroups behind.

use std::path::PathBuf;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use oci_spec::runtime::{HookBuilder, HooksBuilder};

use crate::common::{COMMAND_TIMEOUT, Container, set_args};

/// Starts `create`, SIGKILLs it after `delay`, then force-deletes and checks for leftovers.
pub fn kill_create_after(c: &Container, delay: Duration) {
    let bundle = c.bundle.to_str().unwrap();
    let mut create = c.spawn(&["create", "--bundle", bundle, &c.id]);
    std::thread::sleep(delay);
    // The runtime may already have finished; then the kill is a no-op and delete cleans up a
    // fully created container instead — also a case worth checking.
    let _ = kill(Pid::from_raw(create.child.id() as i32), Signal::SIGKILL);
    let _ = create.child.wait();
    let out = c.delete_force();
    assert_eq!(
        out.code, 0,
        "delete --force after a killed create (after {delay:?}):\n{out}"
    );
    let leaks = c.settled_leaks();
    assert!(
        leaks.is_empty(),
        "create SIGKILLed after {delay:?}, then delete --force, left behind:\n  {}",
        leaks.join("\n  ")
    );
}

#[test]
fn sigkill_during_create_then_delete_force_cleans_up() {
    // Every millisecond through the first 20 (where a create spends its time), then coarser.
    for delay_ms in (0..20).chain([25, 30, 40, 60, 80]) {
        let mut c = Container::new();
        c.configure(|spec| set_args(spec, &["sleep", "1000"]));
        kill_create_after(&c, Duration::from_millis(delay_ms));
    }
}

#[test]
fn sigkill_during_create_runtime_hook_then_delete_force_cleans_up() {
    // A createRuntime hook that sleeps holds `create` mid-way (namespaces and mounts done, the
    // user process not yet ready), so the kill lands there.
    for delay_ms in [30, 150, 400] {
        let mut c = Container::new();
        c.configure(|spec| {
            set_args(spec, &["sleep", "1000"]);
            let hook = HookBuilder::default()
                .path(PathBuf::from("/bin/sleep"))
                .args(vec!["sleep".to_string(), "1".to_string()])
                .build()
                .unwrap();
            spec.set_hooks(Some(
                HooksBuilder::default()
                    .create_runtime(vec![hook])
                    .build()
                    .unwrap(),
            ));
        });
        kill_create_after(&c, Duration::from_millis(delay_ms));
    }
}

#[test]
fn sigkill_of_foreground_run_then_delete_force_cleans_up() {
    let mut c = Container::new();
    c.configure(|spec| set_args(spec, &["sleep", "1000"]));
    let bundle = c.bundle.to_str().unwrap().to_string();
    let mut run = c.spawn(&["run", "--bundle", &bundle, &c.id]);
    c.wait_for_status("running", COMMAND_TIMEOUT);
    let _ = kill(Pid::from_raw(run.child.id() as i32), Signal::SIGKILL);
    let _ = run.child.wait();
    c.delete_force().success();
    c.assert_no_leaks();
}
