//! `linux.netDevices` (runtime-spec 1.3): host interfaces moved into the container's network
//! namespace. This host's kernel has no dummy interfaces, so each test makes a veth pair with
//! names of its own and moves one end; its guard deletes whatever is left of the pair. When the
//! container's namespace goes, the kernel destroys the moved end and with it its peer.

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::{COMMAND_TIMEOUT, Container, remove_namespace};

/// Runs `ip args…` on the host; panics unless it succeeds; returns its output.
#[track_caller]
fn ip(args: &[&str]) -> String {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn exists(name: &str) -> bool {
    Path::new("/sys/class/net").join(name).exists()
}

/// A veth pair on the host, `name` and `name`p, deleted (if still there) on drop.
struct Veth {
    name: String,
}

impl Veth {
    fn new() -> Veth {
        let veth = Veth::reserve();
        ip(&[
            "link",
            "add",
            &veth.name,
            "type",
            "veth",
            "peer",
            "name",
            &veth.peer(),
        ]);
        veth
    }

    /// Names for a pair that someone else makes (the guard still deletes it).
    fn reserve() -> Veth {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        Veth {
            name: format!("bv{}x{n}", std::process::id() % 100_000),
        }
    }

    fn peer(&self) -> String {
        format!("{}p", self.name)
    }

    /// Waits until the kernel destroyed the pair (namespace teardown is asynchronous).
    #[track_caller]
    fn assert_destroyed(&self) {
        let deadline = Instant::now() + COMMAND_TIMEOUT;
        while exists(&self.peer()) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(
            !exists(&self.peer()),
            "{} outlived the container",
            self.peer()
        );
    }
}

impl Drop for Veth {
    fn drop(&mut self) {
        for name in [self.name.clone(), self.peer()] {
            if exists(&name) {
                let _ = Command::new("ip").args(["link", "del", &name]).status();
            }
        }
    }
}

/// A named network namespace (`ip netns add`), deleted on drop.
struct NamedNetns {
    name: String,
}

impl NamedNetns {
    fn new(c: &Container) -> NamedNetns {
        let name = format!("bt-{}", c.id);
        ip(&["netns", "add", &name]);
        NamedNetns { name }
    }

    fn path(&self) -> String {
        format!("/run/netns/{}", self.name)
    }
}

impl Drop for NamedNetns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

fn with_devices(args: &[&str], devices: Value) -> Container {
    let c = Container::with_args(args);
    c.configure_json(|config| config["linux"]["netDevices"] = devices);
    c
}

#[test]
fn an_interface_moves_renamed_with_its_attributes_and_global_addresses() {
    let veth = Veth::new();
    let name = veth.name.as_str();
    ip(&[
        "link",
        "set",
        name,
        "mtu",
        "1789",
        "address",
        "00:11:22:33:44:55",
    ]);
    ip(&["address", "add", "192.0.2.7/24", "dev", name]);
    ip(&["address", "add", "2001:db8::7/64", "dev", name]);
    // Host scope: the host's business, left out.
    ip(&["address", "add", "127.0.0.33/8", "dev", name]);
    let c = with_devices(
        &["ip", "address", "show", "dev", "ctr0"],
        json!({ name: {"name": "ctr0"} }),
    );
    let out = c.run().success();
    for expected in [
        "ctr0@",
        ",UP",
        "mtu 1789 ",
        "ether 00:11:22:33:44:55 ",
        "inet 192.0.2.7/24 ",
        "inet6 2001:db8::7/64 ",
    ] {
        assert!(out.stdout.contains(expected), "no {expected:?}:\n{out}");
    }
    assert!(!out.stdout.contains("127.0.0.33"), "{out}");
    assert!(!exists(name), "{name} is still on the host");
    veth.assert_destroyed();
}

#[test]
fn without_a_name_it_keeps_its_own_and_a_percent_d_name_is_completed() {
    let keep = Veth::new();
    let template = Veth::new();
    let c = with_devices(
        &["ip", "-o", "link"],
        json!({ keep.name.as_str(): {}, template.name.as_str(): {"name": "net%d"} }),
    );
    let out = c.run().success();
    assert!(out.stdout.contains(&format!(" {}@", keep.name)), "{out}");
    assert!(out.stdout.contains(" net0@"), "{out}");
}

#[test]
fn in_a_joined_namespace_the_interface_stays_after_delete() {
    // The spec: the runtime must not move it back; the namespace's owner decides.
    let veth = Veth::new();
    let c = with_devices(&["sleep", "1000"], json!({ veth.name.as_str(): {} }));
    let netns = NamedNetns::new(&c);
    let path = netns.path();
    c.configure_json(|config| {
        for ns in config["linux"]["namespaces"].as_array_mut().unwrap() {
            if ns["type"] == "network" {
                ns["path"] = path.clone().into();
            }
        }
    });
    c.create().success();
    c.delete_force().success();
    let inside = ip(&["-n", &netns.name, "-o", "link", "show", &veth.name]);
    assert!(inside.contains(",UP"), "{inside}");
    drop(c);
    drop(netns);
    veth.assert_destroyed();
}

/// `create` fails with an error containing `expected` and leaves nothing behind.
#[track_caller]
fn assert_refused(c: &Container, expected: &str) {
    let out = c.create().failure();
    assert!(out.stderr.contains(expected), "{out}");
    assert_eq!(c.status(), None, "the container exists");
    c.assert_no_leaks();
}

#[test]
fn bad_devices_are_refused_before_anything_moves() {
    let c = with_devices(&["true"], json!({"nosuchdev0": {}}));
    assert_refused(
        &c,
        "linux.netDevices: no network interface nosuchdev0 on the host",
    );

    let c = with_devices(&["true"], json!({"a/b": {}}));
    assert_refused(&c, "not a valid interface name");

    let veth = Veth::new();
    let c = with_devices(
        &["true"],
        json!({ veth.name.as_str(): {"name": "a-name-too-long-for-linux"} }),
    );
    assert_refused(&c, "an interface name has 1 to 15 bytes");

    let mut c = with_devices(&["true"], json!({ veth.name.as_str(): {} }));
    c.configure(|spec| remove_namespace(spec, oci_spec::runtime::LinuxNamespaceType::Network));
    c.configure_json(|config| config["linux"]["netDevices"] = json!({ veth.name.as_str(): {} }));
    assert_refused(
        &c,
        "linux.netDevices: the container has no network namespace",
    );
    assert!(exists(&veth.name));
}

#[test]
fn a_name_taken_in_the_container_fails_create_and_the_interface_stays_up_on_the_host() {
    let veth = Veth::new();
    ip(&["link", "set", &veth.name, "up"]);
    let c = with_devices(&["true"], json!({ veth.name.as_str(): {"name": "lo"} }));
    assert_refused(
        &c,
        "the container's network namespace already has an interface lo",
    );
    let host = ip(&["-o", "link", "show", &veth.name]);
    assert!(host.contains(",UP"), "{host}");
}

#[test]
fn features_says_net_devices_are_supported() {
    let c = Container::new();
    let out = c.cmd(&["features"]).success();
    let features: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(features["linux"]["netDevices"]["enabled"], true, "{out}");
}

#[test]
fn the_readme_example_moves_a_veth_end() {
    let veth = Veth::reserve();
    let c = Container::new();
    let out = c
        .run_readme_example_renaming(
            "netdev-demo",
            &[("veth-demo0p", &veth.peer()), ("veth-demo0", &veth.name)],
        )
        .success();
    assert!(out.stdout.contains(" eth1@"), "{out}");
    assert!(out.stdout.contains(",UP"), "{out}");
    assert!(out.stdout.contains("192.0.2.1/24"), "{out}");
    veth.assert_destroyed();
}
