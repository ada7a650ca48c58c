//! The container's filesystem: the default environment (config-linux.md "Default Filesystems",
//! "Default Devices"), mounts, devices, masked and read-only paths, the root's read-only flag
//! and propagation, sysctls and the mount label.

use std::collections::HashMap;
use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::{COMMAND_TIMEOUT, Container, HostBind, mounts_under, set_args};
use crate::suite::{self, Checks, DEFAULT_CAPS, reaches};

/// One line of /proc/self/mountinfo.
#[derive(Debug)]
pub struct MountEntry {
    pub root: String,
    pub mount_point: String,
    /// Per-mount options (`rw,nosuid,…`).
    pub options: Vec<String>,
    /// Optional fields: `shared:N`, `master:N`, `unbindable`…
    pub propagation: Vec<String>,
    pub fstype: String,
    pub source: String,
}

pub fn parse_mountinfo(text: &str) -> Vec<MountEntry> {
    text.lines()
        .filter_map(|line| {
            let (before, after) = line.split_once(" - ")?;
            let fields: Vec<&str> = before.split(' ').collect();
            let mut after = after.split(' ');
            Some(MountEntry {
                root: fields.get(3)?.to_string(),
                mount_point: fields.get(4)?.to_string(),
                options: fields.get(5)?.split(',').map(String::from).collect(),
                propagation: fields[6..].iter().map(|f| f.to_string()).collect(),
                fstype: after.next()?.to_string(),
                source: after.next()?.to_string(),
            })
        })
        .collect()
}

/// The last mount shown at `point` (the one on top).
fn mount_at<'a>(mounts: &'a [MountEntry], point: &str) -> Option<&'a MountEntry> {
    mounts.iter().rev().find(|m| m.mount_point == point)
}

/// The sections of a script's output, each introduced by a `# name` line.
fn sections(out: &str) -> HashMap<&str, Vec<&str>> {
    let mut sections: HashMap<&str, Vec<&str>> = HashMap::new();
    let mut current = "";
    for line in out.lines() {
        match line.strip_prefix("# ") {
            Some(name) => current = name,
            None => sections.entry(current).or_default().push(line),
        }
    }
    sections
}

/// The bit mask of a list of capability names, as /proc/self/status shows it.
pub fn cap_mask(names: &[&str]) -> String {
    let bits = caps::all()
        .into_iter()
        .filter(|cap| names.contains(&cap.to_string().as_str()))
        .fold(0u64, |mask, cap| mask | cap.bitmask());
    format!("{bits:016x}")
}

/// runtime-tools `default`: the default config's environment: its mounts in order with their
/// types, the default devices and symlinks, the process's user, capabilities, rlimit, cwd, env
/// and hostname, and noNewPrivileges off.
#[test]
fn default() {
    let mut c = suite::container();
    let devices = "null zero full random urandom tty ptmx";
    let script = format!(
        "echo '# mountinfo'; cat /proc/self/mountinfo
         echo '# devices'; for d in {devices}; do echo \"$d $(/oci-check device /dev/$d)\"; done
         echo '# links'; for l in fd ptmx stdin stdout stderr; do echo \"$l $(readlink /dev/$l)\"; done
         echo '# status'; grep -E '^(Uid|Gid|Cap[A-Za-z]+|NoNewPrivs):' /proc/self/status
         echo '# nofile'; /oci-check limit 'Max open files'
         echo '# misc'; hostname; pwd; echo \"$PATH\"; echo \"$TERM\""
    );
    c.configure(|spec| set_args(spec, &["sh", "-c", &script]));
    let out = c.run().success();
    let got = sections(&out.stdout);
    let mut checks = Checks::default();

    let mounts = parse_mountinfo(&got["mountinfo"].join("\n"));
    let mut position = 0;
    for (point, fstype, source) in [
        ("/proc", "proc", "proc"),
        ("/dev", "tmpfs", "tmpfs"),
        ("/dev/pts", "devpts", "devpts"),
        ("/dev/shm", "tmpfs", "shm"),
        ("/dev/mqueue", "mqueue", "mqueue"),
        ("/sys", "sysfs", "sysfs"),
    ] {
        let found = mounts[position..]
            .iter()
            .position(|m| m.mount_point == point);
        match found {
            Some(offset) => {
                let entry = &mounts[position + offset];
                checks.equal(&format!("{point} type"), entry.fstype.as_str(), fstype);
                checks.equal(&format!("{point} source"), entry.source.as_str(), source);
                position += offset + 1;
            }
            None => checks.check(false, format!("{point} missing or out of order")),
        }
    }
    let devices: Vec<String> = [
        "null c 1 3",
        "zero c 1 5",
        "full c 1 7",
        "random c 1 8",
        "urandom c 1 9",
        "tty c 5 0",
        "ptmx c 5 2",
    ]
    .map(String::from)
    .to_vec();
    let found: Vec<String> = got["devices"]
        .iter()
        .map(|line| line.split(' ').take(4).collect::<Vec<_>>().join(" "))
        .collect();
    checks.equal("default devices (name type major minor)", found, devices);
    checks.equal(
        "default symlinks",
        got["links"].clone(),
        vec![
            "fd /proc/self/fd",
            "ptmx pts/ptmx",
            "stdin /proc/self/fd/0",
            "stdout /proc/self/fd/1",
            "stderr /proc/self/fd/2",
        ],
    );
    let status: HashMap<&str, &str> = got["status"]
        .iter()
        .filter_map(|line| line.split_once(":\t"))
        .collect();
    let caps = cap_mask(&DEFAULT_CAPS);
    for set in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
        checks.equal(set, status.get(set).copied(), Some(caps.as_str()));
    }
    checks.equal("Uid", status.get("Uid").copied(), Some("0\t0\t0\t0"));
    checks.equal("Gid", status.get("Gid").copied(), Some("0\t0\t0\t0"));
    checks.equal("NoNewPrivs", status.get("NoNewPrivs").copied(), Some("0"));
    checks.equal("RLIMIT_NOFILE", got["nofile"].clone(), vec!["1024 1024"]);
    checks.equal(
        "hostname, cwd, PATH, TERM",
        got["misc"].clone(),
        vec![
            "mrsdalloway",
            "/",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "xterm",
        ],
    );
    checks.done();
}

/// runtime-tools `mounts`: tmpfs and bind mounts with propagation options are mounted in order,
/// with their options, and their propagation is what the kernel can make of it (a new tmpfs has
/// no peer group to be a slave of: "slave" leaves it private).
#[test]
fn mounts() {
    let mut c = suite::container();
    let common_options = ["nosuid", "strictatime", "mode=755", "size=1k"];
    // The propagation mountinfo may show for each: a slave bind of a host mount is private
    // when that mount has no peer group (a new tmpfs never has one).
    let cases: [(&str, Option<&str>, &str, &[&str]); 11] = [
        ("/tmp/test-shared", None, "shared", &["shared"]),
        ("/tmp/test-slave", None, "slave", &["private"]),
        ("/tmp/test-private", None, "private", &["private"]),
        ("/mnt/etc-shared", Some("bind"), "shared", &["shared"]),
        ("/mnt/etc-rshared", Some("rbind"), "rshared", &["shared"]),
        (
            "/mnt/etc-slave",
            Some("bind"),
            "slave",
            &["slave", "private"],
        ),
        (
            "/mnt/etc-rslave",
            Some("rbind"),
            "rslave",
            &["slave", "private"],
        ),
        ("/mnt/etc-private", Some("bind"), "private", &["private"]),
        ("/mnt/etc-rprivate", Some("rbind"), "rprivate", &["private"]),
        (
            "/mnt/etc-unbindable",
            Some("bind"),
            "unbindable",
            &["unbindable"],
        ),
        (
            "/mnt/etc-runbindable",
            Some("rbind"),
            "runbindable",
            &["unbindable"],
        ),
    ];
    let added: Vec<Value> = cases
        .iter()
        .map(|(destination, bind, propagation, _)| {
            let mut options: Vec<&str> = common_options.to_vec();
            options.extend(bind);
            options.push(propagation);
            match bind {
                Some(_) => json!({"destination": destination, "source": "/etc",
                                  "options": options}),
                None => json!({"destination": destination, "type": "tmpfs",
                               "source": "tmpfs", "options": options}),
            }
        })
        .collect();
    suite::edit(&mut c, |config| {
        config["mounts"].as_array_mut().unwrap().extend(added);
    });
    c.configure(|spec| set_args(spec, &["cat", "/proc/self/mountinfo"]));
    let out = c.run().success();
    let mounts = parse_mountinfo(&out.stdout);
    let mut checks = Checks::default();
    let mut position = 0;
    for (destination, bind, _, shown) in cases {
        let found = mounts[position..]
            .iter()
            .position(|m| m.mount_point == destination);
        let Some(offset) = found else {
            checks.check(false, format!("{destination} missing or out of order"));
            continue;
        };
        let entry = &mounts[position + offset];
        position += offset + 1;
        match bind {
            Some(_) => checks.equal(&format!("{destination} root"), entry.root.as_str(), "/etc"),
            None => checks.equal(
                &format!("{destination} type"),
                entry.fstype.as_str(),
                "tmpfs",
            ),
        }
        checks.check(
            entry.options.iter().any(|o| o == "nosuid"),
            format!("{destination}: no nosuid in {:?}", entry.options),
        );
        let propagation = match entry.propagation.first() {
            Some(field) if field.starts_with("shared:") => "shared",
            Some(field) if field.starts_with("master:") => "slave",
            Some(field) => field.as_str(),
            None => "private",
        };
        checks.check(
            shown.contains(&propagation),
            format!("{destination}: propagation {propagation}, expected one of {shown:?}"),
        );
    }
    checks.done();
}

/// runtime-tools `linux_devices`: devices in `linux.devices` exist with their type, numbers,
/// mode and owner (a FIFO has no numbers).
#[test]
fn linux_devices() {
    let mut c = suite::container();
    suite::edit(&mut c, |config| {
        config["linux"]["devices"] = json!([
            {"path": "/dev/test1", "type": "c", "major": 10, "minor": 666, "fileMode": 0o660,
             "uid": 0, "gid": 0},
            {"path": "/dev/test2", "type": "b", "major": 8, "minor": 666, "fileMode": 0o660,
             "uid": 0, "gid": 0},
            {"path": "/dev/test3", "type": "p", "major": 8, "minor": 666, "fileMode": 0o660}
        ]);
    });
    let script = "for d in test1 test2 test3; do /oci-check device /dev/$d; done";
    c.configure(|spec| set_args(spec, &["sh", "-c", script]));
    let out = c.run().success();
    let devices: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(
        devices,
        ["c 10 666 660 0 0", "b 8 666 660 0 0", "p - - 660 0 0"],
        "{out}"
    );
}

/// Files and directories a case masks or makes read-only: every kind runtime-tools uses, each
/// with content (an empty file or directory reads as unreadable).
const PROTECTED: [&str; 5] = [
    "/protected-dir",
    "/protected-file",
    "/protected-dir/protected-subdir",
    "/protected-dir/protected-file",
    "/protected-dir/protected-subdir/protected-file",
];

fn make_protected_tree(c: &Container) {
    let rootfs = c.bundle.join("rootfs");
    fs::create_dir_all(rootfs.join("protected-dir/protected-subdir")).unwrap();
    for file in PROTECTED.iter().filter(|p| p.ends_with("file")) {
        fs::write(rootfs.join(&file[1..]), "secrets").unwrap();
    }
}

/// A config entry given relative, and one that is a symlink leading out of the rootfs
/// (`../x` from the rootfs is the bundle): the runtime must refuse the first (the spec wants
/// absolute paths) and must not follow the second out of the rootfs.
fn check_relative_and_symlink(field: &str, checks: &mut Checks) {
    let mut c = suite::container();
    c.configure(|spec| set_args(spec, &["true"]));
    suite::edit(&mut c, |config| {
        config["linux"][field] = json!(["protected-relpath"])
    });
    fs::write(c.bundle.join("rootfs/protected-relpath"), "secrets").unwrap();
    checks.fails(&format!("a relative path in linux.{field}"), &c.run());

    let mut c = suite::container();
    c.configure(|spec| set_args(spec, &["true"]));
    suite::edit(&mut c, |config| {
        config["linux"][field] = json!(["/protected-symlink"])
    });
    std::os::unix::fs::symlink("../outside", c.bundle.join("rootfs/protected-symlink")).unwrap();
    let _ = c.create();
    let outside = c.bundle.join("outside");
    checks.check(
        !outside.exists() && mounts_under(&outside).is_empty(),
        format!("linux.{field}: a symlink was followed out of the rootfs"),
    );
}

/// Device nodes of each kind at `/protected-device`, as runtime-tools makes them (numbers 0).
fn device_kinds() -> [(&'static str, &'static str); 3] {
    [("block", "b 0 0"), ("char", "c 0 0"), ("fifo", "p")]
}

/// A container running `args` with the device node `/protected-device` (`node`: mknod's type
/// and numbers) listed in `linux.<field>`.
fn protected_device(field: &str, node: &str, args: &[&str]) -> Container {
    let mut c = suite::container();
    suite::edit(&mut c, |config| {
        config["linux"][field] = json!(["/protected-device"]);
    });
    c.configure(|spec| set_args(spec, args));
    // The node must exist before create: make it with the host's mknod.
    let node_path = c.bundle.join("rootfs/protected-device");
    let mut words = node.split(' ');
    let mut mknod = std::process::Command::new("mknod");
    mknod.arg(&node_path).arg(words.next().unwrap()).args(words);
    assert!(mknod.status().unwrap().success(), "mknod {node}");
    c
}

/// runtime-tools `linux_masked_paths`: masked files, directories and device nodes cannot be
/// read; a relative path is an error; a symlink is not followed out of the rootfs. Also the
/// masked paths of runc's default config.
#[test]
fn linux_masked_paths() {
    let mut checks = Checks::default();
    let mut c = suite::container();
    make_protected_tree(&c);
    suite::edit(&mut c, |config| {
        config["linux"]["maskedPaths"] = json!(PROTECTED)
    });
    let script = PROTECTED
        .map(|p| format!("echo {p} $(/oci-check readable {p})"))
        .join("; ");
    let out = c.sh(&script);
    let expected: Vec<String> = PROTECTED.iter().map(|p| format!("{p} no")).collect();
    checks.equal(
        "readable",
        out.lines().map(String::from).collect(),
        expected,
    );

    check_relative_and_symlink("maskedPaths", &mut checks);

    for (kind, node) in device_kinds() {
        let args = ["/oci-check", "readable", "/protected-device"];
        let out = protected_device("maskedPaths", node, &args).run();
        checks.succeeds(&format!("masking a {kind} device"), &out);
        checks.equal(&format!("{kind} device readable"), out.stdout.trim(), "no");
    }

    // runc's default config (what `runc spec` and Docker give): procfs and sysfs paths.
    let mut c = Container::new();
    let out = c.sh("for p in /proc/timer_list /proc/keys /sys/firmware; do \
         [ -e $p ] && echo \"$p $(cat $p 2>/dev/null | wc -c) $(ls -A $p 2>/dev/null | wc -l)\"; \
         done");
    for line in out.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        checks.check(
            fields.get(1) == Some(&"0") || fields.get(2) == Some(&"0"),
            format!("runc default masked path readable: {line}"),
        );
    }
    checks.done();
}

/// runtime-tools `linux_readonly_paths`: read-only files and directories can be read but not
/// written; device nodes become read-only mounts; a relative path is an error; a symlink is not
/// followed out of the rootfs. Also /proc/sys in runc's default config.
#[test]
fn linux_readonly_paths() {
    let mut checks = Checks::default();
    let mut c = suite::container();
    make_protected_tree(&c);
    suite::edit(&mut c, |config| {
        config["linux"]["readonlyPaths"] = json!(PROTECTED)
    });
    let script = PROTECTED
        .map(|p| format!("echo {p} $(/oci-check readable {p}) $(/oci-check writable {p})"))
        .join("; ");
    let out = c.sh(&script);
    let expected: Vec<String> = PROTECTED.iter().map(|p| format!("{p} yes no")).collect();
    checks.equal(
        "readable, writable",
        out.lines().map(String::from).collect(),
        expected,
    );

    check_relative_and_symlink("readonlyPaths", &mut checks);

    for (kind, node) in device_kinds() {
        let args = ["cat", "/proc/self/mountinfo"];
        let out = protected_device("readonlyPaths", node, &args).run();
        checks.succeeds(&format!("a read-only {kind} device"), &out);
        let mounts = parse_mountinfo(&out.stdout);
        let entry = mount_at(&mounts, "/protected-device");
        checks.check(
            entry.is_some_and(|m| m.options.iter().any(|o| o == "ro")),
            format!("the {kind} device is not a read-only mount: {entry:?}"),
        );
    }

    let mut c = Container::new();
    let out = c.sh("(echo x > /proc/sys/kernel/hostname) 2>/dev/null && echo yes || echo no");
    checks.equal("runc default: /proc/sys writable", out.trim(), "no");
    checks.done();
}

/// runtime-tools `root_readonly_true`: with root.readonly, / cannot be written.
#[test]
fn root_readonly_true() {
    let mut c = suite::container();
    suite::edit(&mut c, |config| config["root"]["readonly"] = true.into());
    let out = c.sh("/oci-check writable /; touch /newfile 2>/dev/null && echo created; true");
    assert_eq!(out, "no\n");
}

/// What a container with a given rootfsPropagation reports about its `/`.
#[derive(Debug, PartialEq)]
struct RootPropagation {
    /// `shared`, `slave`, `unbindable` or `private`, from the optional fields of `/`.
    shown: String,
    /// How a mount under / shows through a bind of / (the probe of runtime-tools).
    probe: String,
    /// A mount the host makes under the bundle's rootfs appears inside.
    from_host: bool,
}

/// runtime-tools `linux_rootfs_propagation`: the root's propagation is in effect on `/` inside
/// (shared, slave, private, unbindable and the r* forms): mountinfo shows it, a mount made under
/// a shared root shows through a bind of it, an unbindable root cannot be bound, a slave root
/// receives mounts the host makes in the bundle's rootfs, and no mount made inside reaches the
/// host (the spec: a shared root "does not mean that it's shared with the host"). The bundle's
/// rootfs is made a mount of its own with a peer group, for the slave modes to follow.
#[test]
fn linux_rootfs_propagation() {
    let mut checks = Checks::default();
    for (mode, shown, probe, from_host) in [
        ("shared", "shared", "exposed", false),
        ("rshared", "shared", "exposed", false),
        ("slave", "slave", "hidden", true),
        ("rslave", "slave", "hidden", true),
        ("private", "private", "hidden", false),
        ("rprivate", "private", "hidden", false),
        ("unbindable", "unbindable", "unbindable", false),
        ("runbindable", "unbindable", "unbindable", false),
    ] {
        let expected = RootPropagation {
            shown: shown.into(),
            probe: probe.into(),
            from_host,
        };
        match propagation_with(mode) {
            Ok(found) => checks.equal(mode, found, expected),
            Err(problem) => checks.check(false, format!("{mode}: {problem}")),
        }
    }
    checks.done();
}

/// Runs a container with rootfsPropagation `mode` and reports what it saw.
fn propagation_with(mode: &str) -> Result<RootPropagation, String> {
    let mut c = suite::container();
    let rootfs = c.bundle.join("rootfs");
    let from_host = c.dir.join("from-host");
    fs::create_dir(&from_host).unwrap();
    fs::write(from_host.join("marker"), "").unwrap();
    fs::create_dir(rootfs.join("oci-from-host")).unwrap();
    fs::create_dir(rootfs.join("oci-from-inside")).unwrap();
    // Inside: show /'s fields, probe, make a mount of its own, say so, then wait (up to 5 s)
    // for the host's mount.
    let script = "
        fields=$(awk '$5 == \"/\" { for (i = 7; $i != \"-\"; i++) printf \"%s \", $i }' \
                 /proc/self/mountinfo | tail -n 1)
        case \"$fields\" in
        *shared:*) shown=shared ;; *master:*) shown=slave ;; *unbindable*) shown=unbindable ;;
        *) shown=private ;; esac
        echo \"$shown\" > /oci-shown
        /oci-check propagation-probe > /oci-probe
        mount -t tmpfs tmpfs /oci-from-inside && touch /oci-ready
        for i in $(seq 50); do [ -e /oci-from-host/marker ] && break; sleep 0.1; done
        [ -e /oci-from-host/marker ] && echo yes > /oci-from-host-seen || echo no > /oci-from-host-seen
        umount /oci-from-inside";
    suite::edit(&mut c, |config| {
        config["linux"]["rootfsPropagation"] = mode.into();
        // The probe mounts: it needs CAP_SYS_ADMIN and mount(2), which the profile denies.
        let linux = config["linux"].as_object_mut().unwrap();
        linux.remove("seccomp");
        for set in ["bounding", "effective", "permitted"] {
            let caps = config["process"]["capabilities"][set]
                .as_array_mut()
                .unwrap();
            caps.push("CAP_SYS_ADMIN".into());
        }
    });
    c.configure(|spec| set_args(spec, &["sh", "-c", script]));
    let _peer_group = HostBind::shared(&rootfs);
    let created = c.create();
    if created.code != 0 {
        return Err(format!("create failed:\n{created}"));
    }
    c.start().success();
    let ready = rootfs.join("oci-ready");
    let deadline = Instant::now() + COMMAND_TIMEOUT;
    while !ready.exists() && Instant::now() < deadline && c.status().as_deref() == Some("running") {
        std::thread::sleep(Duration::from_millis(10));
    }
    let inside_mount_reached_host = mounts_under(&rootfs.join("oci-from-inside")).len();
    let _host_mount = HostBind::new(&from_host, &rootfs.join("oci-from-host"));
    if !reaches(&c, &["stopped"]) {
        return Err("the container did not finish".into());
    }
    if inside_mount_reached_host > 0 {
        return Err("a mount made inside appeared on the host".into());
    }
    let read = |name: &str| fs::read_to_string(rootfs.join(name)).unwrap_or_default();
    Ok(RootPropagation {
        shown: read("oci-shown").trim().into(),
        probe: read("oci-probe").trim().into(),
        from_host: read("oci-from-host-seen").trim() == "yes",
    })
}

/// runtime-tools `linux_sysctl`: sysctls are set in the container.
#[test]
fn linux_sysctl() {
    let mut c = suite::container();
    suite::edit(&mut c, |config| {
        config["linux"]["sysctl"] = json!({"net.ipv4.ip_forward": "1"});
    });
    let out = c.sh("cat /proc/sys/net/ipv4/ip_forward");
    assert_eq!(out, "1\n");
}

/// runtime-tools `linux_mount_label`: with SELinux, the filesystems berth mounts get the
/// mount label as their context.
#[test]
fn linux_mount_label() {
    if !Path::new("/sys/fs/selinux/enforce").exists() {
        return suite::skip("the host has no SELinux");
    }
    let label = "system_u:object_r:svirt_sandbox_file_t:s0:c715,c811";
    let mut c = suite::container();
    suite::edit(&mut c, |config| {
        config["linux"]["mountLabel"] = label.into()
    });
    c.configure(|spec| set_args(spec, &["cat", "/proc/self/mountinfo"]));
    let out = c.run().success();
    let mounts = parse_mountinfo(&out.stdout);
    let shm = mount_at(&mounts, "/dev/shm").expect("/dev/shm is mounted");
    assert!(out.stdout.contains(label), "no {label} on {shm:?}");
}
