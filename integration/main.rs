//! berth's integration tests: they drive a runc-compatible binary as a user would.
//!
//! The binary is `$BERTH_BIN`, default the berth cargo built for this run; any runc-compatible
//! runtime works (`BERTH_BIN=/usr/sbin/runc`), which gives side-by-side checks. Must run as root.
//! Tests run in parallel: each has its own container id, `--root` and bundle (see `common`).
//!
//! Tests that runc 1.1.5 is known to fail, because runc deviates from runtime-spec, carry a
//! `// runc deviates:` note.

mod common;

mod bench;
mod cgroups;
mod cli;
mod console;
mod criu;
mod errors;
mod events;
mod exec;
mod faults;
mod frozen_cgroups;
mod hooks;
mod idmap;
mod intel_rdt;
mod lifecycle;
mod lsm;
mod memory_policy;
mod net_devices;
mod notify;
mod pidfd_socket;
mod process;
mod rootfs;
mod rootless;
mod seccomp;
mod security;
mod signals;
mod soak;
mod systemd_cgroups;
mod trace;
mod userns;
