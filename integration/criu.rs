//! `checkpoint` and `restore` with CRIU. CRIU cannot dump on this development host's kernel (a
//! vDSO it does not know), so the tests that dump are ignored here and run in the VM of
//! tools/vm, whose Debian kernel it supports: `make test-criu` (tools/vm/test-criu). The error
//! paths run everywhere.
//!
//! The containers get pipes as stdio, as engines give them: CRIU restores a pipe by handing the
//! restored process the one `restore` was given, while a file of the host (a log, /dev/null)
//! lies outside the container's mounts, which CRIU refuses to dump.

use std::fs::{self, File};
use std::io::{BufRead, BufReader};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::Duration;

use oci_spec::runtime::{LinuxNamespaceType, Mount, MountBuilder};

use crate::common::fd_socket::FdSocket;
use crate::common::{COMMAND_TIMEOUT, Container, Output, Spawned, process_mut, remove_namespace};

/// CRIU under the VM's emulated CPU takes seconds, a dump up to about 20.
const CRIU_TIMEOUT: Duration = Duration::from_secs(120);

/// Prints 1, 2, 3... on stdout, ten a second, and each also into `/data/count` when the
/// container has a `/data`, replacing the file whole (a reader never sees it truncated).
const COUNTER: &str = "i=0; while :; do i=$((i+1)); echo $i; \
    [ -d /data ] && echo $i > /data/.count && mv /data/.count /data/count; sleep 0.1; done";

fn counter() -> Container {
    Container::with_args(&["sh", "-c", COUNTER])
}

/// The far ends of a detached container's stdio: the write end of its stdin, held open so
/// that it never reads EOF, and the lines of its stdout and stderr (one pipe, socket or
/// terminal), read by a thread.
struct Pipes {
    _stdin: Option<OwnedFd>,
    lines: Receiver<String>,
}

impl Pipes {
    /// Runs `berth args...` with fresh pipes as its stdio, which a detached container keeps.
    #[track_caller]
    fn spawn(c: &Container, args: &[&str]) -> (Pipes, Output) {
        let (pipes, spawned) = Pipes::start(c, args);
        (pipes, spawned.wait(CRIU_TIMEOUT))
    }

    /// Starts `berth args...` with fresh pipes as its stdio.
    fn start(c: &Container, args: &[&str]) -> (Pipes, Spawned) {
        let (stdin_read, stdin_write) = nix::unistd::pipe().expect("pipe");
        let (output_read, output_write) = nix::unistd::pipe().expect("pipe");
        let output_copy = output_write.try_clone().expect("dup");
        let spawned = c.spawn_with(args, |command| {
            command
                .stdin(Stdio::from(stdin_read))
                .stdout(Stdio::from(output_write))
                .stderr(Stdio::from(output_copy));
        });
        (Pipes::reading(output_read, Some(stdin_write)), spawned)
    }

    /// The lines of `output` (a terminal's end with their `\r`), read by a thread until every
    /// writer is gone (EOF, or EIO from a terminal's master).
    fn reading(output: impl Into<OwnedFd>, stdin: Option<OwnedFd>) -> Pipes {
        let output = File::from(output.into());
        let (send, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(output).lines() {
                let Ok(line) = line else { return };
                if send.send(line.trim_end_matches('\r').to_string()).is_err() {
                    return;
                }
            }
        });
        Pipes {
            _stdin: stdin,
            lines,
        }
    }

    /// The next number the counter printed; panics on anything else (berth's own error, say).
    #[track_caller]
    fn next_number(&self) -> u64 {
        let line = self
            .lines
            .recv_timeout(COMMAND_TIMEOUT)
            .expect("the counter printed nothing");
        line.parse()
            .unwrap_or_else(|_| panic!("not a number from the counter: {line:?}"))
    }

    /// The last number printed before the pipe closed (every writer gone).
    #[track_caller]
    fn last_number(&self) -> u64 {
        let mut last = None;
        loop {
            match self.lines.recv_timeout(COMMAND_TIMEOUT) {
                Ok(line) => last = Some(line),
                Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => panic!("the counter's stdout stayed open"),
            }
        }
        let last = last.expect("the counter printed nothing");
        last.parse()
            .unwrap_or_else(|_| panic!("not a number from the counter: {last:?}"))
    }

    /// Whatever berth or the container printed so far, for a failure message.
    fn printed(&self) -> String {
        self.lines.try_iter().collect::<Vec<_>>().join("\n")
    }
}

/// `run -d` with pipes as stdio; returns them after the counter printed its first number.
#[track_caller]
fn run_detached(c: &Container) -> Pipes {
    let bundle = c.bundle.to_str().expect("utf-8 temp dir");
    let (pipes, out) = Pipes::spawn(c, &["run", "-d", "--bundle", bundle, &c.id]);
    assert_eq!(out.code, 0, "{out}\n{}", pipes.printed());
    assert_eq!(pipes.next_number(), 1);
    pipes
}

/// `restore -d [extra...]` from `images` with fresh pipes as stdio.
#[track_caller]
fn restore_detached(c: &Container, images: &Path, extra: &[&str]) -> Pipes {
    let bundle = c.bundle.to_str().expect("utf-8 temp dir");
    let images = images.to_str().expect("utf-8 temp dir");
    let mut args = vec!["restore", "-d", "--image-path", images, "--bundle", bundle];
    args.extend_from_slice(extra);
    args.push(&c.id);
    let (pipes, out) = Pipes::spawn(c, &args);
    assert_eq!(out.code, 0, "{out}\n{}", pipes.printed());
    pipes
}

/// `checkpoint --image-path <images> [extra...]`.
#[track_caller]
fn checkpoint(c: &Container, images: &Path, extra: &[&str]) -> Output {
    let images = images.to_str().expect("utf-8 temp dir");
    let mut args = vec!["checkpoint", "--image-path", images];
    args.extend_from_slice(extra);
    args.push(&c.id);
    c.spawn(&args).wait(CRIU_TIMEOUT)
}

/// Panics unless the restored counter went on from where the dump stopped it: past what it
/// printed before, at most one past the last number the dump let through (CRIU may hand the
/// restored counter what was still unread in the old pipe).
#[track_caller]
fn assert_counts_on(restored: &Pipes, before: u64, last: u64) {
    let next = restored.next_number();
    assert!(
        before < next && next <= last + 1,
        "the restored counter printed {next} after {last} (first seen {before}): it did not go on"
    );
    assert!(
        restored.next_number() > next,
        "the restored counter stopped"
    );
}

fn state_pid(c: &Container) -> i64 {
    let state = c.state_json();
    assert_eq!(state["status"], "running", "{state}");
    state["pid"].as_i64().expect("state has a pid")
}

#[test]
#[ignore = "CRIU needs a kernel it supports: tools/vm/test-criu runs it"]
fn a_restored_container_counts_on_as_running_in_its_cgroup() {
    let c = counter();
    let pipes = run_detached(&c);
    let before = pipes.next_number();
    let images = c.dir.join("images");
    checkpoint(&c, &images, &[]).success();
    assert_eq!(c.status(), None, "checkpoint deletes the container");
    let last = pipes.last_number();

    let pid_file = c.dir.join("restored.pid");
    let restored = restore_detached(&c, &images, &["--pid-file", pid_file.to_str().unwrap()]);
    assert_counts_on(&restored, before, last);
    let pid = state_pid(&c);
    assert_eq!(fs::read_to_string(&pid_file).unwrap(), pid.to_string());
    let cgroup = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    assert!(
        cgroup.contains(&format!("/berth-it-{}", c.id)),
        "the restored init is not in the container's cgroup:\n{cgroup}"
    );
    c.exec(&[], &["true"]).success();
}

#[test]
#[ignore = "CRIU needs a kernel it supports: tools/vm/test-criu runs it"]
fn restore_in_the_foreground_waits_and_exits_with_the_container() {
    let c = counter();
    let pipes = run_detached(&c);
    let before = pipes.next_number();
    let images = c.dir.join("images");
    checkpoint(&c, &images, &[]).success();
    let last = pipes.last_number();

    let bundle = c.bundle.to_str().unwrap();
    let images = images.to_str().unwrap();
    let args = ["restore", "--image-path", images, "--bundle", bundle, &c.id];
    let (restored, berth) = Pipes::start(&c, &args);
    assert_counts_on(&restored, before, last);
    c.wait_for_status("running", COMMAND_TIMEOUT);
    c.kill("KILL").success();
    let out = berth.wait(COMMAND_TIMEOUT);
    assert_eq!(out.code, 137, "{out}\n{}", restored.printed());
    assert_eq!(
        c.status(),
        None,
        "a foreground restore deletes the container at its end"
    );
}

#[test]
#[ignore = "CRIU needs a kernel it supports: tools/vm/test-criu runs it"]
fn leave_running_keeps_the_container_and_its_images_restore() {
    let c = counter();
    let pipes = run_detached(&c);
    let pid = state_pid(&c);
    let images = c.dir.join("images");
    checkpoint(&c, &images, &["--leave-running"]).success();
    assert_eq!(state_pid(&c), pid);
    let before = pipes.next_number();
    assert!(pipes.next_number() > before, "the counter stopped");

    c.delete_force().success();
    let last = pipes.last_number();
    let restored = restore_detached(&c, &images, &[]);
    // The images hold the counter as the dump found it: past the 1 it printed before, and at
    // most one past the last number the original printed (it may have been killed before it
    // printed anything after the dump thawed it).
    let next = restored.next_number();
    assert!(
        1 < next && next <= last + 1,
        "restored at {next}, though the original printed 1 before the dump and {last} last"
    );
}

#[test]
#[ignore = "CRIU needs a kernel it supports: tools/vm/test-criu runs it"]
fn a_dump_on_top_of_a_pre_dump_restores() {
    let c = counter();
    let pipes = run_detached(&c);
    let pre = c.dir.join("pre");
    checkpoint(&c, &pre, &["--pre-dump"]).success();
    let before = pipes.next_number();
    assert!(
        pipes.next_number() > before,
        "a pre-dump leaves the container running"
    );

    let images = c.dir.join("images");
    checkpoint(&c, &images, &["--parent-path", "../pre"]).success();
    assert_eq!(
        fs::read_link(images.join("parent")).unwrap(),
        Path::new("../pre")
    );
    let last = pipes.last_number();
    assert_counts_on(&restore_detached(&c, &images, &[]), before, last);
}

#[test]
#[ignore = "CRIU needs a kernel it supports: tools/vm/test-criu runs it"]
fn a_bind_mount_is_mounted_again_from_its_source() {
    let mut c = counter();
    let data = c.dir.join("data");
    fs::create_dir(&data).unwrap();
    c.configure(|spec| {
        spec.mounts_mut()
            .get_or_insert_with(Vec::new)
            .push(bind(&data, "/data"))
    });
    let pipes = run_detached(&c);
    let before = pipes.next_number();
    let images = c.dir.join("images");
    checkpoint(&c, &images, &[]).success();
    let last = pipes.last_number();
    let count = || -> u64 {
        fs::read_to_string(data.join("count"))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    };
    assert!(count() <= last);

    let restored = restore_detached(&c, &images, &[]);
    assert_counts_on(&restored, before, last);
    let now = restored.next_number();
    // The restored counter writes through the bind mount into the host directory.
    let deadline = std::time::Instant::now() + COMMAND_TIMEOUT;
    while count() < now {
        assert!(
            std::time::Instant::now() < deadline,
            "{}/count stayed at {}",
            data.display(),
            count()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn bind(source: &Path, destination: &str) -> Mount {
    MountBuilder::default()
        .destination(destination)
        .typ("bind")
        .source(source)
        .options(vec!["rbind".to_string()])
        .build()
        .unwrap()
}

#[test]
#[ignore = "CRIU needs a kernel it supports: tools/vm/test-criu runs it"]
fn files_of_the_host_as_stdio_fail_the_dump_clearly_and_keep_the_container() {
    let mut c = counter();
    // The harness's stdio: /dev/null and files in the test's directory.
    c.start_sleeper();
    let pid = state_pid(&c);
    let out = checkpoint(&c, &c.dir.join("images"), &[]).failure();
    assert!(
        out.stderr
            .contains("stdio are files of the host (fd 0 is /dev/null"),
        "{out}"
    );
    assert_eq!(state_pid(&c), pid);
}

/// Checks that the counter's dump fails without `flag` (CRIU's error naming it, the container
/// left running), and that with `flag` on both the dump and the restore it counts on.
#[track_caller]
fn needs_to_dump_and_restore(c: &Container, pipes: &Pipes, flag: &str) -> Pipes {
    let pid = state_pid(c);
    let images = c.dir.join("images");
    let out = checkpoint(c, &images, &[]).failure();
    assert!(out.stderr.contains(flag), "{out}");
    assert_eq!(state_pid(c), pid, "a failed dump keeps the container");

    let before = pipes.next_number();
    checkpoint(c, &images, &[flag]).success();
    let last = pipes.last_number();
    let restored = restore_detached(c, &images, &[flag]);
    assert_counts_on(&restored, before, last);
    restored
}

/// Adds `capability` to the container's bounding, effective and permitted sets.
fn grant(c: &Container, capability: &str) {
    c.configure_json(|config| {
        for set in ["bounding", "effective", "permitted"] {
            let set = &mut config["process"]["capabilities"][set];
            set.as_array_mut()
                .expect("a capability set")
                .push(capability.into());
        }
    });
}

/// Sets the container's network namespace to the one at `path`.
fn join_network(c: &Container, path: &str) {
    c.configure_json(|config| {
        let namespaces = config["linux"]["namespaces"].as_array_mut().unwrap();
        let network = namespaces.iter_mut().find(|ns| ns["type"] == "network");
        network.expect("a network namespace")["path"] = path.into();
    });
}

/// Polls `exec sh -c script` until its output contains `wanted`; returns that output.
#[track_caller]
fn wait_for_output(c: &Container, script: &str, wanted: &str) -> String {
    let deadline = std::time::Instant::now() + COMMAND_TIMEOUT;
    loop {
        let out = c.exec(&[], &["sh", "-c", script]).success();
        if out.stdout.contains(wanted) {
            return out.stdout;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "`{script}` never printed {wanted:?}:\n{out}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A server and a client in the container keeping a TCP connection over the loopback, a line
/// a tenth of a second (busybox's nc ends a connection at EOF on its stdin, so both read a
/// never-ending pipe).
const TCP_CONNECTION: &str = "(sleep 100000 | nc -l -p 5000 > /dev/null) & sleep 0.5; \
     (while :; do echo x; sleep 0.1; done) | nc 127.0.0.1 5000 > /dev/null & ";

#[test]
#[ignore = "CRIU needs a kernel it supports: tools/vm/test-criu runs it"]
fn an_established_tcp_connection_needs_tcp_established() {
    // The network namespace is a second container's, joined by path: CRIU leaves it alone
    // (external), so the loopback the connection runs over is up again after the restore.
    let mut network = Container::new();
    network.start_sleeper();
    let netns = format!("/proc/{}/ns/net", state_pid(&network));
    let up = std::process::Command::new("nsenter")
        .args([&format!("--net={netns}"), "ip", "link", "set", "lo", "up"])
        .status()
        .expect("nsenter");
    assert!(up.success(), "setting the loopback up: {up}");
    let c = Container::with_args(&["sh", "-c", &format!("{TCP_CONNECTION}{COUNTER}")]);
    join_network(&c, &netns);
    let pipes = run_detached(&c);
    wait_for_output(&c, "netstat -tn", "ESTABLISHED");
    let _restored = needs_to_dump_and_restore(&c, &pipes, "--tcp-established");
    wait_for_output(&c, "netstat -tn", "ESTABLISHED");
}

/// The host's flock(1), run in the container from the host's /usr (bound at /usr) through the
/// host's dynamic loader: busybox has none. The paths are Debian's on x86_64, the VM's.
const HOST_FLOCK: [&str; 4] = [
    "/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
    "--library-path",
    "/usr/lib/x86_64-linux-gnu",
    "/usr/bin/flock",
];

#[test]
#[ignore = "CRIU needs a kernel it supports: tools/vm/test-criu runs it"]
fn a_held_file_lock_needs_file_locks_and_is_held_again() {
    let mut args = HOST_FLOCK.to_vec();
    args.extend(["/lock", "sh", "-c", COUNTER]);
    let mut c = Container::with_args(&args);
    let mut usr = bind(Path::new("/usr"), "/usr");
    usr.set_options(Some(vec!["rbind".into(), "ro".into()]));
    c.configure(|spec| {
        spec.mounts_mut().get_or_insert_with(Vec::new).push(usr);
        // The lock file is made in the rootfs.
        spec.root_mut().as_mut().unwrap().set_readonly(Some(false));
    });
    let pipes = run_detached(&c);
    let _restored = needs_to_dump_and_restore(&c, &pipes, "--file-locks");
    let mut try_lock = HOST_FLOCK.to_vec();
    try_lock.extend(["--nonblock", "/lock", "true"]);
    let out = c.exec(&[], &try_lock);
    assert_eq!(out.code, 1, "the restored lock is not held: {out}");
}

#[test]
#[ignore = "CRIU needs a kernel it supports: tools/vm/test-criu runs it"]
fn a_datagram_socket_to_the_host_needs_ext_unix_sk() {
    let mut c = counter();
    // CRIU looks sockets up in the container's network namespace: the test's must be it.
    c.configure(|spec| remove_namespace(spec, LinuxNamespaceType::Network));
    // The container's stdout and stderr: a datagram socket connected to one the test bound
    // (CRIU dumps an external socket only when it can connect it again by name at restore, and
    // no stream socket).
    let address = c.dir.join("output.sock");
    let ours = UnixDatagram::bind(&address).expect("bind");
    let theirs = UnixDatagram::unbound().expect("socket");
    theirs.connect(&address).expect("connect");
    let (stdin_read, stdin_write) = nix::unistd::pipe().expect("pipe");
    let bundle = c.bundle.to_str().unwrap();
    let out = c
        .spawn_with(&["run", "-d", "--bundle", bundle, &c.id], |command| {
            let stderr = theirs.try_clone().expect("dup");
            command
                .stdin(Stdio::from(stdin_read))
                .stdout(Stdio::from(OwnedFd::from(theirs)))
                .stderr(Stdio::from(OwnedFd::from(stderr)));
        })
        .wait(CRIU_TIMEOUT);
    let output = Pipes::reading(ours, Some(stdin_write));
    assert_eq!(out.code, 0, "{out}\n{}", output.printed());
    assert_eq!(output.next_number(), 1);
    let pid = state_pid(&c);
    let images = c.dir.join("images");
    let out = checkpoint(&c, &images, &["--leave-running"]).failure();
    assert!(out.stderr.contains("--ext-unix-sk"), "{out}");
    assert_eq!(state_pid(&c), pid, "a failed dump keeps the container");

    checkpoint(&c, &images, &["--leave-running", "--ext-unix-sk"]).success();
    let now = output.next_number();
    assert!(output.next_number() > now, "the counter stopped");
}

#[test]
#[ignore = "CRIU needs a kernel it supports: tools/vm/test-criu runs it"]
fn a_terminal_container_dumps_with_shell_job_and_restores_onto_a_new_console() {
    let mut c = counter();
    c.configure(|spec| {
        process_mut(spec).set_terminal(Some(true));
    });
    let console = FdSocket::bind(&c.dir.join("console.sock"));
    c.create_with(&["--console-socket", console.path()])
        .success();
    let (_, master) = console.receive(COMMAND_TIMEOUT);
    c.start().success();
    let terminal = Pipes::reading(master, None);
    assert_eq!(terminal.next_number(), 1);
    let before = terminal.next_number();
    // As podman asks for a terminal container (CRIU does without: the container's session is
    // its own, led by its init).
    let images = c.dir.join("images");
    checkpoint(&c, &images, &["--shell-job"]).success();
    let last = terminal.last_number();
    let console = FdSocket::bind(&c.dir.join("restored-console.sock"));
    let bundle = c.bundle.to_str().unwrap();
    let images = images.to_str().unwrap();
    #[rustfmt::skip]
    let args = [
        "restore", "-d", "--shell-job", "--console-socket", console.path(),
        "--image-path", images, "--bundle", bundle, &c.id,
    ];
    let restoring = c.spawn(&args);
    let (_, master) = console.receive(CRIU_TIMEOUT);
    restoring.wait(CRIU_TIMEOUT).success();
    assert_counts_on(&Pipes::reading(master, None), before, last);
    state_pid(&c);
}

#[test]
#[ignore = "CRIU needs a kernel it supports: tools/vm/test-criu runs it"]
fn work_path_gets_criu_logs_and_the_image_path_none() {
    let c = counter();
    let pipes = run_detached(&c);
    let before = pipes.next_number();
    let (images, work) = (c.dir.join("images"), c.dir.join("work"));
    let work_flag = work.to_str().unwrap();
    checkpoint(&c, &images, &["--work-path", work_flag]).success();
    assert!(
        work.join("dump.log").is_file(),
        "no dump.log in --work-path"
    );
    assert!(
        !images.join("dump.log").exists(),
        "dump.log in --image-path"
    );
    let last = pipes.last_number();

    let restored = restore_detached(&c, &images, &["--work-path", work_flag]);
    assert_counts_on(&restored, before, last);
    assert!(
        work.join("restore.log").is_file(),
        "no restore.log in --work-path"
    );
    assert!(
        !images.join("restore.log").exists(),
        "restore.log in --image-path"
    );
}

/// The disk space the memory pages of the images in `dir` take (what --auto-dedup frees).
fn allocated_page_bytes(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let entries = fs::read_dir(dir).unwrap().map(|entry| entry.unwrap());
    let pages = entries.filter(|entry| entry.file_name().to_string_lossy().starts_with("pages-"));
    pages
        .map(|entry| entry.metadata().unwrap().blocks() * 512)
        .sum()
}

#[test]
#[ignore = "CRIU needs a kernel it supports: tools/vm/test-criu runs it"]
fn auto_dedup_frees_the_pages_of_the_parent_the_dump_replaces() {
    let c = counter();
    let pipes = run_detached(&c);
    let pre = c.dir.join("pre");
    checkpoint(&c, &pre, &["--pre-dump"]).success();
    let pre_dumped = allocated_page_bytes(&pre);
    let before = pipes.next_number();

    let images = c.dir.join("images");
    checkpoint(&c, &images, &["--parent-path", "../pre", "--auto-dedup"]).success();
    let deduplicated = allocated_page_bytes(&pre);
    assert!(
        deduplicated < pre_dumped,
        "the pre-dump's pages take {deduplicated} bytes, {pre_dumped} before the dump"
    );
    let last = pipes.last_number();
    assert_counts_on(&restore_detached(&c, &images, &[]), before, last);
}

/// `criu page-server` for one dump, in the background; killed on drop if still there.
struct PageServer {
    pid_file: PathBuf,
}

impl PageServer {
    /// Listens on `port` and writes the pages it receives into `dir`; returns once it
    /// listens (criu's daemon mode).
    fn start(dir: &Path, port: u16) -> PageServer {
        let pid_file = dir.with_extension("pid");
        let status = std::process::Command::new("criu")
            .args(["page-server", "--daemon", "--port", &port.to_string()])
            .arg("--images-dir")
            .arg(dir)
            .arg("--pidfile")
            .arg(&pid_file)
            .stdin(Stdio::null())
            .status()
            .expect("criu page-server");
        assert!(status.success(), "criu page-server: {status}");
        PageServer { pid_file }
    }
}

impl Drop for PageServer {
    fn drop(&mut self) {
        let pid = fs::read_to_string(&self.pid_file).unwrap_or_default();
        if let Ok(pid) = pid.trim().parse() {
            let _ =
                nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::SIGKILL);
        }
    }
}

fn page_files(dir: &Path) -> Vec<String> {
    let names = fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name());
    let names = names.map(|name| name.to_string_lossy().into_owned());
    names.filter(|name| name.starts_with("pages-")).collect()
}

#[test]
#[ignore = "CRIU needs a kernel it supports: tools/vm/test-criu runs it"]
fn page_server_receives_the_memory_pages() {
    let c = counter();
    let pipes = run_detached(&c);
    let served = c.dir.join("served");
    fs::create_dir(&served).unwrap();
    let port = 20_000 + (std::process::id() % 10_000) as u16;
    let _server = PageServer::start(&served, port);
    let before = pipes.next_number();
    let images = c.dir.join("images");
    let address = format!("127.0.0.1:{port}");
    checkpoint(&c, &images, &["--page-server", &address]).success();
    let last = pipes.last_number();
    assert_eq!(
        page_files(&images),
        Vec::<String>::new(),
        "pages in --image-path"
    );
    assert!(
        !page_files(&served).is_empty(),
        "the page server got no pages"
    );

    // The images and what the page server wrote (the pages and their maps) restore.
    for entry in fs::read_dir(&served).unwrap() {
        let name = entry.unwrap().file_name();
        fs::copy(served.join(&name), images.join(&name)).unwrap();
    }
    assert_counts_on(&restore_detached(&c, &images, &[]), before, last);
}

/// A process of the test's, killed (if still running) and reaped on drop.
struct Background(std::process::Child);

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
#[ignore = "CRIU needs a kernel it supports: tools/vm/test-criu runs it"]
fn lazy_pages_restore_while_the_checkpoint_serves_the_memory() {
    let c = counter();
    let pipes = run_detached(&c);
    let before = pipes.next_number();
    let (images, work) = (c.dir.join("images"), c.dir.join("work"));
    let (images_flag, work_flag) = (images.to_str().unwrap(), work.to_str().unwrap());
    let port = (20_001 + std::process::id() % 10_000).to_string();
    let address = format!("127.0.0.1:{port}");
    // The checkpoint stays until the restored container has every page; its stdout is the
    // status fd, which gets one \0 once CRIU's page server is ready.
    let (status_read, status_write) = nix::unistd::pipe().expect("pipe");
    #[rustfmt::skip]
    let args = [
        "checkpoint", "--lazy-pages", "--page-server", &address, "--status-fd", "1",
        "--image-path", images_flag, "--work-path", work_flag, &c.id,
    ];
    let checkpointing = c.spawn_with(&args, |command| {
        command.stdout(Stdio::from(status_write));
    });
    let (ready, status) = mpsc::channel();
    std::thread::spawn(move || {
        let mut byte = [1u8];
        let read = std::io::Read::read(&mut File::from(status_read), &mut byte);
        let _ = ready.send(read.ok().map(|n| byte[..n].to_vec()));
    });
    let status = status
        .recv_timeout(CRIU_TIMEOUT)
        .expect("no status from --status-fd");
    assert_eq!(status, Some(vec![0]), "--status-fd");

    let _lazy_pages = Background(
        std::process::Command::new("criu")
            .args([
                "lazy-pages",
                "--page-server",
                "--address",
                "127.0.0.1",
                "--port",
                &port,
            ])
            .args(["--images-dir", images_flag, "--work-dir", work_flag])
            .stdin(Stdio::null())
            .spawn()
            .expect("criu lazy-pages"),
    );
    // The checkpointed container lives on (frozen) until then: the restored one is another.
    let r = counter();
    let restored = restore_detached(&r, &images, &["--work-path", work_flag, "--lazy-pages"]);
    checkpointing.wait(CRIU_TIMEOUT).success();
    assert_eq!(c.status(), None, "checkpoint deletes the container");
    let last = pipes.last_number();
    assert_counts_on(&restored, before, last);
}

#[test]
#[ignore = "CRIU needs a kernel it supports: tools/vm/test-criu runs it"]
fn manage_cgroups_mode_strict_refuses_the_cgroup_restore_made() {
    let c = counter();
    let _pipes = run_detached(&c);
    let images = c.dir.join("images");
    checkpoint(&c, &images, &[]).success();
    // berth makes the container's cgroup before CRIU restores into it, as runc does; in
    // strict mode CRIU will not restore into a cgroup that exists.
    let mut args = restore_args(&c, &images);
    args.splice(2..2, ["--manage-cgroups-mode", "strict"]);
    let out = c.spawn(&args).wait(CRIU_TIMEOUT).failure();
    assert!(
        out.stderr.contains("Abort restore of existing cgroups"),
        "{out}"
    );
    assert_eq!(c.status(), None);
    c.assert_no_leaks();
}

#[test]
#[ignore = "CRIU needs a kernel it supports: tools/vm/test-criu runs it"]
fn a_restored_network_namespace_starts_empty_as_in_runc() {
    let c = Container::with_args(&["sh", "-c", &format!("ip link set lo up; {COUNTER}")]);
    grant(&c, "CAP_NET_ADMIN");
    let _pipes = run_detached(&c);
    let lo = "ip -o link show lo";
    let up = c.exec(&[], &["sh", "-c", lo]).success();
    assert!(up.stdout.contains(",UP"), "{up}");
    let images = c.dir.join("images");
    checkpoint(&c, &images, &[]).success();

    let _restored = restore_detached(&c, &images, &[]);
    let down = c.exec(&[], &["sh", "-c", lo]).success();
    assert!(
        !down.stdout.contains(",UP"),
        "the loopback came back up: {down}"
    );
}

#[test]
#[ignore = "CRIU needs a kernel it supports: tools/vm/test-criu runs it"]
fn what_an_exec_leaves_running_is_checkpointed_with_the_container() {
    let c = counter();
    let pipes = run_detached(&c);
    // The shell exits; its sleep is reparented to the container's init.
    let daemonize = "sleep 1001 < /dev/null > /dev/null 2>&1 &";
    c.exec(&[], &["sh", "-c", daemonize]).success();
    let before = pipes.next_number();
    let images = c.dir.join("images");
    checkpoint(&c, &images, &[]).success();
    let last = pipes.last_number();

    assert_counts_on(&restore_detached(&c, &images, &[]), before, last);
    wait_for_output(&c, "ps -o args", "sleep 1001");
}

/// A PATH without criu.
const NO_CRIU: &str = "/nonexistent";

#[test]
fn without_criu_checkpoint_fails_clearly_and_leaves_the_container_running() {
    let mut c = Container::new();
    c.start_sleeper();
    let pid = state_pid(&c);
    let images = c.dir.join("images");
    let out = c
        .spawn_with(
            &[
                "checkpoint",
                "--image-path",
                images.to_str().unwrap(),
                &c.id,
            ],
            |command| {
                command.env("PATH", NO_CRIU);
            },
        )
        .wait(COMMAND_TIMEOUT)
        .failure();
    assert!(out.stderr.contains("criu not found"), "{out}");
    assert_eq!(state_pid(&c), pid);
    assert!(!images.exists(), "checkpoint made {}", images.display());
}

#[test]
fn without_criu_restore_fails_clearly_and_leaves_nothing() {
    let c = counter();
    let images = images_of_nothing(&c);
    let out = c
        .spawn_with(&restore_args(&c, &images), |command| {
            command.env("PATH", NO_CRIU);
        })
        .wait(COMMAND_TIMEOUT)
        .failure();
    assert!(out.stderr.contains("criu not found"), "{out}");
    assert_eq!(c.status(), None);
    c.assert_no_leaks();
}

#[test]
fn restore_from_a_missing_image_path_fails_clearly_and_leaves_nothing() {
    let c = counter();
    let images = c.dir.join("no-images");
    let out = c.cmd(&restore_args(&c, &images)).failure();
    let expected = format!("--image-path {}", images.display());
    assert!(out.stderr.contains(&expected), "{out}");
    assert_eq!(c.status(), None);
    c.assert_no_leaks();
}

#[test]
fn a_created_container_cannot_be_checkpointed() {
    let c = Container::with_args(&["true"]);
    c.create().success();
    let images = c.dir.join("images");
    let out = checkpoint(&c, &images, &[]).failure();
    assert!(
        out.stderr
            .contains("cannot be checkpointed in created state"),
        "{out}"
    );
    assert_eq!(c.status().as_deref(), Some("created"));
    assert!(!images.exists(), "checkpoint made {}", images.display());
}

/// An image directory with what `restore` reads first, and no dump.
pub fn images_of_nothing(c: &Container) -> PathBuf {
    let images = c.dir.join("images");
    fs::create_dir(&images).unwrap();
    fs::write(
        images.join("descriptors.json"),
        r#"["pipe:[1]","pipe:[2]","pipe:[2]"]"#,
    )
    .unwrap();
    images
}

pub fn restore_args<'a>(c: &'a Container, images: &'a Path) -> Vec<&'a str> {
    let bundle = c.bundle.to_str().expect("utf-8 temp dir");
    let images = images.to_str().expect("utf-8 temp dir");
    vec![
        "restore",
        "-d",
        "--image-path",
        images,
        "--bundle",
        bundle,
        &c.id,
    ]
}

#[test]
fn features_says_checkpoint_is_enabled() {
    let c = Container::new();
    let out = c.cmd(&["features"]).success();
    let features: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    // The annotation runc's `features` has, which callers read.
    assert_eq!(
        features["annotations"]["org.opencontainers.runc.checkpoint.enabled"], "true",
        "{out}"
    );
}

#[test]
#[ignore = "CRIU needs a kernel it supports: tools/vm/test-criu runs it"]
fn the_readme_example_counts_on() {
    let c = Container::new();
    let out = c
        .run_readme_example_within("criu-demo", &[], 3 * CRIU_TIMEOUT)
        .success();
    let numbers: Vec<u64> = out
        .stdout
        .lines()
        .filter_map(|line| line.parse().ok())
        .collect();
    let [last, next] = numbers[..] else {
        panic!("expected two numbers:\n{out}")
    };
    assert!(
        1 < next && next <= last + 1,
        "the counter did not go on:\n{out}"
    );
    assert_eq!(c.status().as_deref(), Some("running"));
}
