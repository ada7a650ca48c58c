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
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::Duration;

use oci_spec::runtime::{Mount, MountBuilder};

use crate::common::{COMMAND_TIMEOUT, Container, Output, Spawned};

/// CRIU under the VM's emulated CPU takes seconds, a dump up to about 20.
const CRIU_TIMEOUT: Duration = Duration::from_secs(120);

/// Prints 1, 2, 3... on stdout, ten a second, and each also into `/data/count` when the
/// container has a `/data`.
const COUNTER: &str =
    "i=0; while :; do i=$((i+1)); echo $i; [ -d /data ] && echo $i > /data/count; sleep 0.1; done";

fn counter() -> Container {
    Container::with_args(&["sh", "-c", COUNTER])
}

/// The far ends of a detached container's stdio: the write end of its stdin, held open so
/// that it never reads EOF, and the lines of its stdout and stderr (one pipe), read by a thread.
struct Pipes {
    _stdin: OwnedFd,
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
        let (send, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(File::from(output_read)).lines() {
                let Ok(line) = line else { return };
                if send.send(line).is_err() {
                    return;
                }
            }
        });
        let pipes = Pipes {
            _stdin: stdin_write,
            lines,
        };
        (pipes, spawned)
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
    // The images hold the counter as the dump found it, before `before`.
    let next = restored.next_number();
    assert!(
        1 < next && next < last,
        "restored at {next}, dumped before {before}"
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
fn images_of_nothing(c: &Container) -> PathBuf {
    let images = c.dir.join("images");
    fs::create_dir(&images).unwrap();
    fs::write(
        images.join("descriptors.json"),
        r#"["pipe:[1]","pipe:[2]","pipe:[2]"]"#,
    )
    .unwrap();
    images
}

fn restore_args<'a>(c: &'a Container, images: &'a Path) -> Vec<&'a str> {
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
