//! berth under real engines: Docker and podman (and containerd, in its own files) start
//! containers with berth as their OCI runtime, the way users run them every day.
//!
//! Every scenario runs twice: with berth (`$BERTH_BIN`, default the berth cargo built) and with
//! Debian's runc (/usr/sbin/runc) as the control. A scenario that fails with runc is a bug in
//! the test, not in berth. Test names say which: `docker::berth::exec_tty`,
//! `podman::runc::oom_kill`, so `cargo test --test engines -- ::runc::` runs the controls.
//!
//! Each engine's daemon is private to this test process (own state dirs, sockets, cgroup parent
//! and image store; see `harness`), started when the first test needs it and stopped by its PID
//! when the process exits, whatever the tests did. Must run as root. The image is the busybox
//! rootfs of `make rootfs`, packed by `tools/mkimage` and loaded without a registry.

#[path = "../common/mod.rs"]
mod common;

mod harness;

mod capture;
mod containerd;
mod cri;
mod cri_client;
mod docker;
mod podman;
mod podman_rootless;
mod replay;
mod scenarios;
