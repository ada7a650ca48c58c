//! Tests that change the identity of a process. Each runs its body in a fresh copy of the test
//! binary (never in the runner, never on the host), which reports back over its original stdout.
//! They need root, as berth does.

use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::process::Command;

use anyhow::{Context, Result};
use nix::sys::socket::{
    AddressFamily, ControlMessageOwned, MsgFlags, SockFlag, SockType, recvmsg, socketpair,
};
use oci_spec::runtime::Process;
use serde_json::json;

use super::*;

const CHILD_ENV: &str = "BERTH_PROCESS_TEST_CHILD";

/// What a child run produced: its report (None if it exec'd or died) and everything it printed.
struct ChildRun {
    report: Option<Result<String, String>>,
    stdout: String,
}

/// In the runner: re-runs only `test` in a child and collects its report. In that child: runs
/// `body` and reports its outcome on the stdout it started with (the body may replace fd 1).
fn in_child(test: &str, body: impl FnOnce() -> Result<String>) -> ChildRun {
    let test = test.split_once("::").map_or(test, |(_, rest)| rest);
    if std::env::var(CHILD_ENV).as_deref() == Ok(test) {
        let report_fd = nix::unistd::dup(std::io::stdout().as_fd()).expect("dup stdout");
        let outcome = body().map_err(|e| format!("{e:#}"));
        let mut report = std::fs::File::from(report_fd);
        writeln!(
            report,
            "\nREPORT:{}",
            serde_json::to_string(&outcome).unwrap()
        )
        .unwrap();
        std::process::exit(0);
    }
    assert!(nix::unistd::geteuid().is_root(), "these tests need root");
    let output = Command::new(std::env::current_exe().unwrap())
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, test)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let report = stdout
        .lines()
        .find_map(|line| line.strip_prefix("REPORT:"))
        .map(|json| serde_json::from_str(json).unwrap());
    ChildRun { report, stdout }
}

macro_rules! child {
    ($name:literal, $body:expr) => {
        in_child(concat!(module_path!(), "::", $name), $body)
    };
}

fn process(overrides: serde_json::Value) -> Process {
    let mut value = json!({"user": {"uid": 0, "gid": 0}, "args": ["sh"], "cwd": "/"});
    for (key, field) in overrides.as_object().unwrap() {
        value[key] = field.clone();
    }
    serde_json::from_value(value).unwrap()
}

/// The fields of /proc/thread-self/status we check (capabilities and no_new_privs are
/// per-thread, and the test body runs on a libtest thread).
fn status(fields: &[&str]) -> Result<String> {
    let status = std::fs::read_to_string("/proc/thread-self/status")?;
    let lines: Vec<&str> = status
        .lines()
        .filter(|line| {
            fields
                .iter()
                .any(|field| line.starts_with(&format!("{field}:")))
        })
        .collect();
    Ok(lines.join("\n").replace('\t', " "))
}

fn expect_ok(run: ChildRun) -> String {
    match run.report {
        Some(Ok(report)) => report,
        Some(Err(error)) => panic!("child failed: {error}"),
        None => panic!("child sent no report; stdout:\n{}", run.stdout),
    }
}

fn expect_err(run: ChildRun) -> String {
    match run.report {
        Some(Err(error)) => error,
        Some(Ok(report)) => panic!("child unexpectedly succeeded: {report}"),
        None => panic!("child sent no report; stdout:\n{}", run.stdout),
    }
}

#[test]
fn apply_sets_identity_capabilities_and_limits() {
    let run = child!("apply_sets_identity_capabilities_and_limits", || {
        let p = process(json!({
            "user": {"uid": 1000, "gid": 1001, "additionalGids": [10, 20], "umask": 0o027},
            "cwd": "/tmp",
            "capabilities": {
                "bounding": ["CAP_KILL", "CAP_CHOWN", "CAP_NET_BIND_SERVICE"],
                "effective": ["CAP_KILL"],
                "permitted": ["CAP_KILL", "CAP_CHOWN"],
                "inheritable": ["CAP_KILL"],
                "ambient": ["CAP_KILL"]
            },
            "rlimits": [
                {"type": "RLIMIT_NOFILE", "soft": 100, "hard": 200},
                {"type": "RLIMIT_CORE", "soft": 0, "hard": 0}
            ],
            "noNewPrivileges": true,
            "scheduler": {"policy": "SCHED_BATCH", "nice": 5},
            "ioPriority": {"class": "IOPRIO_CLASS_IDLE", "priority": 0}
        }));
        validate(&p, None)?;
        apply(&p, None)?;
        let (nofile_soft, nofile_hard) =
            nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)?;
        Ok(format!(
            "{}\nnofile {nofile_soft} {nofile_hard}\ncwd {}\npolicy {}",
            status(&[
                "Umask",
                "Uid",
                "Gid",
                "Groups",
                "CapInh",
                "CapPrm",
                "CapEff",
                "CapBnd",
                "CapAmb",
                "NoNewPrivs"
            ])?,
            std::env::current_dir()?.display(),
            // SAFETY: reads the calling thread's policy; no memory involved.
            unsafe { libc::sched_getscheduler(0) },
        ))
    });
    let report = expect_ok(run);
    let expected = [
        "Umask: 0027",
        "Uid: 1000 1000 1000 1000",
        "Gid: 1001 1001 1001 1001",
        "Groups: 10 20",
        "CapInh: 0000000000000020",
        "CapPrm: 0000000000000021",
        "CapEff: 0000000000000020",
        "CapBnd: 0000000000000421",
        "CapAmb: 0000000000000020",
        "NoNewPrivs: 1",
        "nofile 100 200",
        "cwd /tmp",
        &format!("policy {}", libc::SCHED_BATCH),
    ];
    for line in expected {
        assert!(
            report.lines().any(|l| l.trim_end() == line),
            "missing {line:?} in:\n{report}"
        );
    }
}

#[test]
fn root_user_keeps_exactly_the_configured_capabilities() {
    let run = child!(
        "root_user_keeps_exactly_the_configured_capabilities",
        || {
            let p = process(json!({"capabilities": {
                "bounding": ["CAP_SYS_ADMIN"], "effective": [], "permitted": ["CAP_SYS_ADMIN"]
            }}));
            apply(&p, None)?;
            status(&["Uid", "CapPrm", "CapEff", "CapBnd", "NoNewPrivs"])
        }
    );
    assert_eq!(
        expect_ok(run),
        "Uid: 0 0 0 0\nCapPrm: 0000000000200000\nCapEff: 0000000000000000\nCapBnd: 0000000000200000\nNoNewPrivs: 0"
    );
}

#[test]
fn cwd_through_a_leaked_fd_is_refused() {
    let run = child!("cwd_through_a_leaked_fd_is_refused", || {
        let leaked = std::fs::File::open("/tmp")?;
        let p = process(json!({"cwd": format!("/proc/self/fd/{}", leaked.as_raw_fd())}));
        apply(&p, None)?;
        Ok(format!("cwd is {}", std::env::current_dir()?.display()))
    });
    let error = expect_err(run);
    assert!(error.starts_with("process.cwd \"/proc/self/fd/"), "{error}");
    assert!(error.contains("too many symbolic links"), "{error}");
}

/// The child's scratch root, named after the runner so that the runner can remove it.
fn scratch_root(runner_pid: u32) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("berth-process-cwd-{runner_pid}"))
}

#[test]
fn cwd_symlinks_resolve_inside_the_root() {
    // Only ever dropped in the runner: the child leaves through process::exit.
    let _cleanup = RemoveOnDrop(scratch_root(std::process::id()));
    let run = child!("cwd_symlinks_resolve_inside_the_root", || {
        let rootfs = scratch_root(nix::unistd::getppid().as_raw() as u32);
        std::fs::create_dir_all(rootfs.join("etc"))?;
        std::os::unix::fs::symlink("../../../../../etc", rootfs.join("escape"))?;
        nix::unistd::chroot(&rootfs)?;
        cwd::enter(std::path::Path::new("/escape"))?;
        // Inside the chroot, /etc is the rootfs's own (empty) etc.
        Ok(format!(
            "{} {}",
            std::env::current_dir()?.display(),
            std::fs::read_dir(".")?.count()
        ))
    });
    assert_eq!(expect_ok(run), "/etc 0");
}

struct RemoveOnDrop(std::path::PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn raising_a_hard_rlimit_names_the_field() {
    let run = child!("raising_a_hard_rlimit_names_the_field", || {
        let (_, hard) = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)?;
        let p = process(json!({"rlimits": [
            {"type": "RLIMIT_CORE", "soft": 0, "hard": 0},
            {"type": "RLIMIT_NOFILE", "soft": 10, "hard": hard + 1}
        ]}));
        apply(&p, None)?;
        Ok("raised".into())
    });
    let error = expect_err(run);
    assert!(
        error.starts_with("process.rlimits[1] RLIMIT_NOFILE: setrlimit: Operation not permitted"),
        "{error}"
    );
}

/// Whether this host grants CAP_SYS_RESOURCE; the tests of its absence then have nothing to
/// see, and say that they skip.
fn host_grants_sys_resource() -> bool {
    let granted = caps::has_cap(
        None,
        caps::CapSet::Bounding,
        caps::Capability::CAP_SYS_RESOURCE,
    )
    .unwrap();
    if granted {
        eprintln!("skipped: this host grants CAP_SYS_RESOURCE");
    }
    granted
}

fn own_oom_score_adj() -> Result<String> {
    Ok(std::fs::read_to_string("/proc/self/oom_score_adj")?
        .trim()
        .to_string())
}

#[test]
fn the_cloned_process_inherits_the_oom_score_adj_and_the_parent_keeps_its_own() {
    let run = child!(
        "the_cloned_process_inherits_the_oom_score_adj_and_the_parent_keeps_its_own",
        || {
            let before = own_oom_score_adj()?;
            let forked = clone_with_oom_score_adj(Some(200), || Ok(crate::sys::clone3(0, None)?))?;
            let crate::sys::Forked::Parent { pid, .. } = forked else {
                let inherited = own_oom_score_adj().map_or(1, |adj| i32::from(adj == "200"));
                crate::sys::exit_now(inherited)
            };
            let status = nix::sys::wait::waitpid(pid, None)?;
            Ok(format!(
                "{status:?} before {before} after {}",
                own_oom_score_adj()?
            ))
        }
    );
    let report = expect_ok(run);
    let (status, own) = report.split_once(" before ").expect("the report");
    assert!(
        status.ends_with(", 1)"),
        "the child did not have 200: {report}"
    );
    let (before, after) = own.split_once(" after ").expect("the report");
    assert_eq!(before, after, "{report}");
}

#[test]
fn lowering_oom_score_adj_explains_the_missing_capability() {
    if host_grants_sys_resource() {
        return;
    }
    let run = child!(
        "lowering_oom_score_adj_explains_the_missing_capability",
        || {
            clone_with_oom_score_adj(Some(-1000), || panic!("cloned without the value"))?;
            Ok("lowered".into())
        }
    );
    let error = expect_err(run);
    assert!(
        error.starts_with("process.oomScoreAdj: writing -1000"),
        "{error}"
    );
    assert!(error.contains("CAP_SYS_RESOURCE"), "{error}");
}

#[test]
fn a_capability_berth_does_not_hold_is_an_error() {
    if host_grants_sys_resource() {
        return;
    }
    let run = child!("a_capability_berth_does_not_hold_is_an_error", || {
        apply(
            &process(json!({"capabilities": {"bounding": ["CAP_SYS_RESOURCE"]}})),
            None,
        )?;
        Ok("granted".into())
    });
    assert!(expect_err(run).starts_with(
        "process.capabilities.bounding: CAP_SYS_RESOURCE is not in berth's own bounding set"
    ));
}

#[test]
fn mark_fds_cloexec_starts_at_the_given_fd() {
    let run = child!("mark_fds_cloexec_starts_at_the_given_fd", || {
        use nix::fcntl::{FcntlArg, FdFlag, OFlag, fcntl, open};
        let kept = open("/dev/null", OFlag::O_RDONLY, nix::sys::stat::Mode::empty())?;
        let marked = open("/dev/null", OFlag::O_RDONLY, nix::sys::stat::Mode::empty())?;
        mark_fds_cloexec(marked.as_raw_fd())?;
        let cloexec = |fd: &OwnedFd| -> Result<bool> {
            Ok(FdFlag::from_bits_truncate(fcntl(fd, FcntlArg::F_GETFD)?)
                .contains(FdFlag::FD_CLOEXEC))
        };
        Ok(format!("{} {}", cloexec(&kept)?, cloexec(&marked)?))
    });
    assert_eq!(expect_ok(run), "false true");
}

#[test]
fn exec_runs_the_program_with_runc_s_environment() {
    let run = child!("exec_runs_the_program_with_runc_s_environment", || {
        let p = process(json!({
            "args": ["sh", "-c", "echo \"ENV:$HOME:$TERM:$FOO:$(env | grep -c ^FOO=)\""],
            "env": ["PATH=/usr/bin:/bin", "FOO=1", "FOO=2"],
            "terminal": true
        }));
        let prepared = prepare(&p, None)?;
        match prepared.exec()? {}
    });
    assert!(run.report.is_none(), "exec returned: {:?}", run.report);
    assert!(run.stdout.contains("ENV:/root:xterm:2:1"), "{}", run.stdout);
}

#[test]
fn pty_master_arrives_with_its_name_and_size() {
    // No identity change here: the pty comes from the host's /dev/ptmx and is closed at the end.
    let size = serde_json::from_value(json!({"height": 40, "width": 120})).unwrap();
    let pty = console::open_pty(Some(size)).unwrap();
    let (sender, receiver) = socketpair(
        AddressFamily::Unix,
        SockType::Stream,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .unwrap();
    console::send_master(sender.as_fd(), &pty).unwrap();

    let mut payload = [0u8; 64];
    let mut iov = [std::io::IoSliceMut::new(&mut payload)];
    let mut space = nix::cmsg_space!([std::os::fd::RawFd; 2]);
    let message = recvmsg::<()>(
        receiver.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .unwrap();
    let fds: Vec<_> = message
        .cmsgs()
        .unwrap()
        .flat_map(|cmsg| match cmsg {
            ControlMessageOwned::ScmRights(fds) => fds,
            other => panic!("unexpected control message {other:?}"),
        })
        .collect();
    let name = String::from_utf8(message.iovs().next().unwrap().to_vec()).unwrap();
    assert_eq!(name, pty.name);
    assert!(name.starts_with("/dev/pts/"), "{name}");
    assert_eq!(fds.len(), 1);
    // SAFETY: SCM_RIGHTS just installed this fd in our table; we are its only owner.
    let master = unsafe { OwnedFd::from_raw_fd(fds[0]) };
    let number = super::sys::ioctl_read_int(master.as_fd(), libc::TIOCGPTN).unwrap();
    assert_eq!(
        format!("/dev/pts/{number}"),
        name,
        "received fd is not this pty's master"
    );
    let winsize = nix::pty::Winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    let mut winsize = winsize;
    // SAFETY: TIOCGWINSZ writes one winsize into memory we own.
    let ret = unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCGWINSZ, &mut winsize) };
    assert_eq!(ret, 0);
    assert_eq!((winsize.ws_row, winsize.ws_col), (40, 120));
}

#[test]
fn attach_slave_makes_the_pty_stdio_and_controlling_terminal() {
    let run = child!(
        "attach_slave_makes_the_pty_stdio_and_controlling_terminal",
        || {
            let pty = console::open_pty(None)?;
            let name = pty.name.clone();
            // Stands in for the console socket's receiver: without a master the tty hangs up.
            let receiver_copy = pty.master.try_clone()?;
            console::attach_slave(pty)?;
            let mut lines = vec![];
            for fd in 0..=2 {
                // SAFETY: fd 0..2 are open (just dup'ed); the borrow does not outlive this loop.
                let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
                let tty = nix::unistd::ttyname(borrowed).context("ttyname")?;
                lines.push(format!("{fd} {}", tty.display()));
            }
            let session = nix::unistd::getsid(None)?;
            // SAFETY: plain integer arguments.
            let terminal_session = unsafe { libc::tcgetsid(0) };
            lines.push(format!(
                "ctty-session-is-ours {}",
                terminal_session == session.as_raw()
            ));
            // Closing the last master would hang the tty up and SIGHUP this child before it reports;
            // the child exits right after, which closes it.
            std::mem::forget(receiver_copy);
            Ok(format!("{name}\n{}", lines.join("\n")))
        }
    );
    let report = expect_ok(run);
    let mut lines = report.lines();
    let name = lines.next().unwrap();
    let rest: Vec<&str> = lines.collect();
    assert_eq!(
        rest,
        [
            &format!("0 {name}") as &str,
            &format!("1 {name}"),
            &format!("2 {name}"),
            "ctty-session-is-ours true"
        ]
    );
}

#[test]
fn an_ambient_capability_that_cannot_be_raised_is_skipped() {
    let run = child!(
        "an_ambient_capability_that_cannot_be_raised_is_skipped",
        || {
            let p = process(json!({"user": {"uid": 1000, "gid": 1000}, "capabilities": {
                "bounding": ["CAP_KILL", "CAP_CHOWN"], "permitted": ["CAP_KILL", "CAP_CHOWN"],
                "inheritable": ["CAP_KILL"], "ambient": ["CAP_KILL", "CAP_CHOWN"]
            }}));
            validate(&p, None)?;
            apply(&p, None)?;
            status(&["CapAmb"])
        }
    );
    assert_eq!(expect_ok(run), "CapAmb: 0000000000000020");
}

/// What the init does, less seccomp: settings, then identity.
fn apply(process: &Process, personality: Option<&LinuxPersonality>) -> anyhow::Result<()> {
    prepare(process, personality)?.assume_identity()
}
