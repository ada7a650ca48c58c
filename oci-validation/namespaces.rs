//! Namespaces (config-linux.md): new ones, joined ones, inherited ones, user namespace mappings,
//! and the hostname that needs a UTS namespace.

use std::fs;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use serde_json::{Value, json};

use crate::common::{Container, host_namespace, set_args};
use crate::suite::{self, Checks, PrivateMountNamespace};

/// The names under /proc/<pid>/ns and their config.json types.
const NAMESPACES: [(&str, &str); 7] = [
    ("cgroup", "cgroup"),
    ("ipc", "ipc"),
    ("mnt", "mount"),
    ("net", "network"),
    ("pid", "pid"),
    ("user", "user"),
    ("uts", "uts"),
];

fn namespace_of(pid: i64, name: &str) -> String {
    fs::read_link(format!("/proc/{pid}/ns/{name}"))
        .map(|link| link.display().to_string())
        .unwrap_or_else(|e| format!("unreadable: {e}"))
}

fn set_namespaces(c: &mut Container, namespaces: Value) {
    suite::edit(c, |config| config["linux"]["namespaces"] = namespaces);
}

/// runtime-tools `hostname`: the hostname is set in the container's UTS namespace.
#[test]
fn hostname() {
    let mut checks = Checks::default();
    for hostname in [None, Some("hostname-specific")] {
        let mut c = suite::container();
        c.configure(|spec| {
            spec.set_hostname(hostname.map(String::from));
            set_args(spec, &["hostname"]);
        });
        let out = c.run();
        checks.succeeds(&format!("hostname {hostname:?}"), &out);
        if let Some(hostname) = hostname {
            checks.equal("hostname inside", out.stdout.trim(), hostname);
        }
    }
    checks.done();
}

/// runtime-tools `linux_ns_itype`: without namespaces in the config, the container inherits
/// every namespace of the runtime. The runtime runs in a private mount namespace of this case's
/// own, which the container must then share: a runtime that mounts there (or leaves mounts
/// behind) cannot touch the host's. The container's mounts must be gone after delete.
#[test]
fn linux_ns_itype() {
    let mut c = suite::container();
    c.configure(|spec| {
        set_args(spec, &["sleep", "30"]);
        spec.set_hostname(None);
    });
    set_namespaces(&mut c, json!([]));
    let runtime_mounts = PrivateMountNamespace::new();
    let bundle = c.bundle.to_str().unwrap();
    let mut checks = Checks::default();
    let created = runtime_mounts.cmd(&c, &["create", "--bundle", bundle, &c.id]);
    checks.succeeds("create without namespaces", &created);
    if created.code == 0 {
        let state: Value = serde_json::from_str(&runtime_mounts.cmd(&c, &["state", &c.id]).stdout)
            .unwrap_or_default();
        let pid = state["pid"].as_i64().unwrap_or(0);
        for (name, _) in NAMESPACES {
            let runtime = match name {
                "mnt" => runtime_mounts.inode(),
                _ => host_namespace(name),
            };
            checks.equal(
                &format!("{name} namespace"),
                namespace_of(pid, name),
                runtime,
            );
        }
        // An exec'd process lands in the container's root too, not the runtime's.
        let exec = runtime_mounts.cmd(&c, &["exec", &c.id, "sh", "-c", "test -x /oci-check"]);
        checks.succeeds("exec into the container's root", &exec);
        runtime_mounts.cmd(&c, &["kill", &c.id, "KILL"]);
        checks.check(suite::reaches(&c, &["stopped"]), "killed, it did not stop");
        checks.succeeds("delete", &runtime_mounts.cmd(&c, &["delete", &c.id]));
        let left = runtime_mounts.mounts_under(&c.dir);
        checks.check(
            left.is_empty(),
            format!("mounts left after delete: {left:?}"),
        );
    }
    // A create that fails once the container's mounts are made takes them away again.
    let mut failing = suite::container();
    failing.configure(|spec| {
        set_args(spec, &["/no/such/program"]);
        spec.set_hostname(None);
    });
    set_namespaces(&mut failing, json!([]));
    let bundle = failing.bundle.to_str().unwrap();
    let created = runtime_mounts.cmd(&failing, &["create", "--bundle", bundle, &failing.id]);
    checks.fails("create of a missing program", &created);
    let left = runtime_mounts.mounts_under(&failing.dir);
    checks.check(
        left.is_empty(),
        format!("mounts left by a failed create: {left:?}"),
    );
    checks.done();
}

/// runtime-tools `linux_ns_nopath`: namespaces listed without a path are new ones.
#[test]
fn linux_ns_nopath() {
    let mut c = suite::container();
    c.configure(|spec| set_args(spec, &["sleep", "30"]));
    let namespaces: Vec<Value> = NAMESPACES
        .iter()
        .map(|(_, typ)| json!({"type": typ}))
        .collect();
    set_namespaces(&mut c, namespaces.into());
    suite::edit(&mut c, |config| {
        // As runtime-tools: the container's ids 0..1000 are the host's 1000..2000.
        let mapping = json!([{"containerID": 0, "hostID": 1000, "size": 1000}]);
        config["linux"]["uidMappings"] = mapping.clone();
        config["linux"]["gidMappings"] = mapping;
    });
    c.create().success();
    let pid = c.state_json()["pid"].as_i64().unwrap();
    let mut checks = Checks::default();
    for (name, _) in NAMESPACES {
        let container = namespace_of(pid, name);
        checks.check(
            container != host_namespace(name),
            format!("{name}: the container shares the runtime's {container}"),
        );
    }
    checks.done();
}

/// A process in new namespaces of its own, made by util-linux unshare (which forks it), in a
/// process group of its own so that it goes with unshare: as pid 1 of a new pid namespace it
/// would ignore anything but SIGKILL.
struct Unshared(Child);

impl Unshared {
    fn new(flag: &str) -> Unshared {
        let child = Command::new("unshare")
            .args([flag, "--fork", "sleep", "1000"])
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("run unshare (util-linux)");
        Unshared(child)
    }

    /// Its namespace of `name` (for pid: the one its child lives in), for a config's `path`.
    fn path(&self, name: &str) -> String {
        let entry = if name == "pid" {
            "pid_for_children"
        } else {
            name
        };
        format!("/proc/{}/ns/{entry}", self.0.id())
    }

    /// That namespace's inode link, once unshare has made it.
    fn namespace(&self, name: &str) -> String {
        let deadline = Instant::now() + suite::SETTLE;
        loop {
            let link = fs::read_link(self.path(name)).map(|l| l.display().to_string());
            match link {
                Ok(inode) if inode != host_namespace(name) => return inode,
                _ if Instant::now() > deadline => panic!("unshare made no {name} namespace"),
                _ => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    }
}

impl Drop for Unshared {
    fn drop(&mut self) {
        let group = Pid::from_raw(self.0.id() as i32);
        let _ = killpg(group, Signal::SIGKILL);
        let _ = self.0.wait();
    }
}

/// runtime-tools `linux_ns_path`: a namespace given by path is joined.
#[test]
fn linux_ns_path() {
    let mut checks = Checks::default();
    for (name, typ, flag) in [
        ("ipc", "ipc", "--ipc"),
        ("mnt", "mount", "--mount"),
        ("net", "network", "--net"),
        ("pid", "pid", "--pid"),
        ("uts", "uts", "--uts"),
    ] {
        let target = Unshared::new(flag);
        let expected = target.namespace(name);
        let mut c = suite::container();
        c.configure(|spec| set_args(spec, &["sleep", "30"]));
        suite::edit(&mut c, |config| {
            let namespaces = config["linux"]["namespaces"].as_array_mut().unwrap();
            namespaces.retain(|ns| ns["type"] != typ);
            namespaces.push(json!({"type": typ, "path": target.path(name)}));
        });
        let created = c.create();
        checks.succeeds(&format!("create joining the {name} namespace"), &created);
        if created.code == 0 {
            let pid = c.state_json()["pid"].as_i64().unwrap();
            checks.equal(
                &format!("{name} namespace"),
                namespace_of(pid, name),
                expected,
            );
        }
    }
    checks.done();
}

/// runtime-tools `linux_ns_path_type`: a path to a namespace of another type is an error.
#[test]
fn linux_ns_path_type() {
    let mut checks = Checks::default();
    for (typ, wrong) in [
        ("cgroup", "ipc"),
        ("ipc", "mnt"),
        ("mount", "net"),
        ("network", "pid"),
        ("pid", "user"),
        ("user", "uts"),
        ("uts", "cgroup"),
    ] {
        let mut c = suite::container();
        c.configure(|spec| set_args(spec, &["true"]));
        suite::edit(&mut c, |config| {
            let namespaces = config["linux"]["namespaces"].as_array_mut().unwrap();
            namespaces.retain(|ns| ns["type"] != typ);
            namespaces.push(json!({"type": typ, "path": format!("/proc/self/ns/{wrong}")}));
        });
        checks.fails(
            &format!("{typ} namespace given a {wrong} path"),
            &c.create(),
        );
    }
    checks.done();
}

/// runtime-tools `linux_uid_mappings`: the mappings of a new user namespace are in effect.
#[test]
fn linux_uid_mappings() {
    let mut c = suite::container();
    c.configure(|spec| set_args(spec, &["cat", "/proc/self/uid_map", "/proc/self/gid_map"]));
    suite::edit(&mut c, |config| {
        let namespaces = config["linux"]["namespaces"].as_array_mut().unwrap();
        namespaces.push(json!({"type": "user"}));
        config["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 1000, "size": 2000}]);
        config["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 1000, "size": 3000}]);
    });
    let out = c.run().success();
    let maps: Vec<Vec<&str>> = out
        .stdout
        .lines()
        .map(|line| line.split_whitespace().collect())
        .collect();
    assert_eq!(
        maps,
        [["0", "1000", "2000"], ["0", "1000", "3000"]],
        "{out}"
    );
}
