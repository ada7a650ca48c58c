//! Root filesystem: mounts and their options, devices, masked and read-only paths, sysctl, and
//! the escape attempts an image can set up with symlinks (CVE-2021-30465 class: symlinked mount
//! destinations; CVE-2025-31133 / crun's /dev class: an image /dev/null that is a symlink).

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use oci_spec::runtime::{Capabilities, Capability};

use crate::common::{Container, Output, cgroup_hierarchies, mounts_under, process_mut, set_args};

/// Runs `sh -c script` in a default container whose config.json was then edited by `edit`.
fn run_script(c: &mut Container, script: &str, edit: impl FnOnce(&mut Value)) -> Output {
    c.configure(|spec| set_args(spec, &["sh", "-c", script]));
    c.configure_json(edit);
    c.run()
}

fn add_mounts(config: &mut Value, mounts: Value) {
    let list = config["mounts"]
        .as_array_mut()
        .expect("default config has mounts");
    list.extend(mounts.as_array().expect("a JSON array").iter().cloned());
}

/// The per-mount options of `mount_point` as seen in the container's mountinfo.
const OPTIONS_OF: &str =
    "opts() { awk -v m=\"$1\" '$5 == m { o = $6 } END { print o }' /proc/self/mountinfo; }";

fn has_all(line: &str, wanted: &[&str]) -> bool {
    let options: Vec<&str> = line.trim().split(',').collect();
    wanted.iter().all(|w| options.contains(w))
}

#[test]
fn default_mounts_devices_and_links() {
    let mut c = Container::new();
    let script = format!(
        "{OPTIONS_OF}
         for m in / /proc /dev /dev/pts /dev/shm /dev/mqueue /sys /sys/fs/cgroup; do echo \"$m $(opts $m)\"; done
         stat -c '%n %F %t:%T %a %u' /dev/null /dev/zero /dev/full /dev/random /dev/urandom /dev/tty
         for l in /dev/ptmx /dev/fd /dev/stdin /dev/stdout /dev/stderr; do readlink $l; done
         touch /rootfs-is-writable 2>/dev/null && echo root-writable || echo root-readonly"
    );
    let out = run_script(&mut c, &script, |_| {}).success().stdout;
    let line = |prefix: &str| {
        out.lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no line for {prefix:?} in:\n{out}"))
            .to_string()
    };
    assert!(has_all(&line("/ ")[2..], &["ro"]), "{out}");
    assert!(
        has_all(&line("/dev/shm ")[9..], &["nosuid", "nodev", "noexec"]),
        "{out}"
    );
    assert!(has_all(&line("/sys ")[5..], &["ro", "nosuid"]), "{out}");
    for m in [
        "/proc ",
        "/dev ",
        "/dev/pts ",
        "/dev/mqueue ",
        "/sys/fs/cgroup ",
    ] {
        assert!(line(m).len() > m.len(), "{m} is not mounted:\n{out}");
    }
    for (dev, numbers) in [
        ("null", "1:3"),
        ("zero", "1:5"),
        ("full", "1:7"),
        ("random", "1:8"),
        ("urandom", "1:9"),
        ("tty", "5:0"),
    ] {
        let expected = format!("/dev/{dev} character special file {numbers} 666 0");
        assert!(out.contains(&expected), "missing {expected:?} in:\n{out}");
    }
    for target in [
        "pts/ptmx",
        "/proc/self/fd",
        "/proc/self/fd/0",
        "/proc/self/fd/1",
        "/proc/self/fd/2",
    ] {
        assert!(
            out.lines().any(|l| l == target),
            "missing link to {target} in:\n{out}"
        );
    }
    assert!(out.contains("root-readonly"), "{out}");
}

/// On a cgroup v1 host the `cgroup` mount is a tmpfs holding a bind of each hierarchy. As in
/// runc, the mount's `ro` goes to the hierarchies only: the tmpfs (source `tmpfs`) stays
/// writable, for a systemd inside that makes its own directories there (`podman --systemd`),
/// and the hierarchies come in the host's order.
#[test]
fn cgroup_v1_tmpfs_is_writable_its_hierarchies_read_only() {
    if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        eprintln!("skip: a cgroup v2 host mounts cgroup2 itself, no tmpfs");
        return;
    }
    let mut c = Container::new();
    let script = "grep ' /sys/fs/cgroup' /proc/self/mountinfo
         mkdir /sys/fs/cgroup/unified && echo tmpfs-writable";
    // As podman gives it: runc 1.1 leaves the tmpfs mode 555 (the sysfs directory's).
    let out = run_script(&mut c, script, |config| {
        for set in ["bounding", "effective", "permitted"] {
            let caps = config["process"]["capabilities"][set].as_array_mut();
            caps.expect("default capabilities")
                .push("CAP_DAC_OVERRIDE".into());
        }
    })
    .success()
    .stdout;
    // mountinfo: ... mount-point per-mount-options [optional fields] - fstype source super-options
    let mounts: Vec<(&str, &str, &str, &str)> = out
        .lines()
        .filter_map(|line| {
            let (mount, fs) = line.split_once(" - ")?;
            let mut mount = mount.split(' ').skip(4);
            let mut fs = fs.split(' ');
            Some((mount.next()?, mount.next()?, fs.next()?, fs.next()?))
        })
        .collect();
    let (_, options, fstype, source) = mounts
        .iter()
        .find(|m| m.0 == "/sys/fs/cgroup")
        .unwrap_or_else(|| panic!("/sys/fs/cgroup is not mounted:\n{out}"));
    assert_eq!((*fstype, *source), ("tmpfs", "tmpfs"), "{out}");
    assert!(
        has_all(options, &["rw", "nosuid", "nodev", "noexec"]),
        "{out}"
    );
    assert!(out.contains("tmpfs-writable"), "{out}");
    let hierarchies: Vec<&str> = mounts
        .iter()
        .filter(|m| m.2 == "cgroup")
        .map(|m| {
            assert!(has_all(m.1, &["ro"]), "{} is writable:\n{out}", m.0);
            m.0
        })
        .collect();
    let host: Vec<PathBuf> = cgroup_hierarchies()
        .into_iter()
        .filter(|h| h.parent() == Some(Path::new("/sys/fs/cgroup")) && !h.ends_with("unified"))
        .collect();
    assert_eq!(
        hierarchies,
        host.iter().map(|h| h.to_str().unwrap()).collect::<Vec<_>>(),
        "the hierarchies in the host's order:\n{out}"
    );
}

/// A tmpfs without `mode=` takes the mode of the directory it covers, as runc gives it; over a
/// directory the runtime creates it keeps the kernel's 1777.
#[test]
fn tmpfs_takes_the_mode_of_the_directory_it_covers() {
    let mut c = Container::new();
    let covered = c.bundle.join("rootfs/covered");
    fs::create_dir(&covered).expect("mkdir rootfs/covered");
    fs::set_permissions(&covered, fs::Permissions::from_mode(0o2710)).expect("chmod covered");
    let script = "stat -c '%n %a' /covered /created";
    let out = run_script(&mut c, script, |config| {
        add_mounts(
            config,
            json!([
                {"destination": "/covered", "type": "tmpfs", "source": "tmpfs",
                 "options": ["nosuid", "nodev"]},
                {"destination": "/created", "type": "tmpfs", "source": "tmpfs",
                 "options": ["nosuid", "nodev"]},
            ]),
        )
    })
    .success()
    .stdout;
    assert_eq!(out, "/covered 2710\n/created 1777\n");
}

#[test]
fn masked_and_readonly_paths() {
    let mut c = Container::new();
    let script = format!(
        "{OPTIONS_OF}
         echo keys=$(wc -c < /proc/keys)
         echo firmware=$(ls -A /sys/firmware | wc -l)
         echo firmware-opts=$(opts /sys/firmware)
         echo sys-opts=$(opts /proc/sys)
         echo 1 > /proc/sys/kernel/ns_last_pid 2>/dev/null && echo sys-writable || echo sys-readonly"
    );
    let out = run_script(&mut c, &script, |_| {}).success().stdout;
    assert!(out.contains("keys=0\n"), "/proc/keys is not masked:\n{out}");
    assert!(
        out.contains("firmware=0\n"),
        "/sys/firmware is not masked:\n{out}"
    );
    let opts = |key: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(key))
            .unwrap_or("")
            .to_string()
    };
    assert!(has_all(&opts("firmware-opts="), &["ro"]), "{out}");
    assert!(has_all(&opts("sys-opts="), &["ro"]), "{out}");
    assert!(out.contains("sys-readonly"), "{out}");
}

#[test]
fn bind_and_tmpfs_mount_options() {
    let mut c = Container::new();
    let data = c.dir.join("host-data");
    fs::create_dir_all(&data).unwrap();
    fs::write(data.join("hello"), "hi\n").unwrap();
    let file = c.dir.join("host-file");
    fs::write(&file, "bound\n").unwrap();
    let script = format!(
        "{OPTIONS_OF}
         echo data=$(opts /mnt/data) rro=$(opts /mnt/rro) scratch=$(opts /scratch)
         cat /mnt/data/hello /etc/bound
         touch /mnt/data/new 2>/dev/null && echo data-writable || echo data-readonly
         touch /scratch/new && echo scratch-writable
         stat -c 'scratch-mode %a' /scratch
         echo passwd-root-lines=$(grep -c ^root: /etc/passwd)"
    );
    let out = run_script(&mut c, &script, |config| {
        add_mounts(
            config,
            json!([
                {"destination": "/mnt/data", "type": "bind", "source": data, "options": ["rbind", "ro", "nosuid", "noexec"]},
                {"destination": "/mnt/rro", "source": data, "options": ["rbind", "rro", "rnodev"]},
                {"destination": "/etc/bound", "source": file, "options": ["bind", "ro"]},
                {"destination": "/scratch", "type": "tmpfs", "source": "tmpfs", "options": ["nodev", "noatime", "mode=1770", "size=1m"]},
                {"destination": "/etc", "type": "tmpfs", "source": "tmpfs", "options": ["tmpcopyup"]}
            ]),
        )
    })
    .success()
    .stdout;
    let words: Vec<&str> = out.split_whitespace().collect();
    let opts_of = |key: &str| {
        words
            .iter()
            .find_map(|w| w.strip_prefix(key))
            .unwrap_or("")
            .to_string()
    };
    assert!(
        has_all(&opts_of("data="), &["ro", "nosuid", "noexec"]),
        "{out}"
    );
    assert!(has_all(&opts_of("rro="), &["ro", "nodev"]), "{out}");
    assert!(
        has_all(&opts_of("scratch="), &["nodev", "noatime"]),
        "{out}"
    );
    assert!(out.contains("hi\nbound\n"), "{out}");
    assert!(
        out.contains("data-readonly") && out.contains("scratch-writable"),
        "{out}"
    );
    assert!(out.contains("scratch-mode 1770"), "{out}");
    // /etc was replaced by a tmpfs seeded from the image (tmpcopyup): /etc/passwd survived.
    assert!(out.contains("passwd-root-lines=1"), "{out}");
    assert!(
        fs::read_dir(&data).unwrap().count() == 1,
        "the read-only bind was written through"
    );
}

#[test]
fn symlinked_mount_destination_stays_inside_the_container() {
    let mut c = Container::new();
    let host_target = c.dir.join("host-target");
    fs::create_dir_all(&host_target).unwrap();
    // The image points /mnt/escape at a host path; it must resolve inside the rootfs.
    symlink(&host_target, c.bundle.join("rootfs/mnt/escape")).unwrap();
    symlink("../../../../../../..", c.bundle.join("rootfs/mnt/up")).unwrap();
    let inside = host_target.join("x");
    let script = format!(
        "{OPTIONS_OF}
         echo escape=$(opts {})
         echo up=$(opts /etc-up)",
        inside.display()
    );
    let out = run_script(&mut c, &script, |config| {
        add_mounts(
            config,
            json!([
                {"destination": "/mnt/escape/x", "type": "tmpfs", "source": "tmpfs", "options": ["noexec"]},
                {"destination": "/mnt/up/etc-up", "type": "tmpfs", "source": "tmpfs", "options": ["noexec"]}
            ]),
        )
    })
    .success()
    .stdout;
    let opts = |key: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(key))
            .unwrap_or("")
            .to_string()
    };
    assert!(
        has_all(&opts("escape="), &["noexec"]),
        "not mounted inside:\n{out}"
    );
    assert!(
        has_all(&opts("up="), &["noexec"]),
        "the .. symlink was not clamped at the root:\n{out}"
    );
    assert!(
        !inside.exists(),
        "the mount destination was created on the host"
    );
    assert!(
        mounts_under(&c.dir).is_empty(),
        "a mount landed on the host"
    );
    assert!(
        !Path::new("/etc-up").exists(),
        "a mount destination escaped to the host root"
    );
    c.assert_no_leaks();
}

// runc deviates: 1.1.5 keeps the image's /dev symlinks (crun's /dev symlink class).
#[test]
fn symlinked_dev_null_in_the_image_is_replaced_not_followed() {
    let mut c = Container::new();
    let host_file = c.dir.join("host-secret");
    fs::write(&host_file, "host secret\n").unwrap();
    let dev = c.bundle.join("rootfs/dev");
    for name in ["null", "console", "zero"] {
        let _ = fs::remove_file(dev.join(name));
        symlink(&host_file, dev.join(name)).unwrap();
    }
    let script = "stat -c '%n %F %t:%T' /dev/null /dev/zero; echo keys=$(wc -c < /proc/keys)";
    // Without a /dev tmpfs the image's own /dev is used, traps included.
    let out = run_script(&mut c, script, |config| {
        let mounts = config["mounts"].as_array_mut().unwrap();
        mounts.retain(|m| m["destination"] != "/dev");
    })
    .success()
    .stdout;
    assert!(
        out.contains("/dev/null character special file 1:3"),
        "{out}"
    );
    assert!(
        out.contains("/dev/zero character special file 1:5"),
        "{out}"
    );
    assert!(out.contains("keys=0"), "/proc/keys is not masked:\n{out}");
    assert_eq!(
        fs::read_to_string(&host_file).unwrap(),
        "host secret\n",
        "the host file changed"
    );
}

#[test]
fn proc_mounted_over_a_symlink_is_refused() {
    let mut c = Container::new();
    let proc_dir = c.bundle.join("rootfs/proc");
    fs::remove_dir(&proc_dir).unwrap();
    symlink("/tmp", &proc_dir).unwrap();
    let out = run_script(&mut c, "true", |_| {}).failure();
    // runc says "must be mounted on ordinary directory".
    let refused = out.stderr.contains("symlink") || out.stderr.contains("ordinary directory");
    assert!(refused, "{out}");
    c.assert_no_leaks();
}

#[test]
fn linux_devices_and_sysctl() {
    let mut c = Container::new();
    let script = "stat -c '%n %F %t:%T %a %u:%g' /dev/fuse; cat /proc/sys/net/ipv4/ip_forward /proc/sys/kernel/shmmni";
    let out = run_script(&mut c, script, |config| {
        config["linux"]["devices"] = json!([
            {"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229, "fileMode": 384, "uid": 1000, "gid": 1000}
        ]);
        config["linux"]["resources"]["devices"] = json!([{"allow": true, "access": "rwm"}]);
        config["linux"]["sysctl"] = json!({"net.ipv4.ip_forward": "1", "kernel.shmmni": "1234"});
    })
    .success()
    .stdout;
    assert!(
        out.contains("/dev/fuse character special file a:e5 600 1000:1000"),
        "{out}"
    );
    assert!(out.contains("1\n1234\n"), "{out}");
}

#[test]
fn host_wide_sysctl_is_refused() {
    let mut c = Container::new();
    let out = run_script(&mut c, "true", |config| {
        config["linux"]["sysctl"] = json!({"kernel.panic": "1"});
    })
    .failure();
    assert!(out.stderr.contains("kernel.panic"), "{out}");
}

// runc deviates: 1.1.5 checks the unresolved destination, so /proc/self/... slips through.
#[test]
fn mounts_inside_proc_are_refused_except_lxcfs_style_files() {
    let mut c = Container::new();
    let out = run_script(&mut c, "true", |config| {
        add_mounts(
            config,
            json!([{"destination": "/proc/self/attr", "type": "tmpfs", "source": "tmpfs"}]),
        );
    })
    .failure();
    assert!(out.stderr.contains("inside /proc"), "{out}");

    let mut c = Container::new();
    let fake = c.dir.join("uptime");
    fs::write(&fake, "42.00 0.00\n").unwrap();
    let out = run_script(&mut c, "cat /proc/uptime", |config| {
        add_mounts(
            config,
            json!([{"destination": "/proc/uptime", "source": fake, "options": ["bind", "ro"]}]),
        );
    })
    .success();
    assert_eq!(out.stdout, "42.00 0.00\n", "{out}");
}

#[test]
fn no_pivot_leaves_no_whole_proc_that_lets_the_container_mount_a_bare_one() {
    // runc's "runc run --no-pivot must not expose bare /proc": in a user namespace of its own,
    // the container may mount a procfs only if one is fully visible in its mount namespace;
    // its own /proc has masked paths, the host's (left there by --no-pivot) would not.
    let mut c = Container::new();
    let script = "unshare -mrpf sh -c 'mount -t proc none /proc && echo bare /proc mounted'";
    c.configure(|spec| {
        set_args(spec, &["sh", "-c", script]);
        let process = process_mut(spec);
        let mut capabilities = process.capabilities().clone().expect("caps");
        let with_setfcap = |set: &Option<Capabilities>| {
            let mut set = set.clone().unwrap_or_default();
            set.insert(Capability::Setfcap);
            Some(set)
        };
        capabilities.set_bounding(with_setfcap(capabilities.bounding()));
        capabilities.set_permitted(with_setfcap(capabilities.permitted()));
        capabilities.set_effective(with_setfcap(capabilities.effective()));
        process.set_capabilities(Some(capabilities));
    });
    let bundle = c.bundle.to_str().unwrap().to_string();
    let out = c.cmd(&["run", "--no-pivot", "--bundle", &bundle, &c.id]);
    assert!(!out.stdout.contains("mounted"), "{out}");
    assert!(out.stderr.contains("mount: permission denied"), "{out}");
}

#[test]
fn no_pivot_enters_the_rootfs_with_ms_move_and_chroot() {
    let mut c = Container::new();
    let script = "test -x /bin/busybox && echo inside; echo marker=$(cat /marker); touch /x 2>/dev/null || echo root-readonly";
    fs::write(c.bundle.join("rootfs/marker"), "from-the-image\n").unwrap();
    c.configure(|spec| set_args(spec, &["sh", "-c", script]));
    let bundle = c.bundle.to_str().unwrap().to_string();
    let out = c
        .cmd(&["run", "--no-pivot", "--bundle", &bundle, &c.id])
        .success();
    assert!(
        out.stdout
            .contains("inside\nmarker=from-the-image\nroot-readonly"),
        "{out}"
    );
    c.assert_no_leaks();
}
