//! Test harness shared by every integration test.
//!
//! Each test makes a [`Container`]: its own container id, its own temp dir holding the `--root`
//! state directory and a bundle (a private copy of the busybox rootfs plus a `config.json`).
//! Dropping it force-deletes the container, then fails the test if anything was left behind
//! (mount, process, state dir, cgroup) — and removes those leftovers, even when the test panicked.
//!
//! The runtime under test is `$BERTH_BIN` (any runc-compatible binary, e.g. `/usr/sbin/runc`),
//! defaulting to the berth binary cargo built for this test run.

#![allow(dead_code)] // each test file uses a different part of the harness

pub mod fd_socket;
pub mod host_user;
pub mod readme;

use std::cell::RefCell;
use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::ErrorKind;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use oci_spec::runtime::{LinuxNamespaceType, Process, Spec};
use serde_json::Value;

/// Longest a single runtime command may take before the test fails (a hang is a bug).
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// The default config: `runc spec` (runtime-spec's reference runtime) with `terminal: false`,
/// an absolute `cgroupsPath` filled in per test, and an env marker that lets the leak check find
/// the container's processes.
const DEFAULT_CONFIG: &str = include_str!("default-config.json");

/// Env variable set in every test container's process; its value is the container id.
pub const MARKER_ENV: &str = "BERTH_TEST_ID";

/// The runtime binary under test.
pub fn runtime() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| match std::env::var_os("BERTH_BIN") {
        Some(bin) => std::path::absolute(bin).expect("BERTH_BIN is not a usable path"),
        None => PathBuf::from(env!("CARGO_BIN_EXE_berth")),
    })
}

/// True when the binary under test is berth (not runc/crun run side by side).
pub fn is_berth() -> bool {
    runtime().file_name() == Some(OsStr::new("berth"))
}

/// `BERTH_TEST_SYSTEMD_CGROUP=1` (what `tools/vm/test-systemd` sets on a systemd host): every
/// runtime command gets `--systemd-cgroup`, and each container's cgroupsPath is
/// `system.slice:berth-it:<id>`, the scope `berth-it-<id>.scope`.
pub fn systemd_cgroup() -> bool {
    std::env::var_os("BERTH_TEST_SYSTEMD_CGROUP").is_some_and(|v| v == "1")
}

/// Mount points of every cgroup hierarchy (v1 controllers, named v1 hierarchies, cgroup2).
pub fn cgroup_hierarchies() -> Vec<PathBuf> {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").expect("read mountinfo");
    mountinfo
        .lines()
        .filter_map(|line| {
            let (mount, fs) = line.split_once(" - ")?;
            let fstype = fs.split(' ').next()?;
            let mount_point = mount.split(' ').nth(4)?;
            (fstype == "cgroup" || fstype == "cgroup2").then(|| PathBuf::from(mount_point))
        })
        .collect()
}

/// Directories right under a v1 or hybrid host's /sys/fs/cgroup (a tmpfs) that no cgroup
/// filesystem is mounted on, such as runc's test suite leaves for the controllers only cgroup2
/// has there (hugetlb on the development host).
pub fn stray_cgroup_dirs() -> Vec<PathBuf> {
    let root = Path::new("/sys/fs/cgroup");
    if root.join("cgroup.controllers").exists() {
        return Vec::new();
    }
    let mounted = cgroup_hierarchies();
    let entries = fs::read_dir(root).expect("read /sys/fs/cgroup");
    (entries.flatten())
        .filter(|entry| entry.file_type().is_ok_and(|t| t.is_dir()))
        .map(|entry| entry.path())
        .filter(|dir| !mounted.contains(dir))
        .collect()
}

/// Mount point of the cgroup v1 hierarchy whose super options name `controller`. A directory
/// named after it under /sys/fs/cgroup proves nothing: on a hybrid host peers like crun create
/// `/sys/fs/cgroup/<controller>` on the tmpfs for controllers that only cgroup2 has.
pub fn v1_cgroup_mount(controller: &str) -> Option<PathBuf> {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").expect("read mountinfo");
    mountinfo.lines().find_map(|line| {
        let (mount, fs) = line.split_once(" - ")?;
        let mut fs = fs.split(' ');
        let (fstype, _, options) = (fs.next()?, fs.next()?, fs.next()?);
        let has_controller = fstype == "cgroup" && options.split(',').any(|o| o == controller);
        has_controller.then_some(PathBuf::from(mount.split(' ').nth(4)?))
    })
}

/// The shared, read-only template rootfs: `$BERTH_TEST_ROOTFS` (what `make test` passes), or one
/// built once per test run with `tools/mkrootfs`.
pub fn rootfs_template() -> &'static Path {
    static ROOTFS: OnceLock<PathBuf> = OnceLock::new();
    ROOTFS.get_or_init(|| {
        assert!(
            nix::unistd::geteuid().is_root(),
            "the integration tests must run as root"
        );
        if let Some(dir) = std::env::var_os("BERTH_TEST_ROOTFS") {
            let dir = PathBuf::from(dir);
            assert!(
                dir.join("bin/busybox").exists(),
                "BERTH_TEST_ROOTFS={} has no bin/busybox (run `make rootfs`)",
                dir.display()
            );
            return dir;
        }
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("rootfs");
        let status = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tools/mkrootfs"))
            .arg(&dir)
            .status()
            .expect("cannot run tools/mkrootfs");
        assert!(status.success(), "tools/mkrootfs {} failed", dir.display());
        dir
    })
}

/// The result of one command: exit code (128+signal when killed, as a shell reports it) and
/// its output.
#[derive(Debug)]
pub struct Output {
    pub command: String,
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    /// Panics with the whole command and output unless it exited 0.
    #[track_caller]
    pub fn success(self) -> Self {
        assert_eq!(self.code, 0, "command failed:\n{self}");
        self
    }

    /// Panics unless it exited non-zero.
    #[track_caller]
    pub fn failure(self) -> Self {
        assert_ne!(self.code, 0, "command should have failed:\n{self}");
        self
    }
}

impl std::fmt::Display for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "$ {}\nexit code: {}\n--- stdout\n{}--- stderr\n{}---",
            self.command, self.code, self.stdout, self.stderr
        )
    }
}

fn exit_code(status: ExitStatus) -> i32 {
    status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

/// A started command whose output goes to files (never pipes: a detached container inheriting a
/// pipe would keep a reader waiting forever).
pub struct Spawned {
    pub child: Child,
    command: String,
    stdout: PathBuf,
    stderr: PathBuf,
}

impl Spawned {
    /// What the command printed on stdout so far.
    pub fn stdout_so_far(&self) -> String {
        fs::read_to_string(&self.stdout).unwrap_or_default()
    }

    /// Waits up to `timeout`; on timeout stops the command and panics.
    #[track_caller]
    pub fn wait(mut self, timeout: Duration) -> Output {
        let status = wait_timeout(&mut self.child, timeout).unwrap_or_else(|| {
            self.stop();
            panic!(
                "command hung for {timeout:?}: {}\nstderr so far:\n{}",
                self.command,
                fs::read_to_string(&self.stderr).unwrap_or_default()
            )
        });
        Output {
            command: self.command,
            code: exit_code(status),
            stdout: fs::read_to_string(&self.stdout).unwrap_or_default(),
            stderr: fs::read_to_string(&self.stderr).unwrap_or_default(),
        }
    }

    /// SIGTERM first, so that a command that made something (the benchmark's containers, say)
    /// removes it; SIGKILL when it has not exited within the grace period.
    fn stop(&mut self) {
        const GRACE: Duration = Duration::from_secs(10);
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        if wait_timeout(&mut self.child, GRACE).is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Starts `program args` with stdin from /dev/null and stdout and stderr in
/// `<io_dir>/<name>.out` and `.err` (`adjust` may change any of that).
pub fn spawn_captured(
    program: &Path,
    args: &[&str],
    io_dir: &Path,
    name: &str,
    adjust: impl FnOnce(&mut Command),
) -> Spawned {
    fs::create_dir_all(io_dir).expect("create io dir");
    let stdout = io_dir.join(format!("{name}.out"));
    let stderr = io_dir.join(format!("{name}.err"));
    let mut command = Command::new(program);
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(File::create(&stdout).expect("create stdout file"))
        .stderr(File::create(&stderr).expect("create stderr file"));
    adjust(&mut command);
    let child = command
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()));
    Spawned {
        child,
        command: render(program, args),
        stdout,
        stderr,
    }
}

/// Polls with a growing sleep: cheap for commands that exit in a millisecond, gentle on the CPU
/// for the slow ones.
pub fn wait_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_micros(100);
    loop {
        if let Some(status) = child.try_wait().expect("waitpid on a spawned command") {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(10));
    }
}

/// Renders a command line for failure messages.
fn render(program: &Path, args: &[&str]) -> String {
    std::iter::once(program.display().to_string())
        .chain(args.iter().map(|a| a.to_string()))
        .collect::<Vec<_>>()
        .join(" ")
}

/// `<pid>-<counter>`, the counter fixed-width: no id is then a substring of another (`x-1` of
/// `x-12`), which the leak check relies on when it matches ids in /proc files — and it kills
/// what it matches.
pub fn unique_suffix() -> String {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    format!(
        "{}-{:05}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// The running test's name (libtest names each test thread after the test), made safe for a
/// container id and kept short: unix socket paths under the state dir must stay < 108 bytes.
fn test_name() -> String {
    let name = std::thread::current().name().unwrap_or("test").to_string();
    let name = name.rsplit("::").next().unwrap_or("test");
    name.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .take(20)
        .collect()
}

/// One test's container: id, `--root`, bundle and temp dir. See the module docs.
pub struct Container {
    pub id: String,
    /// Temp dir holding everything below; removed on drop.
    pub dir: PathBuf,
    /// The runtime's `--root`.
    pub root: PathBuf,
    pub bundle: PathBuf,
    spec: Spec,
    /// Every `pid` seen in state output, with its start time, to tell a leaked process from a
    /// recycled pid.
    seen_pids: RefCell<Vec<(i32, u64)>>,
    spawn_counter: AtomicUsize,
}

impl Container {
    /// A container with the default config (see [`DEFAULT_CONFIG`]); not created yet.
    pub fn new() -> Self {
        let id = format!("{}-{}", test_name(), unique_suffix());
        let dir = std::env::temp_dir().join(format!("bt-{id}"));
        let root = dir.join("root");
        let bundle = dir.join("bundle");
        fs::create_dir_all(&bundle).expect("create the test's bundle dir");
        let status = Command::new("cp")
            .arg("-a")
            .arg(rootfs_template())
            .arg(bundle.join("rootfs"))
            .status()
            .expect("run cp");
        assert!(status.success(), "copying the rootfs template failed");

        let mut spec: Spec = serde_json::from_str(DEFAULT_CONFIG).expect("default config parses");
        let cgroups_path = if systemd_cgroup() {
            format!("system.slice:berth-it:{id}")
        } else {
            format!("/berth-it-{id}")
        };
        spec.linux_mut()
            .as_mut()
            .expect("default config has linux")
            .set_cgroups_path(Some(PathBuf::from(cgroups_path)));
        process_mut(&mut spec)
            .env_mut()
            .get_or_insert_with(Vec::new)
            .push(format!("{MARKER_ENV}={id}"));
        let container = Container {
            id,
            dir,
            root,
            bundle,
            spec,
            seen_pids: RefCell::new(Vec::new()),
            spawn_counter: AtomicUsize::new(0),
        };
        container.write_config();
        container
    }

    /// A container whose process runs `args` (default config otherwise).
    pub fn with_args(args: &[&str]) -> Self {
        let mut container = Self::new();
        container.configure(|spec| set_args(spec, args));
        container
    }

    pub fn spec(&self) -> &Spec {
        &self.spec
    }

    /// Mutates the spec, then rewrites `config.json`.
    pub fn configure(&mut self, mutate: impl FnOnce(&mut Spec)) {
        mutate(&mut self.spec);
        self.write_config();
    }

    /// Mutates config.json as raw JSON, for configs the typed spec cannot express (invalid
    /// ones). The typed spec is left as it was.
    pub fn configure_json(&self, mutate: impl FnOnce(&mut Value)) {
        let path = self.bundle.join("config.json");
        let mut json: Value =
            serde_json::from_slice(&fs::read(&path).expect("read config.json")).expect("json");
        mutate(&mut json);
        fs::write(&path, serde_json::to_vec_pretty(&json).expect("serialize"))
            .expect("write config.json");
    }

    fn write_config(&self) {
        let json = serde_json::to_vec_pretty(&self.spec).expect("serialize the spec");
        fs::write(self.bundle.join("config.json"), json).expect("write config.json");
    }

    /// The container's state dir under `--root` (runc, crun and berth all use `<root>/<id>`).
    pub fn state_dir(&self) -> PathBuf {
        self.root.join(&self.id)
    }

    /// `$BERTH_BIN --root <root> args…` with stdin from /dev/null; output captured.
    pub fn spawn(&self, args: &[&str]) -> Spawned {
        self.spawn_with(args, |_| {})
    }

    /// Like [`spawn`](Self::spawn), with a hook to adjust the command (env, stdin…).
    pub fn spawn_with(&self, args: &[&str], adjust: impl FnOnce(&mut Command)) -> Spawned {
        let root = self.root.to_str().expect("utf-8 temp dir");
        let mut full = vec!["--root", root];
        if systemd_cgroup() {
            full.push("--systemd-cgroup");
        }
        full.extend_from_slice(args);
        self.spawn_program(runtime(), &full, adjust)
    }

    /// Runs any program with output captured into this test's temp dir.
    pub fn spawn_program(
        &self,
        program: &Path,
        args: &[&str],
        adjust: impl FnOnce(&mut Command),
    ) -> Spawned {
        let n = self.spawn_counter.fetch_add(1, Ordering::Relaxed);
        let io_dir = self.dir.join("io");
        spawn_captured(program, args, &io_dir, &n.to_string(), |command| {
            command.current_dir(&self.dir);
            adjust(command);
        })
    }

    /// `$BERTH_BIN --root <root> args…`, waited for (at most [`COMMAND_TIMEOUT`]).
    #[track_caller]
    pub fn cmd(&self, args: &[&str]) -> Output {
        self.spawn(args).wait(COMMAND_TIMEOUT)
    }

    fn bundle_str(&self) -> &str {
        self.bundle.to_str().expect("utf-8 temp dir")
    }

    /// `run --bundle <bundle> <id>` in the foreground.
    #[track_caller]
    pub fn run(&self) -> Output {
        self.cmd(&["run", "--bundle", self.bundle_str(), &self.id])
    }

    /// `create --bundle <bundle> [extra…] <id>`.
    #[track_caller]
    pub fn create_with(&self, extra: &[&str]) -> Output {
        let mut args = vec!["create", "--bundle", self.bundle_str()];
        args.extend_from_slice(extra);
        args.push(&self.id);
        self.cmd(&args)
    }

    #[track_caller]
    pub fn create(&self) -> Output {
        self.create_with(&[])
    }

    #[track_caller]
    pub fn start(&self) -> Output {
        self.cmd(&["start", &self.id])
    }

    #[track_caller]
    pub fn state(&self) -> Output {
        self.cmd(&["state", &self.id])
    }

    #[track_caller]
    pub fn kill(&self, signal: &str) -> Output {
        self.cmd(&["kill", &self.id, signal])
    }

    #[track_caller]
    pub fn delete(&self) -> Output {
        self.cmd(&["delete", &self.id])
    }

    #[track_caller]
    pub fn delete_force(&self) -> Output {
        self.cmd(&["delete", "--force", &self.id])
    }

    /// `exec --detach --pid-file` of a long sleep in the running container; returns its pid.
    #[track_caller]
    pub fn exec_detached_sleeper(&self) -> i32 {
        let pid_file = self.dir.join("exec.pid");
        let pid_flag = pid_file.to_str().expect("utf-8 temp dir");
        self.exec(&["--detach", "--pid-file", pid_flag], &["sleep", "1000"])
            .success();
        let pid = fs::read_to_string(&pid_file).expect("exec's pid file");
        pid.trim().parse().expect("a pid in exec's pid file")
    }

    /// `exec [flags…] <id> args…`.
    #[track_caller]
    pub fn exec(&self, flags: &[&str], args: &[&str]) -> Output {
        let mut full = vec!["exec"];
        full.extend_from_slice(flags);
        full.push(&self.id);
        full.extend_from_slice(args);
        self.cmd(&full)
    }

    /// The parsed output of `state`; panics if the command fails.
    #[track_caller]
    pub fn state_json(&self) -> Value {
        let out = self.state().success();
        let state: Value = serde_json::from_str(&out.stdout)
            .unwrap_or_else(|e| panic!("state output is not JSON ({e}):\n{out}"));
        if let Some(pid) = state["pid"].as_i64().filter(|pid| *pid > 0) {
            self.remember_pid(pid as i32);
        }
        state
    }

    /// The `status` field of `state`, or None when `state` fails (no such container).
    pub fn status(&self) -> Option<String> {
        let out = self.state();
        if out.code != 0 {
            return None;
        }
        let state: Value = serde_json::from_str(&out.stdout).ok()?;
        state["status"].as_str().map(str::to_string)
    }

    /// Polls `state` until the container reaches `status`; panics after `timeout`.
    #[track_caller]
    pub fn wait_for_status(&self, status: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let current = self.status();
            if current.as_deref() == Some(status) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "container {} did not reach status {status} within {timeout:?} (now {current:?})",
                self.id
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// create + start a container whose process is a long sleep, ready for exec/kill/ps tests.
    #[track_caller]
    pub fn start_sleeper(&mut self) {
        self.configure(|spec| set_args(spec, &["sleep", "1000"]));
        self.create().success();
        self.start().success();
        self.wait_for_status("running", COMMAND_TIMEOUT);
    }

    /// Runs `args` as the container's process (foreground `run`) and returns its output.
    #[track_caller]
    pub fn run_args(&mut self, args: &[&str]) -> Output {
        self.configure(|spec| set_args(spec, args));
        self.run()
    }

    /// Runs `sh -c script` in the container (foreground `run`); panics unless it exits 0;
    /// returns stdout.
    #[track_caller]
    pub fn sh(&mut self, script: &str) -> String {
        self.run_args(&["sh", "-c", script]).success().stdout
    }

    fn remember_pid(&self, pid: i32) {
        if let Some(start) = start_time(pid) {
            let mut seen = self.seen_pids.borrow_mut();
            if !seen.contains(&(pid, start)) {
                seen.push((pid, start));
            }
        }
    }

    /// Everything this container left on the host. Empty means clean.
    pub fn leaks(&self) -> Vec<String> {
        let mut leaks = Vec::new();
        if self.state_dir().exists() {
            leaks.push(format!("state dir {}", self.state_dir().display()));
        }
        leaks.extend(
            mounts_under(&self.dir)
                .into_iter()
                .map(|m| format!("mount {}", m.display())),
        );
        leaks.extend(
            self.processes()
                .into_iter()
                .map(|pid| format!("process {pid}: {}", describe_process(pid))),
        );
        leaks.extend(
            self.cgroup_dirs()
                .into_iter()
                .map(|d| format!("cgroup {}", d.display())),
        );
        if systemd_cgroup() && systemd_unit_loaded(&self.systemd_unit()) {
            leaks.push(format!("systemd unit {}", self.systemd_unit()));
        }
        leaks
    }

    /// Panics listing every leftover, after giving exiting processes a moment to be reaped.
    #[track_caller]
    pub fn assert_no_leaks(&self) {
        let leaks = self.settled_leaks();
        assert!(
            leaks.is_empty(),
            "container {} left behind:\n  {}",
            self.id,
            leaks.join("\n  ")
        );
    }

    /// Leaks still there after up to 2 s (a killed process takes a moment to disappear).
    pub fn settled_leaks(&self) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            let leaks = self.leaks();
            if leaks.is_empty() || Instant::now() >= deadline {
                return leaks;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Host processes belonging to this container: its env marker, its id on the command line
    /// (the runtime and, for berth, the not-yet-exec'd init), membership in its cgroup, or a pid
    /// seen in `state`.
    pub fn processes(&self) -> Vec<i32> {
        let me = std::process::id() as i32;
        // NUL-terminated: environ entries are, so this matches the whole value only.
        let marker = format!("{MARKER_ENV}={}\0", self.id);
        let cgroup = format!("/berth-it-{}", self.id);
        let seen = self.seen_pids.borrow();
        all_pids()
            .into_iter()
            .filter(|&pid| pid != me && !is_orphaned_zombie(pid))
            .filter(|&pid| {
                let proc_file =
                    |name: &str| fs::read(format!("/proc/{pid}/{name}")).unwrap_or_default();
                contains(&proc_file("environ"), marker.as_bytes())
                    || contains(&proc_file("cmdline"), self.id.as_bytes())
                    || contains(&proc_file("cgroup"), cgroup.as_bytes())
                    || seen
                        .iter()
                        .any(|&(p, start)| p == pid && start_time(pid) == Some(start))
            })
            .collect()
    }

    /// The systemd unit of the container (see [`systemd_cgroup`]).
    pub fn systemd_unit(&self) -> String {
        format!("berth-it-{}.scope", self.id)
    }

    /// The container's cgroup below each hierarchy's root, as the harness's cgroupsPath
    /// places it.
    pub fn cgroup_relative(&self) -> PathBuf {
        if systemd_cgroup() {
            Path::new("system.slice").join(self.systemd_unit())
        } else {
            PathBuf::from(format!("berth-it-{}", self.id))
        }
    }

    /// Cgroup dirs of this container's `cgroupsPath`, in every hierarchy.
    pub fn cgroup_dirs(&self) -> Vec<PathBuf> {
        let name = self.cgroup_relative();
        let root = Path::new("/sys/fs/cgroup");
        // v1 and hybrid: one hierarchy per directory below the root; pure v2: the root itself.
        let below = fs::read_dir(root).into_iter().flatten().flatten();
        std::iter::once(root.to_path_buf())
            .chain(below.map(|h| h.path()))
            .map(|h| h.join(&name))
            .filter(|d| d.is_dir())
            .collect()
    }

    /// Removes whatever the runtime left: kill processes, unmount, remove cgroups and files.
    fn scrub(&self) {
        // A frozen process would keep its SIGKILL pending (cgroup v1 freezer).
        for dir in self.cgroup_dirs() {
            let _ = fs::write(dir.join("freezer.state"), "THAWED");
            let _ = fs::write(dir.join("cgroup.freeze"), "0");
        }
        for pid in self.processes() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let deadline = Instant::now() + Duration::from_secs(2);
        while !self.processes().is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        // Deepest first, detached: a busy mount must not keep the dir alive.
        let mut mounts = mounts_under(&self.dir);
        mounts.sort_by_key(|m| std::cmp::Reverse(m.as_os_str().len()));
        for mount in mounts {
            let _ = nix::mount::umount2(&mount, nix::mount::MntFlags::MNT_DETACH);
        }
        for dir in self.cgroup_dirs() {
            remove_cgroup_tree(&dir);
        }
        let unit = self.systemd_unit();
        if systemd_cgroup() && systemd_unit_loaded(&unit) {
            for action in ["stop", "reset-failed"] {
                let _ = Command::new("systemctl").args([action, &unit]).output();
            }
        }
        if let Err(e) = fs::remove_dir_all(&self.dir)
            && e.kind() != ErrorKind::NotFound
        {
            eprintln!("warning: cannot remove {}: {e}", self.dir.display());
        }
    }
}

impl Default for Container {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        // `delete --force` must clean up whatever state the test left the container in.
        // Bounded: a hanging runtime must not hang the test run (and panicking here while
        // already unwinding would abort it).
        let mut delete = self.spawn(&["delete", "--force", &self.id]);
        let timed_out = wait_timeout(&mut delete.child, COMMAND_TIMEOUT).is_none();
        if timed_out {
            let _ = delete.child.kill();
            let _ = delete.child.wait();
        }
        let said = fs::read_to_string(&delete.stderr).unwrap_or_default();
        let leaks = self.settled_leaks();
        self.scrub();
        if !leaks.is_empty() && !std::thread::panicking() {
            let timed_out = if timed_out { " (timed out)" } else { "" };
            panic!(
                "after `delete --force`{timed_out}, container {} left behind:\n  {}\n\
                 delete --force said: {said}",
                self.id,
                leaks.join("\n  ")
            );
        }
    }
}

/// The spec's process (the default config always has one).
pub fn process_mut(spec: &mut Spec) -> &mut Process {
    spec.process_mut()
        .as_mut()
        .expect("default config has a process")
}

pub fn set_args(spec: &mut Spec, args: &[&str]) {
    process_mut(spec).set_args(Some(args.iter().map(|a| a.to_string()).collect()));
}

/// Removes namespaces of `kind` from the config.
pub fn remove_namespace(spec: &mut Spec, kind: LinuxNamespaceType) {
    if let Some(linux) = spec.linux_mut().as_mut()
        && let Some(namespaces) = linux.namespaces_mut().as_mut()
    {
        namespaces.retain(|ns| ns.typ() != kind);
    }
}

pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

pub fn all_pids() -> Vec<i32> {
    fs::read_dir("/proc")
        .expect("read /proc")
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect()
}

/// The fields of /proc/PID/stat after the parenthesised comm (which may contain spaces):
/// index 0 is the state, 1 the ppid, 19 the start time.
fn stat_fields(pid: i32) -> Option<Vec<String>> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_comm = stat.get(stat.rfind(')')? + 2..)?;
    Some(after_comm.split(' ').map(str::to_string).collect())
}

pub fn start_time(pid: i32) -> Option<u64> {
    stat_fields(pid)?.get(19)?.parse().ok()
}

/// A dead process reparented to PID 1, waiting for PID 1 to reap it: it holds nothing but a
/// pid, and reaping it is PID 1's job, not the runtime's.
pub fn is_orphaned_zombie(pid: i32) -> bool {
    stat_fields(pid)
        .is_some_and(|f| f.first().is_some_and(|s| s == "Z") && f.get(1).is_some_and(|p| p == "1"))
}

pub fn describe_process(pid: i32) -> String {
    let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
    let (state, ppid) = stat_fields(pid)
        .map(|f| (f[0].clone(), f.get(1).cloned().unwrap_or_default()))
        .unwrap_or_default();
    format!("[{state}, ppid {ppid}] {}", cmdline.trim())
}

/// Mount points (in this process's mount namespace) at or below `dir`.
pub fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let mountinfo = fs::read("/proc/self/mountinfo").expect("read /proc/self/mountinfo");
    mountinfo
        .split(|&b| b == b'\n')
        .filter_map(|line| line.split(|&b| b == b' ').nth(4))
        .map(|field| PathBuf::from(OsStr::from_bytes(&unescape_mountinfo(field))))
        .filter(|mount| mount.starts_with(dir))
        .collect()
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape_mountinfo(field: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        let octal = field
            .get(i + 1..i + 4)
            .and_then(|d| u8::from_str_radix(std::str::from_utf8(d).ok()?, 8).ok());
        match (field[i], octal) {
            (b'\\', Some(byte)) => {
                out.push(byte);
                i += 4;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    out
}

/// Whether systemd still knows `unit` (running, failed or merely loaded).
pub fn systemd_unit_loaded(unit: &str) -> bool {
    systemd_unit_property(unit, "LoadState") != "not-found"
}

/// `systemctl show --property NAME --value UNIT`, trimmed.
pub fn systemd_unit_property(unit: &str, name: &str) -> String {
    let out = Command::new("systemctl")
        .args(["show", "--property", name, "--value", unit])
        .output()
        .expect("run systemctl");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Cgroup dirs can only be removed leaf first, with rmdir (their files are not removable).
pub fn remove_cgroup_tree(dir: &Path) {
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                remove_cgroup_tree(&entry.path());
            }
        }
    }
    let _ = fs::remove_dir(dir);
}

/// A bind mount a test makes on the host, undone on drop. Declare it after the containers that
/// use it: it then goes before their leak checks run.
pub struct HostBind(PathBuf);

impl HostBind {
    pub fn new(source: &Path, target: &Path) -> HostBind {
        nix::mount::mount(
            Some(source),
            target,
            None::<&str>,
            nix::mount::MsFlags::MS_BIND,
            None::<&str>,
        )
        .unwrap_or_else(|e| panic!("bind {} on {}: {e}", source.display(), target.display()));
        HostBind(target.to_owned())
    }

    /// `dir` bound onto itself and made shared: a peer group of the test's own.
    pub fn shared(dir: &Path) -> HostBind {
        let bind = HostBind::new(dir, dir);
        nix::mount::mount(
            None::<&str>,
            dir,
            None::<&str>,
            nix::mount::MsFlags::MS_SHARED,
            None::<&str>,
        )
        .unwrap_or_else(|e| panic!("make {} shared: {e}", dir.display()));
        bind
    }
}

impl Drop for HostBind {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
    }
}

/// The namespace inode link (`pid:[4026531836]`) of `kind` for this test process.
pub fn host_namespace(kind: &str) -> String {
    fs::read_link(format!("/proc/self/ns/{kind}"))
        .unwrap_or_else(|e| panic!("readlink /proc/self/ns/{kind}: {e}"))
        .display()
        .to_string()
}
