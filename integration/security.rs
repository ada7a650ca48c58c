//! Escape attempts that must fail: each test stages the real attack from a malicious image or
//! container process and then checks, from the host, that nothing outside the container changed.
//!
//! Covered here (the simpler symlink and leaked-fd cases live in `rootfs.rs` and `process.rs`):
//! - CVE-2019-5736: a container process opening /proc/<pid>/exe of a runtime process that is
//!   inside its pid namespace (a `created` init, a stalled `exec`), to overwrite the runtime;
//! - CVE-2024-21626: a leaked host fd as `exec --cwd`, fds that reach the process, a cwd that is
//!   an image symlink to a host directory;
//! - symlinks in the image that point at host files where the runtime creates devices, binds the
//!   console or masks a path; writes to /proc (sysctl, oom_score_adj) redirected by an image whose
//!   /proc is a symlink or by a config mount over /proc;
//! - setuid gain under noNewPrivileges, and capabilities the runtime itself holds leaking into
//!   the container's inheritable/ambient sets.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt, symlink};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::{
    COMMAND_TIMEOUT, Container, Output, is_berth, mounts_under, runtime, set_args,
};

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// A private copy of the runtime binary, so that a successful CVE-2019-5736 attack corrupts the
/// copy and never the binary the other tests use. Removed on drop.
struct RuntimeCopy {
    dir: PathBuf,
    bin: PathBuf,
}

impl RuntimeCopy {
    fn new(c: &Container) -> Self {
        let dir = c.dir.join("runtime-copy");
        fs::create_dir_all(&dir).expect("create the runtime copy's dir");
        // Same file name: `is_berth()` and the runtime's own messages key on it.
        let bin = dir.join(runtime().file_name().expect("runtime has a file name"));
        fs::copy(runtime(), &bin).expect("copy the runtime binary");
        RuntimeCopy { dir, bin }
    }

    fn sha256(&self) -> String {
        let out = Command::new("sha256sum")
            .arg(&self.bin)
            .output()
            .expect("run sha256sum");
        assert!(
            out.status.success(),
            "sha256sum {} failed",
            self.bin.display()
        );
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_string()
    }

    /// Starts `<copy> --root <c's root> args…` (output captured, not waited for).
    fn spawn(&self, c: &Container, args: &[&str]) -> crate::common::Spawned {
        let root = c.root.to_str().expect("utf-8 temp dir");
        let mut full = vec!["--root", root];
        full.extend_from_slice(args);
        c.spawn_program(&self.bin, &full, |_| {})
    }

    #[track_caller]
    fn cmd(&self, c: &Container, args: &[&str]) -> Output {
        self.spawn(c, args).wait(COMMAND_TIMEOUT)
    }

    /// `create` for `c` with the copy; returns the init's host pid.
    #[track_caller]
    fn create(&self, c: &Container) -> i32 {
        let bundle = c.bundle.to_str().expect("utf-8 temp dir");
        self.cmd(c, &["create", "--bundle", bundle, &c.id])
            .success();
        init_pid(c)
    }
}

impl Drop for RuntimeCopy {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

fn init_pid(c: &Container) -> i32 {
    let state = c.state_json();
    state["pid"]
        .as_i64()
        .unwrap_or_else(|| panic!("no pid in state: {state}")) as i32
}

/// A field of /proc/<pid>/status, e.g. `PPid` or `NSpid`.
fn status_field(pid: i32, name: &str) -> Option<String> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .map(|v| v.trim().to_string())
}

/// The pid of host process `pid` in its innermost pid namespace.
fn innermost_pid(pid: i32) -> i32 {
    let nspid = status_field(pid, "NSpid").unwrap_or_else(|| panic!("no NSpid for {pid}"));
    let levels: Vec<&str> = nspid.split_whitespace().collect();
    assert!(levels.len() > 1, "{pid} is not in a child pid namespace");
    levels[levels.len() - 1].parse().expect("numeric NSpid")
}

/// What the attacker in the container tries against /proc/$1/exe (a runtime process), and,
/// as a control, against /proc/1/exe (the container's own dumpable sleep), which must work:
/// it proves the attack reaches its target and only the runtime's defence stops it.
const EXE_ATTACK: &str = r#"t=/proc/$1
echo "comm=$(cat $t/comm)"
cat /proc/1/exe > /dev/null && echo control-read-allowed
readlink $t/exe && echo readlink-allowed
cat $t/exe > /dev/null && echo read-allowed
(exec 3< $t/exe && echo fd-allowed && echo pwned > /proc/self/fd/3 && echo reopen-write-allowed)
echo pwned >> $t/exe && echo append-allowed
echo pwned > $t/exe && echo write-allowed
true"#;

/// Runs [`EXE_ATTACK`] against container pid `target` from a process exec'd into `c`, and checks
/// every attempt was refused for lack of permission and the runtime binary is unchanged.
#[track_caller]
fn assert_exe_attack_fails(c: &Container, runtime: &RuntimeCopy, target: i32, hash: &str) {
    let target = target.to_string();
    let out = runtime
        .cmd(c, &["exec", &c.id, "sh", "-c", EXE_ATTACK, "sh", &target])
        .success();
    let comm = out
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("comm="))
        .unwrap_or("");
    assert!(!comm.is_empty(), "the target is not visible:\n{out}");
    assert!(
        out.stdout.contains("control-read-allowed"),
        "the control attack on a dumpable process failed:\n{out}"
    );
    for attempt in [
        "readlink-allowed",
        "read-allowed",
        "fd-allowed",
        "reopen-write-allowed",
        "append-allowed",
        "write-allowed",
    ] {
        assert!(
            !out.stdout.lines().any(|l| l == attempt),
            "{attempt}: the container reached the runtime binary:\n{out}"
        );
    }
    assert!(out.stderr.contains("Permission denied"), "{out}");
    assert_eq!(runtime.sha256(), hash, "the runtime binary was modified");
}

/// Host-side snapshot of a file or dir the attack aims at: everything an escape could change.
#[derive(Debug, PartialEq)]
struct Snapshot {
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: (i64, i64),
    ctime: (i64, i64),
    content: Vec<u8>,
}

fn snapshot(path: &Path) -> Snapshot {
    let meta =
        fs::symlink_metadata(path).unwrap_or_else(|e| panic!("stat {}: {e}", path.display()));
    let content = if meta.is_dir() {
        let mut names: Vec<String> = fs::read_dir(path)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names.join("\n").into_bytes()
    } else {
        fs::read(path).unwrap_or_default()
    };
    Snapshot {
        mode: meta.mode(),
        uid: meta.uid(),
        gid: meta.gid(),
        mtime: (meta.mtime(), meta.mtime_nsec()),
        ctime: (meta.ctime(), meta.ctime_nsec()),
        content,
    }
}

/// A host file (mode 0600, root) the image will point symlinks at.
fn host_file(c: &Container, name: &str) -> PathBuf {
    let path = c.dir.join(name);
    fs::write(&path, "host data, must not change\n").unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
    path
}

/// `path` relative to the root (`/a/b` → `a/b`), for `../../..`-style symlinks.
fn below_root(path: &Path) -> &Path {
    path.strip_prefix("/").expect("absolute path")
}

/// Enough `..` to climb from anywhere in the rootfs to the host's / (clamped at the top).
const UP: &str = "../../../../../../../../../../../..";

fn remove_mount(config: &mut Value, destination: &str) {
    let mounts = config["mounts"].as_array_mut().expect("config has mounts");
    mounts.retain(|m| m["destination"] != destination);
}

fn add_mounts(config: &mut Value, mounts: Value) {
    let list = config["mounts"].as_array_mut().expect("config has mounts");
    list.extend(mounts.as_array().expect("a JSON array").iter().cloned());
}

/// Opens a dir without O_CLOEXEC, so that every runtime process the test starts inherits it.
fn leak_dir(dir: &Path) -> OwnedFd {
    nix::fcntl::open(
        dir,
        nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_DIRECTORY,
        nix::sys::stat::Mode::empty(),
    )
    .unwrap_or_else(|e| panic!("open {}: {e}", dir.display()))
}

/// A host dir holding a file whose name the container must never see.
fn host_dir_with_marker(c: &Container) -> PathBuf {
    let dir = c.dir.join("host-dir");
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join("host-marker-file"), "x").unwrap();
    dir
}

// ---------------------------------------------------------------------------------------------
// CVE-2019-5736: overwriting the runtime through /proc/<pid>/exe
// ---------------------------------------------------------------------------------------------

/// Container B joins A's pid namespace; B's init, waiting in `created`, is a runtime process
/// (its /proc/<pid>/exe is the runtime binary) visible to A's processes.
#[test]
fn cve_2019_5736_created_init_exe_is_out_of_reach() {
    let a = Container::with_args(&["sleep", "1000"]);
    let runtime = RuntimeCopy::new(&a);
    let hash = runtime.sha256();
    let a_pid = runtime.create(&a);
    runtime.cmd(&a, &["start", &a.id]).success();

    let b = Container::with_args(&["true"]);
    b.configure_json(|config| {
        let namespaces = config["linux"]["namespaces"].as_array_mut().unwrap();
        namespaces.retain(|ns| ns["type"] != "pid");
        namespaces.push(json!({"type": "pid", "path": format!("/proc/{a_pid}/ns/pid")}));
    });
    let b_pid = runtime.create(&b);
    if is_berth() {
        assert_eq!(
            fs::read_link(format!("/proc/{b_pid}/exe")).unwrap(),
            runtime.bin,
            "B's init should still be the runtime binary"
        );
    }
    assert_exe_attack_fails(&a, &runtime, innermost_pid(b_pid), &hash);
    assert_eq!(b.status().as_deref(), Some("created"));
}

/// An `exec` whose process is stalled before execve, inside the container: reading the
/// container's /etc/passwd (for HOME) blocks because the image made it a FIFO. Meanwhile a
/// container process attacks the stalled runtime process.
#[test]
fn cve_2019_5736_exec_process_exe_is_out_of_reach() {
    if !is_berth() {
        // runc's own init looks users up in /etc/passwd too, so the FIFO would stall `create`
        // itself; runc 1.1.5 runs from a sealed memfd copy of its binary anyway.
        return;
    }
    let c = Container::with_args(&["sleep", "1000"]);
    // The init and the attacker have HOME, so only the stalled exec reads /etc/passwd.
    c.configure_json(|config| {
        config["process"]["env"]
            .as_array_mut()
            .unwrap()
            .push(json!("HOME=/root"));
    });
    let passwd = c.bundle.join("rootfs/etc/passwd");
    fs::remove_file(&passwd).unwrap();
    nix::unistd::mkfifo(&passwd, nix::sys::stat::Mode::from_bits_truncate(0o644))
        .expect("mkfifo /etc/passwd in the image");
    let stalled_process = c.dir.join("stalled-process.json");
    fs::write(
        &stalled_process,
        json!({"args": ["true"], "cwd": "/", "env": ["PATH=/bin"], "user": {"uid": 0, "gid": 0}})
            .to_string(),
    )
    .unwrap();

    let runtime = RuntimeCopy::new(&c);
    let hash = runtime.sha256();
    runtime.create(&c);
    runtime.cmd(&c, &["start", &c.id]).success();
    let stalled = runtime.spawn(
        &c,
        &[
            "exec",
            "--process",
            stalled_process.to_str().unwrap(),
            &c.id,
        ],
    );
    let exec_pid = stalled.child.id() as i32;

    // Holding the FIFO's write end open keeps the reader blocked in read().
    let writer = open_fifo_writer(&passwd, COMMAND_TIMEOUT);
    let stalled_pid = child_in_container(exec_pid)
        .unwrap_or_else(|| panic!("no child of the exec process {exec_pid} in a pid namespace"));
    assert_exe_attack_fails(&c, &runtime, innermost_pid(stalled_pid), &hash);

    let mut writer = writer;
    writer
        .write_all(b"root:x:0:0:root:/root:/bin/sh\n")
        .unwrap();
    drop(writer);
    stalled.wait(COMMAND_TIMEOUT).success();
}

/// Opens the FIFO's write end once a reader is blocked on it (ENXIO until then).
fn open_fifo_writer(fifo: &Path, timeout: Duration) -> File {
    let deadline = Instant::now() + timeout;
    loop {
        match OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(fifo)
        {
            Ok(file) => return file,
            Err(e) if e.raw_os_error() == Some(libc::ENXIO) && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => panic!("nobody read {} in time: {e}", fifo.display()),
        }
    }
}

/// A child of `parent` that lives in a child pid namespace (the exec'd process before execve).
fn child_in_container(parent: i32) -> Option<i32> {
    let parent = parent.to_string();
    fs::read_dir("/proc")
        .ok()?
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .find(|&pid| {
            status_field(pid, "PPid").as_deref() == Some(parent.as_str())
                && status_field(pid, "NSpid").is_some_and(|n| n.split_whitespace().count() > 1)
        })
}

// ---------------------------------------------------------------------------------------------
// CVE-2024-21626: leaked fds and a cwd outside the root
// ---------------------------------------------------------------------------------------------

#[test]
fn cve_2024_21626_exec_cwd_through_a_leaked_fd_fails() {
    let mut c = Container::new();
    let host_dir = host_dir_with_marker(&c);
    c.start_sleeper();
    let leaked = leak_dir(&host_dir);
    let cwd = format!("/proc/self/fd/{}", leaked.as_raw_fd());
    for cwd in [cwd.clone(), format!("{cwd}/..")] {
        let out = c.exec(&["--cwd", &cwd], &["sh", "-c", "pwd; ls"]);
        assert!(
            !out.stdout.contains("host-marker-file"),
            "the exec'd process is in a host directory:\n{out}"
        );
        assert_ne!(out.code, 0, "cwd {cwd} should be refused:\n{out}");
    }
}

/// The shell's own fds, listed by a child that opens the dir; the trailing `:` keeps the shell
/// from exec'ing `ls` in its own place.
const LIST_FDS: &str = "ls /proc/$$/fd; :";

#[test]
fn only_stdio_reaches_the_container_process() {
    let mut c = Container::new();
    let host_dir = host_dir_with_marker(&c);
    let _leaked = leak_dir(&host_dir);
    assert_eq!(c.sh(LIST_FDS), "0\n1\n2\n", "run: fds beyond stdio leaked");

    c.start_sleeper();
    let out = c.exec(&[], &["sh", "-c", LIST_FDS]).success();
    assert_eq!(out.stdout, "0\n1\n2\n", "exec: fds beyond stdio leaked");
}

/// The image points the configured cwd at a host dir (absolute and `..` symlinks): the cwd must
/// resolve inside the rootfs.
#[test]
fn cwd_symlinked_to_a_host_dir_stays_inside() {
    for (link, target) in [("hostcwd", None), ("upcwd", Some(UP))] {
        let c = Container::new();
        let host_dir = host_dir_with_marker(&c);
        let before = snapshot(&host_dir);
        let cwd = match target {
            None => {
                symlink(&host_dir, c.bundle.join("rootfs").join(link)).unwrap();
                format!("/{link}")
            }
            Some(up) => {
                symlink(up, c.bundle.join("rootfs").join(link)).unwrap();
                format!("/{link}/{}", below_root(&host_dir).display())
            }
        };
        c.configure_json(|config| {
            config["process"]["cwd"] = json!(cwd);
            config["process"]["args"] = json!(["sh", "-c", "pwd; ls -a"]);
        });
        let out = c.run();
        assert!(
            !out.stdout.contains("host-marker-file"),
            "cwd {cwd} reached the host dir:\n{out}"
        );
        assert_eq!(
            snapshot(&host_dir),
            before,
            "cwd {cwd}: the host dir changed"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Symlinks in the image's /dev and /proc
// ---------------------------------------------------------------------------------------------

/// crun's CVE-2026-47766 class: `linux.devices` at a path the image made a symlink to a host
/// file. The device must be created inside the rootfs; the host file keeps mode, owner, content.
// runc deviates: 1.1.5 keeps the image's /dev symlinks instead of creating the devices (the
// host files stay untouched).
#[test]
fn linux_devices_over_image_symlinks_stay_inside() {
    let mut c = Container::new();
    let absolute = host_file(&c, "host-dev-absolute");
    let relative = host_file(&c, "host-dev-relative");
    let before = (snapshot(&absolute), snapshot(&relative));
    let dev = c.bundle.join("rootfs/dev");
    symlink(&absolute, dev.join("evil")).unwrap();
    symlink(
        format!("{UP}/{}", below_root(&relative).display()),
        dev.join("evil2"),
    )
    .unwrap();
    c.configure(|spec| {
        set_args(
            spec,
            &[
                "stat",
                "-c",
                "%n %F %t:%T %a %u:%g",
                "/dev/evil",
                "/dev/evil2",
            ],
        )
    });
    c.configure_json(|config| {
        // Without a /dev tmpfs the image's /dev, traps included, is the container's.
        remove_mount(config, "/dev");
        let device = |path: &str| {
            json!({"path": path, "type": "c", "major": 1, "minor": 3, "fileMode": 438, "uid": 1000, "gid": 1000})
        };
        config["linux"]["devices"] = json!([device("/dev/evil"), device("/dev/evil2")]);
    });
    let out = c.run();
    assert_eq!(
        (snapshot(&absolute), snapshot(&relative)),
        before,
        "a host file changed:\n{out}"
    );
    assert_eq!(
        out.success().stdout,
        "/dev/evil character special file 1:3 666 1000:1000\n\
         /dev/evil2 character special file 1:3 666 1000:1000\n",
    );
}

/// CVE-2025-52565 class: with a terminal, the pty is bound over /dev/console, which the image
/// made a symlink to a host file.
// runc deviates: 1.1.5 fails `create` opening /dev/console through the symlink (safe: the host
// file stays untouched).
#[test]
fn console_bind_over_an_image_symlink_stays_inside() {
    let c = Container::with_args(&["sleep", "1000"]);
    let target = host_file(&c, "host-console");
    let before = snapshot(&target);
    let console = c.bundle.join("rootfs/dev/console");
    let _ = fs::remove_file(&console);
    symlink(&target, &console).unwrap();
    c.configure_json(|config| {
        remove_mount(config, "/dev");
        config["process"]["terminal"] = json!(true);
    });
    // The runtime sends the pty master into the backlog; nobody needs to accept it.
    let socket = c.dir.join("console.sock");
    let listener = UnixListener::bind(&socket).unwrap();
    let created = c.create_with(&["--console-socket", socket.to_str().unwrap()]);
    assert_eq!(
        snapshot(&target),
        before,
        "the host file changed:\n{created}"
    );
    created.success();
    c.start().success();
    let out = c
        .exec(&[], &["stat", "-L", "-c", "%F %t", "/dev/console"])
        .success();
    // pts devices have major 136 (0x88).
    assert_eq!(out.stdout, "character special file 88\n", "{out}");
    assert_eq!(snapshot(&target), before, "the host file changed");
    drop(listener);
}

/// CVE-2025-31133 with a relative symlink: the image's /dev/null climbs to a host file, and the
/// default maskedPaths bind /dev/null.
// runc deviates: 1.1.5 keeps the image's /dev/null symlink (the host file stays untouched).
#[test]
fn masking_with_a_relative_dev_null_symlink_leaves_the_host_alone() {
    let mut c = Container::new();
    let target = host_file(&c, "host-null");
    let before = snapshot(&target);
    let null = c.bundle.join("rootfs/dev/null");
    let _ = fs::remove_file(&null);
    symlink(format!("{UP}/{}", below_root(&target).display()), &null).unwrap();
    c.configure(|spec| {
        set_args(
            spec,
            &[
                "sh",
                "-c",
                "stat -c '%F %t:%T' /dev/null; wc -c < /proc/keys",
            ],
        )
    });
    c.configure_json(|config| remove_mount(config, "/dev"));
    let out = c.run();
    assert_eq!(snapshot(&target), before, "the host file changed:\n{out}");
    assert_eq!(out.success().stdout, "character special file 1:3\n0\n");
}

/// Fake procfs files on the host that the runtime's /proc writes must never reach.
struct FakeProc {
    dir: PathBuf,
    files: Vec<PathBuf>,
}

impl FakeProc {
    fn new(c: &Container) -> Self {
        let dir = c.dir.join("fake-proc");
        let files: Vec<PathBuf> = [
            "sys/net/ipv4/ip_forward",
            "sys/kernel/shmmni",
            "self/oom_score_adj",
            "self/setgroups",
        ]
        .iter()
        .map(|f| dir.join(f))
        .collect();
        for file in &files {
            fs::create_dir_all(file.parent().unwrap()).unwrap();
            fs::write(file, "sentinel\n").unwrap();
        }
        FakeProc { dir, files }
    }

    fn snapshots(&self) -> Vec<Snapshot> {
        self.files.iter().map(|f| snapshot(f)).collect()
    }
}

/// One /proc write the runtime makes for a config: how to ask for it, and how the container
/// reads the value back through a procfs of its own at /mnt/proc.
struct ProcWrite {
    what: &'static str,
    ask: fn(&mut Value),
    read_back: &'static str,
    expected: &'static str,
}

/// Tried one per container, so that the refusal of one cannot hide what the other does.
const PROC_WRITES: [ProcWrite; 2] = [
    ProcWrite {
        what: "linux.sysctl",
        ask: |config| config["linux"]["sysctl"] = json!({"kernel.shmmni": "1234"}),
        read_back: "cat /mnt/proc/sys/kernel/shmmni",
        expected: "1234\n",
    },
    ProcWrite {
        what: "process.oomScoreAdj",
        ask: |config| config["process"]["oomScoreAdj"] = json!(100),
        read_back: "cat /mnt/proc/self/oom_score_adj",
        expected: "100\n",
    },
];

/// For each of [`PROC_WRITES`]: a container that `stage` turned malicious runs, and the fake
/// procfs files on the host must be untouched. Refusing to run is fine; running is fine only if
/// the value landed in the container's real procfs.
#[track_caller]
fn assert_proc_writes_stay_off(case: &str, stage: impl Fn(&Container, &FakeProc)) {
    for write in PROC_WRITES {
        let c = Container::with_args(&["sh", "-c", write.read_back]);
        let fake = FakeProc::new(&c);
        stage(&c, &fake);
        c.configure_json(|config| {
            (write.ask)(config);
            add_mounts(
                config,
                json!([{"destination": "/mnt/proc", "type": "proc", "source": "proc"}]),
            );
        });
        let before = fake.snapshots();
        let out = c.run();
        let what = write.what;
        assert_eq!(
            fake.snapshots(),
            before,
            "{case}, {what}: the runtime wrote into the host's fake /proc files:\n{out}"
        );
        assert!(
            mounts_under(&c.dir).is_empty(),
            "{case}, {what}: a mount leaked"
        );
        if out.code == 0 {
            assert_eq!(
                out.stdout, write.expected,
                "{case}, {what}: not applied:\n{out}"
            );
        }
    }
}

/// The config mounts no procfs and the image's /proc is a symlink to a host dir.
#[test]
fn proc_writes_do_not_follow_an_image_proc_symlink() {
    assert_proc_writes_stay_off("/proc -> host dir", |c, fake| {
        let proc_dir = c.bundle.join("rootfs/proc");
        fs::remove_dir(&proc_dir).unwrap();
        symlink(&fake.dir, &proc_dir).unwrap();
        c.configure_json(|config| remove_mount(config, "/proc"));
    });
}

/// The config mounts no procfs; the image's /proc/sys and /proc/self are symlinks to host dirs.
#[test]
fn proc_writes_do_not_follow_image_symlinks_inside_proc() {
    assert_proc_writes_stay_off("/proc/sys and /proc/self -> host dirs", |c, fake| {
        let proc_dir = c.bundle.join("rootfs/proc");
        symlink(fake.dir.join("sys"), proc_dir.join("sys")).unwrap();
        let self_dir = fake.dir.join("self");
        symlink(
            format!("{UP}/{}", below_root(&self_dir).display()),
            proc_dir.join("self"),
        )
        .unwrap();
        c.configure_json(|config| remove_mount(config, "/proc"));
    });
}

/// The config mounts a host dir over /proc, after the procfs mount.
#[test]
fn proc_writes_do_not_land_in_a_dir_mounted_over_proc() {
    assert_proc_writes_stay_off("host dir bound over /proc", |c, fake| {
        c.configure_json(|config| {
            add_mounts(
                config,
                json!([{"destination": "/proc", "type": "bind", "source": fake.dir, "options": ["rbind", "rw"]}]),
            );
        });
    });
}

// ---------------------------------------------------------------------------------------------
// Privileges: setuid and capabilities
// ---------------------------------------------------------------------------------------------

/// A rootfs with a setuid-root busybox at /suid/busybox and root's secret that only euid 0 can
/// read: busybox `crontab -l` (a setuid-requiring applet, so busybox keeps euid 0) prints the
/// crontab of the calling user from a root-only 0600 file.
fn setuid_container(no_new_privileges: bool) -> Container {
    let c = Container::with_args(&["/suid/busybox", "crontab", "-l"]);
    let rootfs = c.bundle.join("rootfs");
    fs::create_dir_all(rootfs.join("suid")).unwrap();
    let suid = rootfs.join("suid/busybox");
    fs::copy(rootfs.join("bin/busybox"), &suid).unwrap();
    fs::set_permissions(&suid, fs::Permissions::from_mode(0o4755)).unwrap();
    let spool = rootfs.join("var/spool/cron/crontabs");
    fs::create_dir_all(&spool).unwrap();
    // uid 1000 is "user" in the test image's /etc/passwd.
    let crontab = spool.join("user");
    fs::write(&crontab, "# root-only secret\n").unwrap();
    fs::set_permissions(&crontab, fs::Permissions::from_mode(0o600)).unwrap();
    c.configure_json(|config| {
        config["process"]["user"] = json!({"uid": 1000, "gid": 1000});
        config["process"]["noNewPrivileges"] = json!(no_new_privileges);
    });
    c
}

#[test]
fn no_new_privileges_blocks_setuid_gain() {
    let blocked = setuid_container(true).run();
    assert!(
        !blocked.stdout.contains("root-only secret"),
        "a setuid binary gained root despite noNewPrivileges:\n{blocked}"
    );
    assert_ne!(blocked.code, 0, "{blocked}");
    // The same binary without noNewPrivileges: proves the probe detects a gain.
    let gained = setuid_container(false).run().success();
    assert_eq!(gained.stdout, "# root-only secret\n", "{gained}");
}

/// Capabilities the runtime is started with in its inheritable and ambient sets.
const RUNTIME_EXTRA_CAPS: &str = "cap_net_raw,cap_sys_ptrace,cap_sys_admin";

/// `args` under capsh, which raises [`RUNTIME_EXTRA_CAPS`] into the inheritable and ambient sets.
fn spawn_with_extra_caps(c: &Container, program: &Path, args: &[&str]) -> Output {
    let mut full = vec![
        format!("--inh={RUNTIME_EXTRA_CAPS}"),
        format!("--addamb={RUNTIME_EXTRA_CAPS}"),
        "--".to_string(),
        "-c".to_string(),
        "exec \"$0\" \"$@\"".to_string(),
        program.display().to_string(),
    ];
    full.extend(args.iter().map(|a| a.to_string()));
    let full: Vec<&str> = full.iter().map(String::as_str).collect();
    c.spawn_program(Path::new("/usr/sbin/capsh"), &full, |_| {})
        .wait(COMMAND_TIMEOUT)
}

const CAP_STATUS: &str = "grep -E '^Cap(Inh|Prm|Eff|Bnd|Amb):' /proc/self/status | tr '\\t' ' '";

fn cap_lines(stdout: &str) -> Vec<&str> {
    stdout
        .lines()
        .filter(|l| l.starts_with("Cap"))
        .map(str::trim_end)
        .collect()
}

/// Runs `runtime --root <root> args…` under capsh (see [`spawn_with_extra_caps`]).
fn runtime_with_extra_caps(c: &Container, args: &[&str]) -> Output {
    let root = c.root.to_str().expect("utf-8 temp dir");
    let mut full = vec!["--root", root];
    full.extend_from_slice(args);
    spawn_with_extra_caps(c, runtime(), &full)
}

#[test]
fn runtime_capabilities_do_not_leak_into_the_container() {
    // The probe itself: a process started this way does hold the extra caps.
    let probe_dir = Container::new();
    let probe =
        spawn_with_extra_caps(&probe_dir, Path::new("/bin/sh"), &["-c", CAP_STATUS]).success();
    assert!(
        cap_lines(&probe.stdout).contains(&"CapAmb: 0000000000282000"),
        "capsh did not raise the ambient set:\n{probe}"
    );

    // CAP_KILL (bit 5) and CAP_CHOWN (bit 0) bounding, nothing inheritable or ambient. Root's
    // execve would raise permitted to the bounding set, but noNewPrivileges (the default config)
    // caps it at the configured permitted set; uid 1000 gets nothing.
    for (uid, permitted) in [(0, "0000000000000020"), (1000, "0000000000000000")] {
        let c = Container::new();
        c.configure_json(|config| {
            config["process"]["args"] = json!(["sh", "-c", CAP_STATUS]);
            config["process"]["user"] = json!({"uid": uid, "gid": uid});
            config["process"]["capabilities"] = json!({
                "bounding": ["CAP_KILL", "CAP_CHOWN"],
                "effective": ["CAP_KILL"],
                "permitted": ["CAP_KILL"],
                "inheritable": [],
                "ambient": []
            });
        });
        let expected = [
            "CapInh: 0000000000000000".to_string(),
            format!("CapPrm: {permitted}"),
            format!("CapEff: {permitted}"),
            "CapBnd: 0000000000000021".to_string(),
            "CapAmb: 0000000000000000".to_string(),
        ];
        let bundle = c.bundle.to_str().unwrap();
        let out = runtime_with_extra_caps(&c, &["run", "--bundle", bundle, &c.id]).success();
        assert_eq!(cap_lines(&out.stdout), expected, "run as uid {uid}:\n{out}");

        c.configure_json(|config| config["process"]["args"] = json!(["sleep", "1000"]));
        runtime_with_extra_caps(&c, &["create", "--bundle", bundle, &c.id]).success();
        c.start().success();
        let out = runtime_with_extra_caps(&c, &["exec", &c.id, "sh", "-c", CAP_STATUS]).success();
        assert_eq!(
            cap_lines(&out.stdout),
            expected,
            "exec as uid {uid}:\n{out}"
        );
    }
}
