//! A private containerd: its root, state, sockets and plugin dirs all under one directory of
//! this test process, so it never meets the host's containerd (nor another test run's).
//!
//! Docker's fixture runs its own (dockerd would otherwise use the host's containerd whenever
//! /run/containerd/containerd.sock exists); the containerd suites may start theirs with
//! [`Containerd::start`] and the CRI plugin's tables in `extra_toml`.
//!
//! Left outside that directory, as containerd 1.6 decides: shims' sockets in
//! /run/containerd/s/, named by a hash of this containerd's address (removed when each shim
//! exits).

use std::fs;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::daemon::Daemon;

pub struct Containerd {
    pub daemon: Daemon,
    /// The gRPC socket (`ctr --address`, dockerd `--containerd`).
    pub socket: PathBuf,
}

impl Containerd {
    /// Starts containerd in `dir`; the CRI plugin is disabled unless `cri`. `extra_toml` is
    /// appended to the config (tables only: top-level keys are all set here).
    #[track_caller]
    pub fn start(dir: &Path, cri: bool, extra_toml: &str) -> Self {
        let root = dir.join("root");
        let state = dir.join("state");
        let socket = dir.join("containerd.sock");
        let disabled = if cri {
            ""
        } else {
            r#""io.containerd.grpc.v1.cri""#
        };
        let config = format!(
            r#"version = 2
root = "{root}"
state = "{state}"
disabled_plugins = [{disabled}]

[grpc]
  address = "{socket}"

[plugins."io.containerd.internal.v1.opt"]
  path = "{opt}"

{extra_toml}
"#,
            root = root.display(),
            state = state.display(),
            socket = socket.display(),
            opt = dir.join("opt").display(),
        );
        fs::create_dir_all(dir).expect("create containerd's dir");
        let config_path = dir.join("config.toml");
        fs::write(&config_path, config).expect("write containerd's config");
        let mut command = Command::new("containerd");
        command.arg("--config").arg(&config_path).current_dir(dir);
        let daemon = Daemon::start("containerd", command, &dir.join("containerd.log"), || {
            UnixStream::connect(&socket).is_ok()
        });
        Containerd { daemon, socket }
    }
}
