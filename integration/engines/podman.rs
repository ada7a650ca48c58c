//! podman (Debian's 4.3, through conmon) with berth registered as a runtime: private
//! containers.conf, storage and state, the everyday scenarios of `scenarios` and podman's own.
//!
//! podman has no daemon: each command is the engine, and conmon watches each container. What
//! makes it private is its configuration (`CONTAINERS_CONF` and friends, handed on to conmon so
//! that its cleanup command sees the same) and its `--root`/`--runroot`.

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::harness::engine::{ENGINE_TIMEOUT, Engine, Kind, Session};
use crate::harness::{
    Runtime, at_exit, engine_scenarios, image_tar, overlay_works, private_dir, readme_snippet,
    traces,
};

/// The private podman of this test process, set up on first use.
pub fn podman() -> &'static Engine {
    static PODMAN: OnceLock<Engine> = OnceLock::new();
    PODMAN.get_or_init(set_up)
}

/// Writes the configuration under `private_dir("podman")`, loads the test image, registers the
/// teardown.
fn set_up() -> Engine {
    let dir = private_dir("podman");
    let storage = dir.join("storage");
    let run = dir.join("run");
    let driver = if overlay_works() { "overlay" } else { "vfs" };
    let env = write_config(&dir, &storage, &run, driver);
    let engine = Engine {
        kind: Kind::Podman,
        program: PathBuf::from("podman"),
        global_args: ["--root", path(&storage), "--runroot", path(&run)]
            .map(String::from)
            .into(),
        env,
        run_args: [
            "--pull",
            "never",
            "--cgroup-parent",
            &format!("/berth-engines-{}-podman", std::process::id()),
        ]
        .map(String::from)
        .into(),
        cgroup_parent: format!("/berth-engines-{}-podman", std::process::id()),
        // conmon passes no --root: each runtime's default, /run/<its name> (berth's as runc's).
        runtime_roots: [Runtime::Berth, Runtime::Runc]
            .map(|r| {
                let binary = r.binary();
                let name = binary.file_name().expect("a runtime binary's name");
                (r, Path::new("/run").join(name))
            })
            .into(),
        runs_as: None,
    };
    let teardown_engine = engine.clone();
    at_exit(move || teardown(&teardown_engine));

    let tar = path(image_tar());
    let load = engine
        .spawn(&["load", "--input", tar], &dir.join("io"), "load", |_| {})
        .wait(ENGINE_TIMEOUT);
    assert_eq!(load.code, 0, "podman load failed:\n{load}");
    engine
}

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 run dir")
}

/// containers.conf, storage.conf (with the storage `driver`) and an empty registries.conf in
/// `dir`; returns the environment that makes podman (and conmon's cleanup command) read them
/// and nothing else, and keep its temporary files in `dir`.
pub fn write_config(
    dir: &Path,
    storage: &Path,
    run: &Path,
    driver: &str,
) -> Vec<(String, OsString)> {
    // TMPDIR: podman's temporary files (an update's resources, a loaded image's layers).
    let env: Vec<(String, PathBuf)> = [
        ("CONTAINERS_CONF", "containers.conf"),
        ("CONTAINERS_STORAGE_CONF", "storage.conf"),
        ("CONTAINERS_REGISTRIES_CONF", "registries.conf"),
        ("TMPDIR", "tmpfiles"),
    ]
    .map(|(var, file)| (var.to_string(), dir.join(file)))
    .into();
    let conmon_env = env
        .iter()
        .map(|(var, file)| format!(r#""{var}={}""#, file.display()))
        .collect::<Vec<_>>()
        .join(", ");
    // README.md's drop-in, with this host's and this test run's settings in its [engine].
    let private_engine = format!(
        r#"[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "{dir}/events.log"
lock_type = "file"
tmp_dir = "{dir}/tmp"
static_dir = "{storage}/libpod"
volume_path = "{storage}/volumes"
conmon_env_vars = ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", {conmon_env}]
"#,
        dir = dir.display(),
        storage = storage.display(),
    );
    let snippet = readme_snippet("[engine.runtimes]");
    assert!(
        snippet.contains("[engine]\n"),
        "README.md's containers.conf snippet has no [engine] table:\n{snippet}"
    );
    let containers_conf = format!(
        r#"[containers]
# This host withholds CAP_SYS_RESOURCE: podman's default (the hard limit raised to 1048576)
# cannot be set by any runtime.
default_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]
log_driver = "k8s-file"

[network]
network_backend = "cni"
network_config_dir = "{dir}/cni"

{engine}"#,
        dir = dir.display(),
        engine = snippet.replacen("[engine]\n", &private_engine, 1),
    );
    let storage_conf = format!(
        "[storage]\ndriver = \"{driver}\"\ngraphroot = \"{}\"\nrunroot = \"{}\"\n",
        storage.display(),
        run.display()
    );
    fs::write(dir.join("containers.conf"), containers_conf).expect("write containers.conf");
    fs::write(dir.join("storage.conf"), storage_conf).expect("write storage.conf");
    fs::write(dir.join("registries.conf"), "").expect("write registries.conf");
    fs::create_dir_all(dir.join("tmpfiles")).expect("create TMPDIR");
    env.into_iter()
        .map(|(var, file)| (var, file.into_os_string()))
        .collect()
}

/// Removes every pod and container (conmon goes with them) and what they leave; returns what
/// should not have been there.
fn teardown(engine: &Engine) -> Vec<String> {
    let dir = private_dir("podman");
    let mut leftovers = Vec::new();
    for (name, args) in [
        ("pod-rm-all", &["pod", "rm", "--all", "--force"][..]),
        ("rm-all", &["rm", "--all", "--force", "--time", "0"][..]),
    ] {
        let out = engine
            .spawn(args, &dir.join("io"), name, |_| {})
            .wait(ENGINE_TIMEOUT);
        if out.code != 0 {
            leftovers.push(format!("podman {name} failed:\n{out}"));
        }
    }
    // conmon's cgroup: all conmons of this podman share it.
    leftovers.extend(engine.leftovers(&["conmon"], &dir));
    leftovers
}

crate::scenarios::shared_scenarios! { engine: podman() }

/// podman's own scenarios.
pub mod own {
    use super::*;
    use crate::harness::cgroup;
    use crate::scenarios::{host_status_field, status_field};

    engine_scenarios! {
        engine: podman(), session: Session, scenarios: crate::podman::own;
        privileged,
        user_namespace,
        pod,
        systemd_mode,
    }

    /// `--uidmap`/`--gidmap`: the container runs in a user namespace, root inside and an
    /// unprivileged uid outside, and the image's files keep their owners as seen inside.
    pub fn user_namespace(s: &Session) {
        let maps = ["--uidmap", "0:100000:65536", "--gidmap", "0:100000:65536"];
        let name = s.sleeper(&maps);
        let host_uid = fs::read_to_string(format!("/proc/{}/status", s.pid(&name)));
        let host_uid = host_uid.expect("read status");
        assert!(host_uid.contains("\nUid:\t100000\t"), "{host_uid}");
        let script = "id -u; cat /proc/self/uid_map; stat -c %u /home/user; touch /root/ok";
        let out = s.exec(&[], &name, &["sh", "-c", script]).success();
        let lines: Vec<&str> = out.stdout.lines().collect();
        assert_eq!(lines[0], "0", "{out}");
        let uid_map: Vec<&str> = lines[1].split_whitespace().collect();
        assert_eq!(uid_map, ["0", "100000", "65536"], "{out}");
        assert_eq!(lines[2], "1000", "{out}");
    }

    /// A pod: an infra container (podman's own pause image, built locally from catatonit)
    /// holds the network, IPC and UTS namespaces, which the pod's containers join.
    pub fn pod(s: &Session) {
        let stray = crate::common::stray_cgroup_dirs();
        if !stray.is_empty() {
            // Also with runc: podman takes every directory there for a v1 hierarchy, writes
            // files into its cgroups in them, and then cannot remove the pod's.
            println!("skipped: {stray:?} under /sys/fs/cgroup are no cgroup mounts");
            return;
        }
        let pod = format!("{}-pod", s.dir.file_name().expect("dir").to_string_lossy());
        let cgroup_parent = &s.engine.cgroup_parent;
        // The infra container is made with podman's default runtime: the session's here.
        let create = [
            "--runtime",
            s.runtime.name(),
            "pod",
            "create",
            "--name",
            &pod,
        ];
        let out = s.cli(&[&create[..], &["--cgroup-parent", cgroup_parent]].concat());
        out.success();
        let infra = s.inspect_pod(&pod, "{{.InfraContainerID}}");
        let first = s.sleeper(&["--pod", &pod]);
        let second = s.sleeper(&["--pod", &pod]);
        let infra_pid: i32 = s.inspect(&infra, "{{.State.Pid}}").parse().expect("pid");
        for ns in ["net", "ipc", "uts"] {
            let link = |pid: i32| fs::read_link(format!("/proc/{pid}/ns/{ns}")).expect("ns");
            assert_eq!(link(s.pid(&first)), link(infra_pid), "{ns} namespace");
            assert_eq!(link(s.pid(&second)), link(infra_pid), "{ns} namespace");
        }
        assert_eq!(s.inspect_pod(&pod, "{{.State}}"), "Running");
        s.cli(&["pod", "stop", "--time", "1", &pod]).success();
        assert_eq!(s.inspect_pod(&pod, "{{.State}}"), "Exited");
        let pod_id = s.inspect_pod(&pod, "{{.ID}}");
        s.cli(&["pod", "rm", "--force", &pod]).success();
        let traces = s.engine.traces_of(&infra);
        assert!(traces.is_empty(), "infra left:\n  {}", traces.join("\n  "));
        // podman 4.3 removes the pod's cgroup from the controllers it manages only; with runc
        // too, an empty one stays in the named systemd and the unified hierarchies.
        let pod_cgroup = format!("{cgroup_parent}/{pod_id}");
        let left = traces::remove_cgroup_parent(&pod_cgroup, &[]);
        assert!(
            left.is_empty(),
            "containers' cgroups left:\n  {}",
            left.join("\n  ")
        );
    }

    /// `--systemd=always` prepares the container for systemd as init: tmpfs on /run and /tmp,
    /// the systemd cgroup writable, `container=podman`, and SIGRTMIN+3 to stop it. On cgroup v1
    /// the tmpfs at /sys/fs/cgroup is writable (podman asks for it `ro`, which runc gives the
    /// hierarchies only): systemd makes its own directories there.
    pub fn systemd_mode(s: &Session) {
        let name = s.sleeper(&["--systemd", "always"]);
        assert_eq!(s.inspect(&name, "{{.Config.StopSignal}}"), "37");
        let script = "grep -E ' (/run|/tmp|/sys/fs/cgroup|/sys/fs/cgroup/systemd) ' /proc/mounts
            echo $container";
        let out = s.exec(&[], &name, &["sh", "-c", script]).success();
        let mounts: Vec<(&str, &str, bool)> = out
            .stdout
            .lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split(' ').collect();
                (f.len() > 3).then(|| (f[1], f[2], f[3].split(',').any(|o| o == "rw")))
            })
            .collect();
        assert!(mounts.contains(&("/run", "tmpfs", true)), "{out}");
        assert!(mounts.contains(&("/tmp", "tmpfs", true)), "{out}");
        if cgroup::is_v1("memory") {
            let systemd = ("/sys/fs/cgroup/systemd", "cgroup", true);
            assert!(mounts.contains(&systemd), "{out}");
            assert!(mounts.contains(&("/sys/fs/cgroup", "tmpfs", true)), "{out}");
            let mkdir = ["mkdir", "/sys/fs/cgroup/unified"];
            s.exec(&[], &name, &mkdir).success();
        }
        assert!(out.stdout.ends_with("podman\n"), "{out}");
    }

    /// Capability names by number (capabilities(7)), for `--cap-drop`.
    #[rustfmt::skip]
    const CAPABILITIES: [&str; 41] = [
        "CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID",
        "SETUID", "SETPCAP", "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN",
        "NET_RAW", "IPC_LOCK", "IPC_OWNER", "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE",
        "SYS_PACCT", "SYS_ADMIN", "SYS_BOOT", "SYS_NICE", "SYS_RESOURCE", "SYS_TIME",
        "SYS_TTY_CONFIG", "MKNOD", "LEASE", "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP",
        "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG", "WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ",
        "PERFMON", "BPF", "CHECKPOINT_RESTORE",
    ];

    /// `--privileged`: every capability the host has, no seccomp filter, the host's devices.
    pub fn privileged(s: &Session) {
        // podman asks for every capability; where the host withholds some (this one has no
        // CAP_SYS_RESOURCE) no runtime can grant them, so they are dropped. (Docker 20.10
        // ignores --cap-drop with --privileged: on such a host it fails with runc too.)
        let host_caps = u64::from_str_radix(&host_status_field("CapBnd"), 16).expect("hex");
        let mut opts = vec!["--privileged".to_string()];
        for (bit, name) in CAPABILITIES.iter().enumerate() {
            if host_caps & (1 << bit) == 0 {
                opts.extend(["--cap-drop".to_string(), name.to_string()]);
            }
        }
        let opts: Vec<&str> = opts.iter().map(String::as_str).collect();
        assert_eq!(
            status_field(s, &opts, "CapEff"),
            host_status_field("CapBnd")
        );
        assert_eq!(status_field(s, &opts, "Seccomp"), "0");
        let out = s.run(
            &opts,
            &["sh", "-c", "test -c /dev/kmsg && echo host-devices"],
        );
        assert_eq!(out.success().stdout, "host-devices\n");
    }
}
