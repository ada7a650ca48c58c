//! Behaviour tests: fork, load a compiled filter in the child (with no_new_privs, so no root
//! is needed) and look at what the filtered syscalls do.

use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use libseccomp::{ScmpArch, ScmpNotifReq, ScmpNotifResp, ScmpNotifRespFlags, ScmpSyscall};
use nix::sys::signal::{SigHandler, Signal, signal};
use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::{ForkResult, fork};
use oci_spec::runtime::{ContainerProcessState, LinuxSeccomp};
use serde_json::{Value, json};

use super::{Filter, compile};

/// Exit code of a child whose filter did not load.
const LOAD_FAILED: i32 = 100;

fn filter(config: Value) -> Filter {
    let config: LinuxSeccomp = serde_json::from_value(config).expect("test config deserializes");
    compile(&config).expect("test config compiles")
}

/// Forks a child that sets no_new_privs, loads `filter` and exits with `body`'s result.
/// The filter is compiled before the fork so the child only makes syscalls.
fn run_filtered(filter: Filter, body: impl FnOnce(Option<OwnedFd>) -> i32) -> WaitStatus {
    // SAFETY: the child only makes raw syscalls (and, for notify, sends one message) before
    // it calls _exit; it never returns into the test harness.
    match unsafe { fork() }.expect("fork") {
        ForkResult::Child => {
            let no_core = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            // SAFETY: plain syscalls on the child's own process state.
            let code = unsafe {
                libc::setrlimit(libc::RLIMIT_CORE, &no_core);
                libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
                match filter.load() {
                    Ok(notify_fd) => body(notify_fd),
                    Err(_) => LOAD_FAILED,
                }
            };
            // SAFETY: leaves the forked child without running the parent's destructors.
            unsafe { libc::_exit(code) }
        }
        ForkResult::Parent { child } => waitpid(child, None).expect("waitpid"),
    }
}

fn exited(status: WaitStatus) -> i32 {
    match status {
        WaitStatus::Exited(_, code) => code,
        other => panic!("child did not exit normally: {other:?}"),
    }
}

/// Calls getppid with chosen register arguments (seccomp sees all six whatever the syscall
/// takes); returns the errno, or 0 when the call succeeded.
fn getppid_errno(arg0: u64, arg1: u64) -> i32 {
    // SAFETY: getppid ignores its arguments and has no side effects.
    let ret = unsafe { libc::syscall(libc::SYS_getppid, arg0, arg1) };
    if ret < 0 {
        std::io::Error::last_os_error().raw_os_error().unwrap_or(-1)
    } else {
        0
    }
}

fn mkdir_errno() -> i32 {
    // SAFETY: the path is a valid C string; the filter answers before the kernel acts.
    let ret = unsafe { libc::mkdir(c"/proc/berth-seccomp-test".as_ptr(), 0o700) };
    if ret < 0 {
        std::io::Error::last_os_error().raw_os_error().unwrap_or(-1)
    } else {
        0
    }
}

fn errno_rule(names: &[&str], errno: u32, args: Value) -> Value {
    json!({"names": names, "action": "SCMP_ACT_ERRNO", "errnoRet": errno, "args": args})
}

#[test]
fn errno_rule_returns_configured_errno() {
    let filter = filter(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [errno_rule(&["mkdir", "mkdirat"], 123, json!([]))],
    }));
    assert_eq!(exited(run_filtered(filter, |_| mkdir_errno())), 123);
}

#[test]
fn errno_without_errno_ret_is_eperm() {
    let filter = filter(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["getppid"], "action": "SCMP_ACT_ERRNO"}],
    }));
    assert_eq!(
        exited(run_filtered(filter, |_| getppid_errno(0, 0))),
        libc::EPERM
    );
}

#[test]
fn default_errno_ret_applies_to_unlisted_syscalls() {
    let filter = filter(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": 77,
        "syscalls": [{"names": ["exit", "exit_group"], "action": "SCMP_ACT_ALLOW"}],
    }));
    assert_eq!(exited(run_filtered(filter, |_| getppid_errno(0, 0))), 77);
}

#[test]
fn kill_actions_kill_with_sigsys() {
    for action in [
        "SCMP_ACT_KILL",
        "SCMP_ACT_KILL_THREAD",
        "SCMP_ACT_KILL_PROCESS",
    ] {
        let filter = filter(json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["getppid"], "action": action}],
        }));
        let status = run_filtered(filter, |_| getppid_errno(0, 0));
        assert!(
            matches!(status, WaitStatus::Signaled(_, Signal::SIGSYS, _)),
            "{action}: {status:?}"
        );
    }
}

extern "C" fn exit_on_sigsys(_: libc::c_int) {
    // SAFETY: _exit is async-signal-safe.
    unsafe { libc::_exit(42) }
}

#[test]
fn trap_raises_a_catchable_sigsys() {
    let filter = filter(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["getppid"], "action": "SCMP_ACT_TRAP"}],
    }));
    let status = run_filtered(filter, |_| {
        // SAFETY: the handler only calls _exit.
        unsafe { signal(Signal::SIGSYS, SigHandler::Handler(exit_on_sigsys)) }.expect("signal");
        getppid_errno(0, 0)
    });
    assert_eq!(exited(status), 42);
}

#[test]
fn trace_without_tracer_fails_with_enosys() {
    let filter = filter(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["getppid"], "action": "SCMP_ACT_TRACE", "errnoRet": 5}],
    }));
    assert_eq!(
        exited(run_filtered(filter, |_| getppid_errno(0, 0))),
        libc::ENOSYS
    );
}

#[test]
fn log_and_allow_let_the_syscall_run() {
    for action in ["SCMP_ACT_LOG", "SCMP_ACT_ALLOW"] {
        let filter = filter(json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "syscalls": [{"names": ["getppid", "exit", "exit_group"], "action": action}],
        }));
        assert_eq!(
            exited(run_filtered(filter, |_| getppid_errno(0, 0))),
            0,
            "{action}"
        );
    }
}

/// Runs getppid(arg) for each of `args` under a rule `arg0 <op> value` and returns which
/// calls matched, as a bit mask (bit i for args[i]).
fn matches_of(op: &str, value: u64, value_two: u64, args: &[u64]) -> i32 {
    let filter = filter(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [errno_rule(
            &["getppid"],
            99,
            json!([{"index": 0, "value": value, "valueTwo": value_two, "op": op}]),
        )],
    }));
    exited(run_filtered(filter, |_| {
        args.iter()
            .enumerate()
            .filter(|(_, arg)| getppid_errno(**arg, 0) == 99)
            .fold(0, |mask, (i, _)| mask | 1 << i)
    }))
}

#[test]
fn every_operator_compares_as_libseccomp_defines_it() {
    let below_at_above = [4, 5, 6];
    assert_eq!(matches_of("SCMP_CMP_EQ", 5, 0, &below_at_above), 0b010);
    assert_eq!(matches_of("SCMP_CMP_NE", 5, 0, &below_at_above), 0b101);
    assert_eq!(matches_of("SCMP_CMP_LT", 5, 0, &below_at_above), 0b001);
    assert_eq!(matches_of("SCMP_CMP_LE", 5, 0, &below_at_above), 0b011);
    assert_eq!(matches_of("SCMP_CMP_GT", 5, 0, &below_at_above), 0b100);
    assert_eq!(matches_of("SCMP_CMP_GE", 5, 0, &below_at_above), 0b110);
    // value is the mask, valueTwo the expected masked value: (arg & 0xf0) == 0x30.
    let args = [0x35, 0x45, 0x3f, 0x70];
    assert_eq!(matches_of("SCMP_CMP_MASKED_EQ", 0xf0, 0x30, &args), 0b0101);
}

#[test]
fn arguments_compare_as_full_64_bit_values() {
    let big = 0x1_0000_0005;
    assert_eq!(matches_of("SCMP_CMP_EQ", big, 0, &[5, big]), 0b10);
}

/// Matches of a rule with `args` for each (arg0, arg1) pair, as a bit mask.
fn matches_of_args(args: Value, calls: &[(u64, u64)]) -> i32 {
    let filter = filter(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [errno_rule(&["getppid"], 99, args)],
    }));
    exited(run_filtered(filter, |_| {
        calls
            .iter()
            .enumerate()
            .filter(|(_, (a0, a1))| getppid_errno(*a0, *a1) == 99)
            .fold(0, |mask, (i, _)| mask | 1 << i)
    }))
}

#[test]
fn conditions_on_distinct_arguments_must_all_match() {
    let args = json!([
        {"index": 0, "value": 1, "op": "SCMP_CMP_EQ"},
        {"index": 1, "value": 2, "op": "SCMP_CMP_EQ"},
    ]);
    assert_eq!(matches_of_args(args, &[(1, 2), (1, 3), (0, 2)]), 0b001);
}

#[test]
fn conditions_repeating_an_argument_match_any_as_runc_does() {
    let args = json!([
        {"index": 0, "value": 1, "op": "SCMP_CMP_EQ"},
        {"index": 0, "value": 2, "op": "SCMP_CMP_EQ"},
    ]);
    assert_eq!(matches_of_args(args, &[(1, 0), (2, 0), (3, 0)]), 0b011);
}

#[test]
fn unknown_syscall_names_are_skipped_and_the_rest_applies() {
    let filter = filter(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [errno_rule(&["berth_no_such_syscall", "getppid"], 55, json!([]))],
    }));
    assert_eq!(exited(run_filtered(filter, |_| getppid_errno(0, 0))), 55);
}

#[test]
fn extra_architectures_and_flags_load() {
    let filter = filter(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "flags": ["SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG",
                  "SECCOMP_FILTER_FLAG_SPEC_ALLOW", "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"],
        "syscalls": [errno_rule(&["getppid"], 66, json!([]))],
    }));
    assert_eq!(exited(run_filtered(filter, |_| getppid_errno(0, 0))), 66);
}

/// Runs raw syscall `nr` without arguments; returns the errno, or 0 on success.
fn syscall_errno(nr: libc::c_long) -> i32 {
    // SAFETY: only called under filters that refuse `nr` before the kernel runs it.
    let ret = unsafe { libc::syscall(nr, 0, 0, 0, 0) };
    if ret < 0 {
        std::io::Error::last_os_error().raw_os_error().unwrap_or(-1)
    } else {
        0
    }
}

/// Under an allow-list profile with `architectures`, getpid (older than the profile's
/// exit_group) must get the default EPERM; returns the errno of set_mempolicy_home_node
/// (newer than every syscall the profile names), or 255 when getpid got something else.
fn new_syscall_errno(architectures: Value) -> i32 {
    let filter = filter(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "architectures": architectures,
        "syscalls": [{"names": ["exit", "exit_group"], "action": "SCMP_ACT_ALLOW"}],
    }));
    exited(run_filtered(filter, |_| {
        if syscall_errno(libc::SYS_getpid) != libc::EPERM {
            return 255;
        }
        syscall_errno(libc::SYS_set_mempolicy_home_node)
    }))
}

#[test]
fn syscalls_newer_than_the_profile_fail_with_enosys_as_in_runc() {
    let all = json!(["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]);
    assert_eq!(new_syscall_errno(all), libc::ENOSYS);
    assert_eq!(new_syscall_errno(json!(["SCMP_ARCH_X86_64"])), libc::ENOSYS);
}

/// runc 1.2+ (runc 1.1 left such profiles without the stub, so glibc's clone3 got EPERM).
#[test]
fn the_native_architecture_gets_the_enosys_stub_even_when_not_listed() {
    assert_eq!(new_syscall_errno(json!([])), libc::ENOSYS);
    assert_eq!(new_syscall_errno(json!(["SCMP_ARCH_NATIVE"])), libc::ENOSYS);
    assert_eq!(new_syscall_errno(json!(["SCMP_ARCH_X86"])), libc::ENOSYS);
}

/// Receives the hand-off message on `listener`: the ContainerProcessState and the fd.
fn receive_notify_fd(listener: &UnixListener) -> (ContainerProcessState, OwnedFd) {
    let (stream, _) = listener.accept().expect("accept");
    let mut data = vec![0u8; 64 * 1024];
    let mut cmsg = nix::cmsg_space!([std::os::fd::RawFd; 1]);
    let mut iov = [std::io::IoSliceMut::new(&mut data)];
    let msg = recvmsg::<()>(
        stream.as_raw_fd(),
        &mut iov,
        Some(&mut cmsg),
        MsgFlags::empty(),
    )
    .expect("recvmsg");
    let Some(ControlMessageOwned::ScmRights(fds)) = msg.cmsgs().expect("cmsgs").next() else {
        panic!("no SCM_RIGHTS in the hand-off message");
    };
    let len = msg.bytes;
    // SAFETY: SCM_RIGHTS installed this fd in our table; nothing else owns it.
    let fd = unsafe { OwnedFd::from_raw_fd(fds[0]) };
    let state = serde_json::from_slice(&data[..len]).expect("state JSON");
    (state, fd)
}

#[test]
fn notify_hands_the_fd_to_the_listener_which_answers_the_syscall() {
    let dir = std::env::temp_dir().join(format!("berth-seccomp-notify-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let socket_path: PathBuf = dir.join("listener.sock");
    let _ = std::fs::remove_file(&socket_path);
    let listener = UnixListener::bind(&socket_path).expect("bind listener");

    let filter = filter(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "listenerPath": socket_path,
        "flags": ["SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"],
        "syscalls": [{"names": ["getppid"], "action": "SCMP_ACT_NOTIFY"}],
    }));
    assert!(filter.needs_notify());
    let state = json!({
        "ociVersion": "1.3.0", "id": "seccomp-notify-test", "status": "creating",
        "pid": 1234, "bundle": "/bundle",
    });

    // SAFETY: as in run_filtered; the child makes syscalls, sends one message and exits.
    let child = match unsafe { fork() }.expect("fork") {
        ForkResult::Child => {
            // SAFETY: sets the child's own no_new_privs bit.
            unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
            let code = match filter.load() {
                Ok(Some(fd)) => {
                    let sent =
                        super::send_notify_fd(&socket_path, fd.as_fd(), 4321, &state, Some("meta"));
                    // Our copy would keep the listener alive: were the agent to die, the
                    // trapped syscall below must fail (ENOSYS) rather than wait forever.
                    drop(fd);
                    match sent {
                        // SAFETY: getppid has no side effects; the agent answers it.
                        Ok(()) => unsafe { libc::syscall(libc::SYS_getppid) as i32 },
                        Err(_) => 101,
                    }
                }
                _ => LOAD_FAILED,
            };
            // SAFETY: leaves the forked child without running the parent's destructors.
            unsafe { libc::_exit(code) }
        }
        ForkResult::Parent { child } => child,
    };

    let (process_state, notify_fd) = receive_notify_fd(&listener);
    assert_eq!(process_state.fds(), &vec!["seccompFd".to_owned()]);
    assert_eq!(process_state.metadata().as_deref(), Some("meta"));
    assert_eq!(process_state.pid(), &4321);
    assert_eq!(process_state.state().pid(), &Some(1234));
    assert_eq!(process_state.state().id(), "seccomp-notify-test");
    assert_eq!(process_state.version(), "1.3.0");

    let request = ScmpNotifReq::receive(notify_fd.as_raw_fd()).expect("notification");
    assert_eq!(request.pid, child.as_raw() as u32);
    let getppid = ScmpSyscall::from_name_by_arch("getppid", ScmpArch::native()).expect("getppid");
    assert_eq!(request.data.syscall, getppid);
    ScmpNotifResp::new_val(request.id, 77, ScmpNotifRespFlags::empty())
        .respond(notify_fd.as_raw_fd())
        .expect("respond");

    assert_eq!(exited(waitpid(child, None).expect("waitpid")), 77);
    std::fs::remove_dir_all(&dir).expect("remove temp dir");
}

/// A profile the size of Docker's default: every syscall this libseccomp knows for the
/// native arch allowed by name (Docker lists ~350), ERRNO by default, three archs, and
/// argument rules like Docker's for personality and clone.
fn docker_sized_profile() -> Value {
    let names: Vec<String> = (0..512)
        .filter_map(|nr| {
            ScmpSyscall::from(nr)
                .get_name_by_arch(ScmpArch::native())
                .ok()
        })
        .filter(|name| !["personality", "clone"].contains(&name.as_str()))
        .collect();
    let personality: Vec<Value> = [0u64, 8, 0x20000, 0x20008, 0xffffffff]
        .iter()
        .map(|value| {
            json!({"names": ["personality"], "action": "SCMP_ACT_ALLOW",
                            "args": [{"index": 0, "value": value, "op": "SCMP_CMP_EQ"}]})
        })
        .collect();
    let mut syscalls = vec![json!({"names": names, "action": "SCMP_ACT_ALLOW"})];
    syscalls.extend(personality);
    syscalls.push(
        json!({"names": ["clone"], "action": "SCMP_ACT_ALLOW", "args": [
        {"index": 0, "value": 2114060288u64, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}]}),
    );
    json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": 1,
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": syscalls,
    })
}

/// Time to get a filter with `get` and load it, measured in a forked child as the init does it.
fn time_in_child(get: impl FnOnce() -> anyhow::Result<Filter>) -> Duration {
    let (tx, rx) = std::os::unix::net::UnixDatagram::pair().expect("socketpair");
    // SAFETY: the child compiles, loads, reports one datagram and exits.
    let status = match unsafe { fork() }.expect("fork") {
        ForkResult::Child => {
            let started = Instant::now();
            // SAFETY: sets the child's own no_new_privs bit.
            unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
            let loaded = get().and_then(Filter::load);
            let micros = started.elapsed().as_micros() as u64;
            let code = match (loaded, tx.send(&micros.to_ne_bytes())) {
                (Ok(_), Ok(_)) => 0,
                _ => LOAD_FAILED,
            };
            // SAFETY: leaves the forked child without running the parent's destructors.
            unsafe { libc::_exit(code) }
        }
        ForkResult::Parent { child } => waitpid(child, None).expect("waitpid"),
    };
    assert_eq!(exited(status), 0);
    let mut micros = [0u8; 8];
    rx.recv(&mut micros).expect("timing");
    Duration::from_micros(u64::from_ne_bytes(micros))
}

#[test]
fn docker_sized_profile_compiles_and_loads_within_budget() {
    let config: LinuxSeccomp = serde_json::from_value(docker_sized_profile()).expect("profile");
    let names: usize = config
        .syscalls()
        .iter()
        .flatten()
        .map(|rule| rule.names().len())
        .sum();
    assert!(names > 300, "profile has only {names} names");
    let cache = std::env::temp_dir().join(format!("berth-seccomp-cost-{}", std::process::id()));
    let cold = time_in_child(|| super::compile_cached(&config, &cache));
    let warm = time_in_child(|| super::compile_cached(&config, &cache));
    std::fs::remove_dir_all(&cache).expect("remove cache");
    eprintln!(
        "docker-sized seccomp profile ({names} names): compile+load {cold:?}, from cache {warm:?}"
    );
    assert!(
        cold < Duration::from_millis(300),
        "compile+load took {cold:?}"
    );
    assert!(
        warm < cold,
        "a cache hit ({warm:?}) is no faster than compiling ({cold:?})"
    );
}

#[test]
fn unreachable_listener_is_an_error_naming_it() {
    let state = json!({"pid": 1});
    let fd = std::fs::File::open("/dev/null").expect("/dev/null");
    let path = std::path::Path::new("/nonexistent/berth-listener.sock");
    let err = super::send_notify_fd(path, fd.as_fd(), 1, &state, None).expect_err("no listener");
    assert!(
        format!("{err:#}").contains("/nonexistent/berth-listener.sock"),
        "{err:#}"
    );
}
