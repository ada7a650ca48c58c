//! NOTIFY_SOCKET: the container's READY=1 reaches the host's socket, with the
//! container's pid, as runc relays it.

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::time::Duration;

use oci_spec::runtime::MountBuilder;

use crate::common::{Container, set_args};

/// Sends READY=1 from inside the container with the host's python3, run from
/// read-only binds of the host's /usr and /lib through the host's loader.
const SEND_READY: &str = "PYTHONHOME=/host/usr /host/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2 \
    --library-path /host/lib/x86_64-linux-gnu:/host/usr/lib/x86_64-linux-gnu /host/usr/bin/python3 \
    -c 'import os, socket; socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM).sendto(b\"READY=1\", os.environ[\"NOTIFY_SOCKET\"])'";

#[test]
fn ready_from_the_container_reaches_the_host_socket() {
    if !Path::new("/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2").exists() {
        eprintln!("skipped: needs the host's x86_64 loader to run python3 in the container");
        return;
    }
    let mut c = Container::new();
    c.configure(|spec| {
        let mut mounts = spec.mounts().clone().unwrap_or_default();
        for dir in ["/usr", "/lib"] {
            let bind = MountBuilder::default()
                .destination(format!("/host{dir}"))
                .typ("bind")
                .source(dir)
                .options(["rbind", "ro"].map(String::from).to_vec())
                .build()
                .unwrap();
            mounts.push(bind);
        }
        spec.set_mounts(Some(mounts));
        set_args(spec, &["sh", "-c", &format!("{SEND_READY} && sleep 1000")]);
    });
    let host_socket = c.dir.join("host-notify.sock");
    let listener = UnixDatagram::bind(&host_socket).unwrap();
    listener
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let with_notify = |cmd: &mut std::process::Command| {
        cmd.env("NOTIFY_SOCKET", &host_socket);
    };
    let bundle = c.bundle.to_str().unwrap().to_string();
    c.spawn_with(&["create", "--bundle", &bundle, &c.id], with_notify)
        .wait(Duration::from_secs(30))
        .success();
    c.spawn_with(&["start", &c.id], with_notify)
        .wait(Duration::from_secs(30))
        .success();

    let mut message = [0u8; 256];
    let len = listener
        .recv(&mut message)
        .expect("READY relayed to the host socket");
    let message = String::from_utf8_lossy(&message[..len]);
    let pid = c.state_json()["pid"].as_i64().unwrap();
    assert_eq!(message, format!("READY=1\nMAINPID={pid}\n"));
}
