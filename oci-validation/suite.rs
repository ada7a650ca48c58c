//! What every case shares: runtime-tools' default config, the checker inside the container,
//! checks that report all their failures at once, and the record of what a case could not check
//! on this host.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use libseccomp::ScmpSyscall;
use oci_spec::runtime::Spec;
use serde_json::{Value, json};

use crate::common::{COMMAND_TIMEOUT, Container, MARKER_ENV, Output, runtime};

/// The checker script, installed in each bundle's rootfs as `/oci-check`.
const CHECKER: &str = include_str!("checker.sh");

/// How long a container gets to reach a state the case waits for.
pub const SETTLE: Duration = Duration::from_secs(10);

/// The 14 capabilities runtime-tools' generator gives a process, in every set.
pub const DEFAULT_CAPS: [&str; 14] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// A container whose config is runtime-tools' default (`generate.New("linux")` plus the
/// validation suite's rootfs path), with the harness's cgroup path and marker kept. The process
/// is `sh`; cases set their own.
pub fn container() -> Container {
    let mut c = Container::new();
    c.configure(|spec| {
        let cgroups_path = spec.linux().as_ref().and_then(|l| l.cgroups_path().clone());
        let mut config = runtime_tools_default();
        config["process"]["env"]
            .as_array_mut()
            .expect("env is a list")
            .push(format!("{MARKER_ENV}={}", c_id(spec)).into());
        *spec = serde_json::from_value(config).expect("the default config parses");
        let linux = spec.linux_mut().as_mut().expect("linux");
        linux.set_cgroups_path(cgroups_path);
    });
    install_checker(&c);
    c
}

/// The container id, as the harness put it into the marker variable.
fn c_id(spec: &Spec) -> String {
    let env = spec.process().as_ref().and_then(|p| p.env().clone());
    env.unwrap_or_default()
        .iter()
        .find_map(|e| e.strip_prefix(&format!("{MARKER_ENV}=")).map(String::from))
        .expect("the harness sets the marker")
}

/// runtime-tools' generator defaults for Linux, written from what `generate.New` documents:
/// hostname, capabilities in all five sets, one rlimit, six mounts, a device cgroup that denies
/// everything, five new namespaces and a default-deny seccomp profile.
pub fn runtime_tools_default() -> Value {
    let caps: Vec<&str> = DEFAULT_CAPS.to_vec();
    json!({
        "ociVersion": "1.0.2",
        "hostname": "mrsdalloway",
        "root": {"path": "rootfs", "readonly": false},
        "process": {
            "terminal": false,
            "user": {"uid": 0, "gid": 0},
            "args": ["sh"],
            "env": [
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "TERM=xterm"
            ],
            "cwd": "/",
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "capabilities": {
                "bounding": caps, "effective": caps, "inheritable": caps,
                "permitted": caps, "ambient": caps
            }
        },
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc",
             "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620",
                         "gid=5"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
             "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
             "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs",
             "options": ["nosuid", "noexec", "nodev", "ro"]}
        ],
        "linux": {
            "resources": {"devices": [{"allow": false, "access": "rwm"}]},
            "namespaces": [
                {"type": "pid"}, {"type": "network"}, {"type": "ipc"}, {"type": "uts"},
                {"type": "mount"}
            ],
            "seccomp": engine_era_seccomp_profile()
        }
    })
}

/// A default-deny profile like the one runtime-tools' generator adds (an engine's from before
/// Linux 5.1): every syscall older than 5.1 (numbered below 424 on every architecture) is
/// allowed except the privileged ones engines deny. openat2, clone3, close_range, faccessat2 and
/// later ones are not listed, so a runtime must keep its own calls after loading it to those
/// runc makes, and let newer syscalls fail with ENOSYS (which libc falls back from).
pub fn engine_era_seccomp_profile() -> Value {
    const FIRST_OF_LINUX_5_1: i32 = 424;
    const DENIED: &[&str] = &[
        "acct",
        "add_key",
        "bpf",
        "clock_adjtime",
        "clock_settime",
        "create_module",
        "delete_module",
        "finit_module",
        "get_kernel_syms",
        "get_mempolicy",
        "init_module",
        "ioperm",
        "iopl",
        "kcmp",
        "kexec_file_load",
        "kexec_load",
        "keyctl",
        "lookup_dcookie",
        "mbind",
        "mount",
        "move_pages",
        "name_to_handle_at",
        "nfsservctl",
        "open_by_handle_at",
        "perf_event_open",
        "pivot_root",
        "process_vm_readv",
        "process_vm_writev",
        "ptrace",
        "query_module",
        "quotactl",
        "reboot",
        "request_key",
        "set_mempolicy",
        "setns",
        "settimeofday",
        "stime",
        "swapoff",
        "swapon",
        "_sysctl",
        "sysfs",
        "umount",
        "umount2",
        "unshare",
        "uselib",
        "userfaultfd",
        "ustat",
        "vm86",
        "vm86old",
    ];
    let allowed: Vec<String> = (0..FIRST_OF_LINUX_5_1)
        .filter_map(|nr| ScmpSyscall::from_raw_syscall(nr).get_name().ok())
        .filter(|name| !DENIED.contains(&name.as_str()))
        .collect();
    let architectures: &[&str] = match std::env::consts::ARCH {
        "x86_64" => &["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "aarch64" => &["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"],
        _ => &[],
    };
    json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "architectures": architectures,
        "syscalls": [{"names": allowed, "action": "SCMP_ACT_ALLOW"}]
    })
}

/// Edits the config as JSON, through the harness's typed spec (so that later edits of either
/// kind keep it). Configs the typed spec cannot hold (unknown capabilities, properties) go
/// through `Container::configure_json`, after every other edit.
pub fn edit(c: &mut Container, change: impl FnOnce(&mut Value)) {
    c.configure(|spec| {
        let mut config = serde_json::to_value(&*spec).expect("serialize the spec");
        change(&mut config);
        *spec = serde_json::from_value(config).expect("the edited config fits the typed spec");
    });
}

fn install_checker(c: &Container) {
    let path = c.bundle.join("rootfs/oci-check");
    fs::write(&path, CHECKER).expect("install the checker");
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).expect("chmod the checker");
}

/// Sub-checks of one case: each failure is kept, and the case fails with all of them at the
/// end, so one run shows everything a runtime gets wrong in that case.
#[derive(Default)]
pub struct Checks(Vec<String>);

impl Checks {
    pub fn check(&mut self, ok: bool, what: impl std::fmt::Display) {
        if !ok {
            self.0.push(what.to_string());
        }
    }

    pub fn equal<T: PartialEq + std::fmt::Debug>(&mut self, what: &str, actual: T, expected: T) {
        if actual != expected {
            self.0
                .push(format!("{what}: {actual:?}, expected {expected:?}"));
        }
    }

    /// Takes over the failures of another set of checks.
    pub fn absorb(&mut self, other: Checks) {
        self.0.extend(other.0);
    }

    /// A runtime command that must fail (the spec: "MUST generate an error").
    pub fn fails(&mut self, what: &str, out: &Output) {
        if out.code == 0 {
            self.0.push(format!("{what}: should have failed\n{out}"));
        }
    }

    /// A runtime command that must succeed.
    pub fn succeeds(&mut self, what: &str, out: &Output) {
        if out.code != 0 {
            self.0.push(format!("{what}: failed\n{out}"));
        }
    }

    #[track_caller]
    pub fn done(self) {
        assert!(self.0.is_empty(), "\n- {}", self.0.join("\n- "));
    }
}

/// Where the report goes: `$OCI_VALIDATION_REPORT`, a directory the results script reads.
fn report_dir() -> Option<PathBuf> {
    std::env::var_os("OCI_VALIDATION_REPORT").map(PathBuf::from)
}

/// The running case's name as libtest gives it (`module::case`).
fn case_name() -> String {
    let name = std::thread::current()
        .name()
        .unwrap_or("unknown")
        .to_string();
    name.replace("::", ".")
}

/// This case cannot be checked on this host at all (a missing controller or LSM): says why
/// and records it for the results table. The case then returns without checking anything.
pub fn skip(reason: &str) {
    eprintln!("skipped: {reason}");
    record("skip", reason);
}

/// Part of this case cannot be checked on this host; the rest is.
pub fn note(reason: &str) {
    eprintln!("not checked: {reason}");
    record("note", reason);
}

fn record(kind: &str, reason: &str) {
    if let Some(dir) = report_dir() {
        let path = dir.join(format!("{}.{kind}", case_name()));
        let mut text = fs::read_to_string(&path).unwrap_or_default();
        text.push_str(reason);
        text.push('\n');
        fs::write(&path, text).expect("write the report");
    }
}

/// Polls `state` until the container reaches one of `statuses`; false when it never does.
pub fn reaches(c: &Container, statuses: &[&str]) -> bool {
    let deadline = Instant::now() + SETTLE;
    loop {
        if c.status().is_some_and(|s| statuses.contains(&s.as_str())) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A private mount namespace for the runtime of one case, held by a sleeping process: cases
/// whose container shares the runtime's mount namespace run every runtime command in it, so
/// that a runtime that leaves mounts behind (or changes `/`) cannot touch the host's.
pub struct PrivateMountNamespace {
    holder: Child,
}

impl PrivateMountNamespace {
    pub fn new() -> PrivateMountNamespace {
        let holder = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sleep", "1000"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("run unshare (util-linux)");
        let namespace = PrivateMountNamespace { holder };
        let own = fs::read_link("/proc/self/ns/mnt").expect("own mount namespace");
        let deadline = Instant::now() + COMMAND_TIMEOUT;
        while fs::read_link(namespace.path()).ok().as_ref() == Some(&own) {
            assert!(
                Instant::now() < deadline,
                "unshare never entered its namespace"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        namespace
    }

    /// `/proc/<holder>/ns/mnt`.
    pub fn path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/{}/ns/mnt", self.holder.id()))
    }

    /// The namespace's inode link (`mnt:[…]`).
    pub fn inode(&self) -> String {
        fs::read_link(self.path())
            .expect("the holder's mount namespace")
            .display()
            .to_string()
    }

    /// `$BERTH_BIN --root <root> args…` inside the namespace.
    #[track_caller]
    pub fn cmd(&self, c: &Container, args: &[&str]) -> Output {
        let mount_ns = format!("--mount={}", self.path().display());
        let root = c.root.to_str().expect("utf-8 temp dir");
        let runtime = runtime().to_str().expect("utf-8 runtime path");
        let mut full = vec![mount_ns.as_str(), "--", runtime, "--root", root];
        full.extend_from_slice(args);
        c.spawn_program(Path::new("nsenter"), &full, |_| {})
            .wait(COMMAND_TIMEOUT)
    }

    /// Mount points at or below `dir` in the namespace.
    pub fn mounts_under(&self, dir: &Path) -> Vec<String> {
        let mountinfo = fs::read_to_string(format!("/proc/{}/mountinfo", self.holder.id()))
            .expect("the holder's mountinfo");
        let dir = dir.to_str().expect("utf-8 temp dir");
        mountinfo
            .lines()
            .filter_map(|line| line.split(' ').nth(4))
            .filter(|mount_point| mount_point.starts_with(dir))
            .map(String::from)
            .collect()
    }
}

impl Drop for PrivateMountNamespace {
    fn drop(&mut self) {
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}
