//! sd_notify passthrough, as runc does it: when berth runs with
//! NOTIFY_SOCKET set, the container gets its own socket (a directory of the
//! state dir bound read-only at /run/notify), and `start` relays the
//! container's READY=1 to the host's socket with the container's pid.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use oci_spec::runtime::{Mount, MountBuilder};

use super::create::socket_path;
use super::state::ProcessId;
use crate::spec::Bundle;

const HOST_ENV: &str = "NOTIFY_SOCKET";
const DIR: &str = "notify";
const SOCKET: &str = "notify.sock";
const CONTAINER_DIR: &str = "/run/notify";

fn host_socket() -> Option<PathBuf> {
    std::env::var_os(HOST_ENV).map(PathBuf::from)
}

/// At create: the directory for the container's socket, and the mount and
/// environment that lead the container to it. Nothing without NOTIFY_SOCKET.
pub fn prepare(state_dir: &Path, bundle: &mut Bundle) -> Result<Option<Mount>> {
    if host_socket().is_none() {
        return Ok(None);
    }
    let dir = state_dir.join(DIR);
    std::fs::create_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
    // Any container user must reach the socket.
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))?;
    bundle.set_process_env(&[(HOST_ENV, format!("{CONTAINER_DIR}/{SOCKET}"))]);
    let options = ["bind", "nosuid", "noexec", "nodev", "ro"]
        .map(String::from)
        .to_vec();
    let mount = MountBuilder::default()
        .destination(CONTAINER_DIR)
        .typ("bind")
        .source(dir)
        .options(options)
        .build()
        .context("building the notify socket mount")?;
    Ok(Some(mount))
}

/// The container's end, bound by `start` before it releases the init.
pub struct Relay {
    socket: UnixDatagram,
    host: PathBuf,
}

pub fn listen(state_dir: &Path) -> Result<Option<Relay>> {
    let dir = state_dir.join(DIR);
    let Some(host) = host_socket().filter(|_| dir.is_dir()) else {
        return Ok(None);
    };
    let path = socket_path(&dir, SOCKET)?;
    let _ = std::fs::remove_file(&path.path);
    let socket = UnixDatagram::bind(&path.path).context("binding the container's notify socket")?;
    std::fs::set_permissions(dir.join(SOCKET), std::fs::Permissions::from_mode(0o777))?;
    Ok(Some(Relay { socket, host }))
}

impl Relay {
    /// Waits for READY=1 from the container (or its end) and tells the host.
    pub fn relay_ready(&self, init: ProcessId) -> Result<()> {
        self.socket
            .set_read_timeout(Some(Duration::from_millis(100)))?;
        let mut buf = [0u8; 4096];
        while init.is_alive() {
            let len = match self.socket.recv(&mut buf) {
                Ok(len) => len,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e).context("reading the container's notify socket"),
            };
            if String::from_utf8_lossy(&buf[..len])
                .lines()
                .any(|l| l == "READY=1")
            {
                let message = format!("READY=1\nMAINPID={}\n", init.pid);
                UnixDatagram::unbound()?
                    .send_to(message.as_bytes(), &self.host)
                    .with_context(|| format!("notifying {}", self.host.display()))?;
                return Ok(());
            }
        }
        Ok(())
    }
}
