//! `linux.seccomp` end to end: every action and operator seen from a busybox process, the
//! notify hand-off to a listener that answers the trapped syscall, validation errors and
//! `features`. Pass with runc too (`BERTH_BIN=/usr/sbin/runc`).

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::thread::JoinHandle;

use libseccomp::{ScmpNotifReq, ScmpNotifResp, ScmpNotifRespFlags};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};
use oci_spec::runtime::{Hooks, LinuxSeccomp};
use serde_json::{Value, json};

use crate::common::{COMMAND_TIMEOUT, Container, Output, is_berth, process_mut, runtime, set_args};

/// SIGSYS as the harness reports a killed process: 128 + signal.
const KILLED_BY_SIGSYS: i32 = 128 + libc::SIGSYS;

fn with_seccomp(seccomp: Value) -> Container {
    let seccomp: LinuxSeccomp = serde_json::from_value(seccomp).expect("seccomp config");
    let mut container = Container::new();
    container.configure(|spec| {
        let linux = spec.linux_mut().as_mut().expect("default config has linux");
        linux.set_seccomp(Some(seccomp));
    });
    container
}

/// Runs `script` under a default-allow profile with `rules`.
fn run_under(rules: Value, script: &str) -> Output {
    let mut container = with_seccomp(json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": rules}));
    container.run_args(&["sh", "-c", script])
}

fn mkdir_rule(action: &str, errno: Option<u32>) -> Value {
    json!([{"names": ["mkdir", "mkdirat"], "action": action, "errnoRet": errno}])
}

#[test]
fn errno_rule_fails_the_syscall_with_errno_ret() {
    let output = run_under(
        mkdir_rule("SCMP_ACT_ERRNO", Some(36)),
        "mkdir /dev/seccomp-test",
    );
    assert!(output.stderr.contains("File name too long"), "{output}");
    let output = run_under(
        mkdir_rule("SCMP_ACT_ERRNO", None),
        "mkdir /dev/seccomp-test",
    );
    assert!(
        output.stderr.contains("Operation not permitted"),
        "{output}"
    );
}

#[test]
fn kill_and_trap_actions_kill_the_process_with_sigsys() {
    for action in [
        "SCMP_ACT_KILL",
        "SCMP_ACT_KILL_THREAD",
        "SCMP_ACT_KILL_PROCESS",
        "SCMP_ACT_TRAP",
    ] {
        let output = run_under(mkdir_rule(action, None), "mkdir /dev/seccomp-test");
        assert_eq!(output.code, KILLED_BY_SIGSYS, "{action}:\n{output}");
    }
}

#[test]
fn trace_without_a_tracer_fails_with_enosys() {
    let output = run_under(
        mkdir_rule("SCMP_ACT_TRACE", Some(1)),
        "mkdir /dev/seccomp-test",
    );
    assert!(
        output.stderr.contains("Function not implemented"),
        "{output}"
    );
}

#[test]
fn log_and_allow_rules_let_the_syscall_run() {
    for action in ["SCMP_ACT_LOG", "SCMP_ACT_ALLOW"] {
        let mut container = with_seccomp(json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "defaultErrnoRet": 36,
            "syscalls": [{"names": allowed_syscalls(), "action": "SCMP_ACT_ALLOW"},
                         {"names": ["mkdir", "mkdirat"], "action": action}],
        }));
        let output = container.run_args(&["sh", "-c", "mkdir /dev/seccomp-test && echo made"]);
        assert_eq!(output.stdout, "made\n", "{action}:\n{output}");
    }
}

#[test]
fn default_action_applies_default_errno_ret_to_unlisted_syscalls() {
    let mut container = with_seccomp(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": 36,
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": [{"names": allowed_syscalls(), "action": "SCMP_ACT_ALLOW"}],
    }));
    let output = container.run_args(&["sh", "-c", "mkdir /dev/seccomp-test"]);
    assert!(output.stderr.contains("File name too long"), "{output}");
}

/// Every syscall this libseccomp knows on x86_64 except mkdir and mkdirat: an allow-list
/// the size of Docker's default profile.
fn allowed_syscalls() -> Vec<String> {
    known_syscalls_except(&["mkdir", "mkdirat"])
}

fn known_syscalls_except(left_out: &[&str]) -> Vec<String> {
    let native = libseccomp::ScmpArch::native();
    (0..512)
        .filter_map(|nr| {
            libseccomp::ScmpSyscall::from(nr)
                .get_name_by_arch(native)
                .ok()
        })
        .filter(|name| !left_out.contains(&name.as_str()))
        .collect()
}

/// Sends signals 0, 18 and 28 to the shell itself (busybox's kill: kill(2) with the signal
/// as argument 1) under a rule refusing kill when `arg1 <op> value [valueTwo]`; returns
/// which of them were refused, e.g. "0 28 ".
fn refused_signals(op: &str, value: u64, value_two: u64) -> String {
    let rule = json!([{"names": ["kill"], "action": "SCMP_ACT_ERRNO", "args": [
        {"index": 1, "value": value, "valueTwo": value_two, "op": op}]}]);
    let script = "for s in 0 18 28; do kill -$s $$ 2>/dev/null || printf '%s ' $s; done";
    run_under(rule, script).success().stdout
}

#[test]
fn every_operator_matches_the_argument_as_specified() {
    assert_eq!(refused_signals("SCMP_CMP_EQ", 18, 0), "18 ");
    assert_eq!(refused_signals("SCMP_CMP_NE", 18, 0), "0 28 ");
    assert_eq!(refused_signals("SCMP_CMP_LT", 18, 0), "0 ");
    assert_eq!(refused_signals("SCMP_CMP_LE", 18, 0), "0 18 ");
    assert_eq!(refused_signals("SCMP_CMP_GT", 18, 0), "28 ");
    assert_eq!(refused_signals("SCMP_CMP_GE", 18, 0), "18 28 ");
    // value is the mask, valueTwo the masked value: (sig & 0b10100) == 0b10000 is 18 only.
    assert_eq!(
        refused_signals("SCMP_CMP_MASKED_EQ", 0b10100, 0b10000),
        "18 "
    );
}

#[test]
fn unknown_syscall_names_are_skipped() {
    let rules = json!([{"names": ["berth_no_such_syscall", "mkdir", "mkdirat"],
                        "action": "SCMP_ACT_ERRNO", "errnoRet": 36}]);
    let output = run_under(rules, "mkdir /dev/seccomp-test");
    assert!(output.stderr.contains("File name too long"), "{output}");
}

// runc deviates: 1.1.5 refuses every flag ("seccomp flags are not yet supported by runc").
#[test]
fn every_filter_flag_is_accepted() {
    let mut container = with_seccomp(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "flags": ["SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG",
                  "SECCOMP_FILTER_FLAG_SPEC_ALLOW"],
        "syscalls": mkdir_rule("SCMP_ACT_ERRNO", Some(36)),
    }));
    let output = container.run_args(&["sh", "-c", "mkdir /dev/seccomp-test"]);
    assert!(output.stderr.contains("File name too long"), "{output}");
}

#[test]
fn unknown_action_or_operator_is_an_error_naming_it() {
    for (field, bad) in [("action", "SCMP_ACT_BOGUS"), ("op", "SCMP_CMP_BOGUS")] {
        let container = with_seccomp(json!({"defaultAction": "SCMP_ACT_ALLOW"}));
        container.configure_json(|config| {
            let mut rule = json!({"names": ["kill"], "action": "SCMP_ACT_ERRNO",
                                  "args": [{"index": 1, "value": 1, "op": "SCMP_CMP_EQ"}]});
            match field {
                "action" => rule["action"] = bad.into(),
                _ => rule["args"][0]["op"] = bad.into(),
            }
            config["linux"]["seccomp"]["syscalls"] = json!([rule]);
        });
        let output = container.run().failure();
        assert!(output.stderr.contains(bad), "{output}");
        if is_berth() {
            assert!(
                output.stderr.contains("linux.seccomp.syscalls[0]"),
                "{output}"
            );
        }
    }
}

#[test]
fn features_list_every_action_operator_and_the_supported_flags() {
    let output = std::process::Command::new(runtime())
        .arg("features")
        .output()
        .expect("features");
    assert!(output.status.success(), "{output:?}");
    let features: Value = serde_json::from_slice(&output.stdout).expect("features JSON");
    let seccomp = &features["linux"]["seccomp"];
    assert_eq!(seccomp["enabled"], true, "{seccomp}");
    for action in [
        "SCMP_ACT_KILL",
        "SCMP_ACT_KILL_PROCESS",
        "SCMP_ACT_KILL_THREAD",
        "SCMP_ACT_TRAP",
        "SCMP_ACT_ERRNO",
        "SCMP_ACT_TRACE",
        "SCMP_ACT_ALLOW",
        "SCMP_ACT_LOG",
        "SCMP_ACT_NOTIFY",
    ] {
        assert!(
            contains(&seccomp["actions"], action),
            "{action} missing: {seccomp}"
        );
    }
    for op in [
        "SCMP_CMP_NE",
        "SCMP_CMP_LT",
        "SCMP_CMP_LE",
        "SCMP_CMP_EQ",
        "SCMP_CMP_GE",
        "SCMP_CMP_GT",
        "SCMP_CMP_MASKED_EQ",
    ] {
        assert!(
            contains(&seccomp["operators"], op),
            "{op} missing: {seccomp}"
        );
    }
    assert!(contains(&seccomp["archs"], "SCMP_ARCH_X86_64"), "{seccomp}");
    // runc deviates: 1.1.5 lists no flags at all.
    assert!(
        contains(&seccomp["supportedFlags"], "SECCOMP_FILTER_FLAG_LOG"),
        "{seccomp}"
    );
}

fn contains(list: &Value, item: &str) -> bool {
    list.as_array()
        .is_some_and(|list| list.iter().any(|v| v == item))
}

/// What the agent saw: the ContainerProcessState and the syscall it answered.
struct AgentReport {
    process_state: Value,
    answered: usize,
}

/// A seccomp agent on `socket`: takes the hand-off, then answers every notification with
/// EXDEV until the container is gone.
fn spawn_agent(socket: &Path) -> JoinHandle<AgentReport> {
    let listener = UnixListener::bind(socket).expect("bind the agent socket");
    std::thread::spawn(move || {
        let (process_state, notify_fd) = receive_hand_off(&listener);
        let mut answered = 0;
        while wait_readable(notify_fd.as_raw_fd()) {
            let Ok(request) = ScmpNotifReq::receive(notify_fd.as_raw_fd()) else {
                break;
            };
            ScmpNotifResp::new_error(request.id, -libc::EXDEV, ScmpNotifRespFlags::empty())
                .respond(notify_fd.as_raw_fd())
                .expect("answer the notification");
            answered += 1;
        }
        AgentReport {
            process_state,
            answered,
        }
    })
}

/// Waits (bounded) until `fd` is readable; false on timeout or hang-up.
fn wait_readable(fd: RawFd) -> bool {
    // SAFETY: `fd` stays open for the duration of the poll.
    let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    let mut fds = [PollFd::new(fd, PollFlags::POLLIN)];
    let timeout = PollTimeout::try_from(COMMAND_TIMEOUT).expect("timeout");
    matches!(poll(&mut fds, timeout), Ok(1))
        && fds[0]
            .revents()
            .is_some_and(|events| events.contains(PollFlags::POLLIN))
}

fn receive_hand_off(listener: &UnixListener) -> (Value, OwnedFd) {
    assert!(
        wait_readable(listener.as_raw_fd()),
        "the runtime never connected to the agent"
    );
    let (stream, _) = listener.accept().expect("accept the runtime");
    let mut data = vec![0u8; 64 * 1024];
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let mut iov = [std::io::IoSliceMut::new(&mut data)];
    let message = recvmsg::<()>(
        stream.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::empty(),
    )
    .expect("recvmsg from the runtime");
    let Some(ControlMessageOwned::ScmRights(fds)) = message.cmsgs().expect("cmsgs").next() else {
        panic!("the hand-off carried no fd");
    };
    let len = message.bytes;
    // SAFETY: SCM_RIGHTS installed this fd in our table; nothing else owns it.
    let notify_fd = unsafe { OwnedFd::from_raw_fd(fds[0]) };
    let process_state = serde_json::from_slice(&data[..len]).expect("ContainerProcessState JSON");
    (process_state, notify_fd)
}

#[test]
fn notify_hands_the_fd_to_the_agent_which_answers_the_syscall() {
    let mut container = Container::new();
    let socket = container.dir.join("agent.sock");
    let seccomp: LinuxSeccomp = serde_json::from_value(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "listenerPath": socket,
        "listenerMetadata": "berth-test-metadata",
        "syscalls": mkdir_rule("SCMP_ACT_NOTIFY", None),
    }))
    .expect("seccomp config");
    container.configure(|spec| {
        let linux = spec.linux_mut().as_mut().expect("default config has linux");
        linux.set_seccomp(Some(seccomp));
    });
    let agent = spawn_agent(&socket);
    let output = container.run_args(&["sh", "-c", "mkdir /dev/seccomp-test"]);
    let report = agent.join().expect("agent thread");
    assert!(
        output.stderr.contains("Invalid cross-device link"),
        "{output}"
    );
    assert!(report.answered >= 1);
    let state = &report.process_state;
    assert_eq!(state["fds"], json!(["seccompFd"]), "{state}");
    assert_eq!(state["metadata"], "berth-test-metadata", "{state}");
    assert_eq!(state["state"]["id"], container.id.as_str(), "{state}");
    assert!(state["pid"].as_i64().is_some_and(|pid| pid > 0), "{state}");
}

#[test]
fn exec_processes_are_filtered_too() {
    let rules = mkdir_rule("SCMP_ACT_ERRNO", Some(36));
    let mut container = with_seccomp(json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": rules}));
    container.start_sleeper();
    let output = container.exec(&[], &["mkdir", "/dev/seccomp-test"]);
    assert!(output.stderr.contains("File name too long"), "{output}");
    container.kill("KILL").success();
}

/// Runs, under `seccomp`, with noNewPrivileges false (Docker's and Kubernetes' default: the
/// filter is then loaded before the identity switch) and true, as root and as uid 1000: a
/// container with a startContainer hook (which runs under the filter), and an exec into it.
fn every_process_starts_under(seccomp: Value) {
    for no_new_privileges in [false, true] {
        for uid in [0, 1000] {
            let case = format!("noNewPrivileges {no_new_privileges}, uid {uid}");
            let mut container = with_seccomp(seccomp.clone());
            container.configure(|spec| {
                let process = process_mut(spec);
                process.set_no_new_privileges(Some(no_new_privileges));
                process.user_mut().set_uid(uid);
                process.user_mut().set_gid(uid);
                // A timeout: berth then waits on the hook with the filter in force.
                let hook = json!({"path": "/bin/true", "timeout": 30});
                let hook = serde_json::from_value(hook).expect("hook");
                let mut hooks = Hooks::default();
                hooks.set_start_container(Some(vec![hook]));
                spec.set_hooks(Some(hooks));
            });
            container.start_sleeper();
            let output = container.exec(&[], &["id", "-u"]);
            assert_eq!(output.stdout, format!("{uid}\n"), "{case}:\n{output}");
        }
    }
}

#[test]
fn start_container_hooks_run_under_the_filter_as_in_runc() {
    for no_new_privileges in [false, true] {
        let rules = mkdir_rule("SCMP_ACT_ERRNO", Some(36));
        let mut container =
            with_seccomp(json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": rules}));
        container.configure(|spec| {
            process_mut(spec).set_no_new_privileges(Some(no_new_privileges));
            set_args(spec, &["/bin/true"]);
            let hook = json!({"path": "/bin/sh", "args": ["sh", "-c", "mkdir /dev/shm/hooked"]});
            let mut hooks = Hooks::default();
            hooks.set_start_container(Some(vec![serde_json::from_value(hook).expect("hook")]));
            spec.set_hooks(Some(hooks));
        });
        let output = container.run().failure();
        let case = format!("noNewPrivileges {no_new_privileges}");
        assert!(
            output.stderr.contains("File name too long"),
            "{case}:\n{output}"
        );
    }
}

#[test]
fn a_profile_older_than_openat2_runs_every_process() {
    // Lists epoll_pwait2, newer than all five: they get the default action, EPERM, and not
    // the ENOSYS of the syscalls newer than every one the profile names.
    let old = [
        "openat2",
        "close_range",
        "faccessat2",
        "clone3",
        "pidfd_open",
    ];
    every_process_starts_under(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": [{"names": known_syscalls_except(&old), "action": "SCMP_ACT_ALLOW"}],
    }));
}

#[test]
fn dockers_profile_runs_every_process() {
    // Docker 20.10's default profile, as dockerd sent it in a config.json.
    let profile = include_str!("common/docker-seccomp.json");
    every_process_starts_under(serde_json::from_str(profile).expect("Docker's profile"));
}
