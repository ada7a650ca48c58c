//! Config → BPF, following runc's semantics for actions, errnoRet, args and skipped names.

use std::fs::File;
use std::io::{Read, Seek};
use std::os::fd::OwnedFd;

use anyhow::{Context, Result, anyhow, ensure};
use libc::{c_ulong, sock_filter};
use libseccomp::{
    ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall,
};
use nix::sys::memfd::{MFdFlags, memfd_create};
use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompFilterFlag,
    LinuxSeccompOperator, LinuxSyscall,
};

use super::{enosys, sys};

/// Linux syscalls take at most six arguments.
const MAX_SYSCALL_ARGS: usize = 6;
/// BPF_MAXINSNS: the kernel refuses longer programs.
const MAX_PROGRAM_LEN: usize = 4096;
/// Above this many rules libseccomp's binary-tree layout makes the filter cheaper to run.
/// runc uses the same threshold (libseccomp <= 2.5.4 misbehaves with it and zero rules).
const BINARY_TREE_MIN_RULES: usize = 32;
/// libseccomp's SCMP_FLTATR_CTL_OPTIMIZE value for the binary tree.
const OPTIMIZE_BINARY_TREE: u32 = 2;

/// Validated, ready-to-load filter. Plain memory (the BPF program and the seccomp(2) flags), so
/// it can be compiled before a fork and loaded after it.
#[derive(Debug)]
pub struct Filter {
    program: Vec<sock_filter>,
    flags: c_ulong,
}

impl Filter {
    /// Whether some rule uses SCMP_ACT_NOTIFY, so `load` returns a notify fd to hand to
    /// `linux.seccomp.listenerPath`.
    pub fn needs_notify(&self) -> bool {
        self.flags & libc::SECCOMP_FILTER_FLAG_NEW_LISTENER != 0
    }

    /// Installs the filter on the calling process; every syscall after this is filtered.
    /// The kernel allows this only when no_new_privs is set or the caller holds
    /// CAP_SYS_ADMIN (in its user namespace): with `noNewPrivileges: false`, call it before
    /// dropping capabilities. Returns the notify fd when `needs_notify()`.
    pub fn load(self) -> Result<Option<OwnedFd>> {
        sys::set_mode_filter(self.flags, &self.program).map_err(|err| {
            let hint = if err.raw_os_error() == Some(libc::EACCES) {
                " (needs no_new_privs or CAP_SYS_ADMIN)"
            } else {
                ""
            };
            anyhow!(
                "loading the seccomp filter ({} instructions, flags {:#x}){hint}: {err}",
                self.program.len(),
                self.flags
            )
        })
    }

    /// Flags (a native c_ulong), then the instructions as the kernel takes them.
    pub(super) fn to_bytes(&self) -> Vec<u8> {
        let mut bytes = self.flags.to_ne_bytes().to_vec();
        for insn in &self.program {
            bytes.extend(insn.code.to_ne_bytes());
            bytes.extend([insn.jt, insn.jf]);
            bytes.extend(insn.k.to_ne_bytes());
        }
        bytes
    }

    /// The inverse of `to_bytes`; None for anything it could not have written.
    pub(super) fn from_bytes(bytes: &[u8]) -> Option<Filter> {
        let (flags, program) = bytes.split_first_chunk::<{ size_of::<c_ulong>() }>()?;
        let flags = c_ulong::from_ne_bytes(*flags);
        let insn_size = size_of::<sock_filter>();
        let len = program.len() / insn_size;
        let well_formed = program.len() % insn_size == 0 && (1..=MAX_PROGRAM_LEN).contains(&len);
        well_formed.then(|| Filter {
            program: program
                .chunks_exact(insn_size)
                .map(decode_instruction)
                .collect(),
            flags,
        })
    }
}

/// Validates `linux.seccomp` and compiles it. Errors name the config field. Syscall names
/// unknown to this libseccomp are skipped, as runc does: profiles list newer syscalls.
/// (An unknown action, operator, arch or flag name never gets here: deserializing the
/// config already fails naming its JSON path.)
pub fn compile(config: &LinuxSeccomp) -> Result<Filter> {
    let default_action = scmp_action(config.default_action(), config.default_errno_ret())
        .context("linux.seccomp.defaultErrnoRet")?;
    // Every syscall of the init would wait for an agent that has not got the fd yet.
    ensure!(
        default_action != ScmpAction::Notify,
        "linux.seccomp.defaultAction: SCMP_ACT_NOTIFY cannot be the default action"
    );
    let mut ctx = ScmpFilterContext::new(default_action).context("creating a seccomp filter")?;
    for (i, arch) in config.architectures().iter().flatten().enumerate() {
        let added = scmp_arch(*arch).and_then(|arch| Ok(ctx.add_arch(arch)?));
        added.with_context(|| format!("linux.seccomp.architectures[{i}]: {arch}"))?;
    }
    let syscalls = config.syscalls().as_deref().unwrap_or_default();
    let needs_notify = check_notify(config, syscalls)?;
    if syscalls.len() > BINARY_TREE_MIN_RULES {
        ctx.set_ctl_optimize(OPTIMIZE_BINARY_TREE)
            .context("enabling libseccomp's binary tree optimization")?;
    }
    for (i, rule) in syscalls.iter().enumerate() {
        add_rule(&mut ctx, rule, default_action)
            .with_context(|| format!("linux.seccomp.syscalls[{i}]"))?;
    }
    let mut program = enosys::stub(config)?;
    program.extend(export_program(&ctx)?);
    ensure!(
        program.len() <= MAX_PROGRAM_LEN,
        "linux.seccomp: the filter compiles to {} BPF instructions, the kernel takes at most {MAX_PROGRAM_LEN}",
        program.len()
    );
    let mut flags = 0;
    if needs_notify {
        flags |= libc::SECCOMP_FILTER_FLAG_NEW_LISTENER;
    }
    for flag in config.flags().iter().flatten() {
        flags |= flag_bits(*flag, needs_notify);
    }
    Ok(Filter { program, flags })
}

/// Whether some rule notifies, and if so that the agent can be reached and the init can
/// still report to its parent (both as runc requires).
fn check_notify(config: &LinuxSeccomp, syscalls: &[LinuxSyscall]) -> Result<bool> {
    let mut notifying = syscalls
        .iter()
        .enumerate()
        .filter(|(_, rule)| rule.action() == LinuxSeccompAction::ScmpActNotify)
        .peekable();
    let Some((first, _)) = notifying.peek() else {
        return Ok(false);
    };
    ensure!(
        config.listener_path().is_some(),
        "linux.seccomp.listenerPath: not set, but linux.seccomp.syscalls[{first}] uses SCMP_ACT_NOTIFY"
    );
    // The init writes to its parent after loading the filter; a notified write would wait
    // for an agent that has not been given the fd yet.
    if let Some((i, _)) =
        notifying.find(|(_, rule)| rule.names().iter().any(|name| name == "write"))
    {
        anyhow::bail!(
            "linux.seccomp.syscalls[{i}]: SCMP_ACT_NOTIFY cannot be used for the write syscall"
        );
    }
    Ok(true)
}

/// The seccomp(2) bits for a config flag.
pub(super) fn flag_bits(flag: LinuxSeccompFilterFlag, needs_notify: bool) -> c_ulong {
    match flag {
        LinuxSeccompFilterFlag::SeccompFilterFlagLog => libc::SECCOMP_FILTER_FLAG_LOG,
        LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW,
        // TSYNC_ESRCH makes a failed sync an error instead of a positive thread id, and the
        // kernel requires it next to NEW_LISTENER. (The init is single-threaded anyway.)
        LinuxSeccompFilterFlag::SeccompFilterFlagTsync => {
            libc::SECCOMP_FILTER_FLAG_TSYNC | libc::SECCOMP_FILTER_FLAG_TSYNC_ESRCH
        }
        // The kernel takes it only with a listener; without one there is no notification
        // wait to make killable, so it is dropped (as libseccomp does).
        LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv if needs_notify => {
            libc::SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV
        }
        LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv => 0,
    }
}

/// Converts an action; `errno_ret` is the return data of ERRNO and TRACE (EPERM when
/// absent, as in runc) and is ignored by the other actions.
fn scmp_action(action: LinuxSeccompAction, errno_ret: Option<u32>) -> Result<ScmpAction> {
    Ok(match action {
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => {
            ScmpAction::KillThread
        }
        LinuxSeccompAction::ScmpActKillProcess => ScmpAction::KillProcess,
        LinuxSeccompAction::ScmpActTrap => ScmpAction::Trap,
        LinuxSeccompAction::ScmpActErrno => ScmpAction::Errno(return_data(errno_ret)?.into()),
        LinuxSeccompAction::ScmpActTrace => ScmpAction::Trace(return_data(errno_ret)?),
        LinuxSeccompAction::ScmpActLog => ScmpAction::Log,
        LinuxSeccompAction::ScmpActAllow => ScmpAction::Allow,
        LinuxSeccompAction::ScmpActNotify => ScmpAction::Notify,
    })
}

fn return_data(errno_ret: Option<u32>) -> Result<u16> {
    let Some(value) = errno_ret else {
        return Ok(libc::EPERM as u16);
    };
    u16::try_from(value).map_err(|_| anyhow!("{value} does not fit seccomp's 16-bit return data"))
}

pub(super) fn scmp_arch(arch: Arch) -> Result<ScmpArch> {
    // Both crates spell architectures as libseccomp's SCMP_ARCH_* names.
    Ok(arch.to_string().parse()?)
}

fn add_rule(
    ctx: &mut ScmpFilterContext,
    rule: &LinuxSyscall,
    default_action: ScmpAction,
) -> Result<()> {
    let action = scmp_action(rule.action(), rule.errno_ret()).context("errnoRet")?;
    let args = rule.args().as_deref().unwrap_or_default();
    let conditions = args
        .iter()
        .enumerate()
        .map(|(j, arg)| condition(arg).with_context(|| format!("args[{j}]")))
        .collect::<Result<Vec<_>>>()?;
    // libseccomp refuses a rule that repeats the default action; it would change nothing.
    if action == default_action {
        return Ok(());
    }
    let rule_conditions = split_conditions(args, &conditions);
    for (k, name) in rule.names().iter().enumerate() {
        ensure!(!name.is_empty(), "names[{k}]: empty syscall name");
        let Ok(syscall) = ScmpSyscall::from_name(name) else {
            continue;
        };
        for conditions in &rule_conditions {
            ctx.add_rule_conditional(action, syscall, conditions)
                .with_context(|| format!("adding the rule for syscall {name}"))?;
        }
    }
    Ok(())
}

/// runc's semantics: conditions on distinct arguments are ANDed in one rule, but when an
/// argument index repeats, each condition becomes a rule of its own (ORed), since
/// libseccomp cannot compare one argument twice in a rule.
fn split_conditions<'a>(
    args: &[LinuxSeccompArg],
    conditions: &'a [ScmpArgCompare],
) -> Vec<&'a [ScmpArgCompare]> {
    let mut seen = [false; MAX_SYSCALL_ARGS];
    let index_repeats = args.iter().any(|arg| {
        seen.get_mut(arg.index())
            .is_some_and(|seen| std::mem::replace(seen, true))
    });
    if index_repeats {
        conditions.chunks(1).collect()
    } else {
        vec![conditions]
    }
}

/// Converts one argument comparison. For SCMP_CMP_MASKED_EQ, `value` is the mask and
/// `valueTwo` the expected masked value (libseccomp's datum_a and datum_b, as runc passes them).
fn condition(arg: &LinuxSeccompArg) -> Result<ScmpArgCompare> {
    let index = arg.index();
    ensure!(
        index < MAX_SYSCALL_ARGS,
        "index: {index} is out of range, syscalls have arguments 0 to {}",
        MAX_SYSCALL_ARGS - 1
    );
    let (op, datum) = match arg.op() {
        LinuxSeccompOperator::ScmpCmpNe => (ScmpCompareOp::NotEqual, arg.value()),
        LinuxSeccompOperator::ScmpCmpLt => (ScmpCompareOp::Less, arg.value()),
        LinuxSeccompOperator::ScmpCmpLe => (ScmpCompareOp::LessOrEqual, arg.value()),
        LinuxSeccompOperator::ScmpCmpEq => (ScmpCompareOp::Equal, arg.value()),
        LinuxSeccompOperator::ScmpCmpGe => (ScmpCompareOp::GreaterEqual, arg.value()),
        LinuxSeccompOperator::ScmpCmpGt => (ScmpCompareOp::Greater, arg.value()),
        LinuxSeccompOperator::ScmpCmpMaskedEq => (
            ScmpCompareOp::MaskedEqual(arg.value()),
            arg.value_two().unwrap_or_default(),
        ),
    };
    // The index is below MAX_SYSCALL_ARGS, so it fits.
    Ok(ScmpArgCompare::new(index as u32, op, datum))
}

/// libseccomp writes the program to an fd; a memfd avoids a pipe's size limit.
fn export_program(ctx: &ScmpFilterContext) -> Result<Vec<sock_filter>> {
    let memfd = memfd_create(c"berth-seccomp", MFdFlags::MFD_CLOEXEC)
        .context("creating a memfd for the seccomp program")?;
    ctx.export_bpf(&memfd)
        .context("exporting the seccomp program")?;
    let mut file = File::from(memfd);
    let mut bytes = Vec::new();
    file.rewind()
        .and_then(|()| file.read_to_end(&mut bytes))
        .context("reading back the seccomp program")?;
    Ok(bytes
        .chunks_exact(size_of::<sock_filter>())
        .map(decode_instruction)
        .collect())
}

/// Decodes one `struct sock_filter` as libseccomp wrote it (native endianness).
fn decode_instruction(raw: &[u8]) -> sock_filter {
    sock_filter {
        code: u16::from_ne_bytes([raw[0], raw[1]]),
        jt: raw[2],
        jf: raw[3],
        k: u32::from_ne_bytes([raw[4], raw[5], raw[6], raw[7]]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn compile_json(config: Value) -> Result<Filter> {
        compile(&serde_json::from_value(config).expect("config deserializes"))
    }

    fn error_of(config: Value) -> String {
        format!("{:#}", compile_json(config).expect_err("config is refused"))
    }

    #[test]
    fn unknown_action_or_operator_fails_deserialization_naming_path_and_value() {
        for (field, bad) in [("action", "SCMP_ACT_BOGUS"), ("op", "SCMP_CMP_BOGUS")] {
            let mut rule = json!({"names": ["getppid"], "action": "SCMP_ACT_ERRNO",
                                  "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"}]});
            if field == "action" {
                rule["action"] = json!(bad);
            } else {
                rule["args"][0]["op"] = json!(bad);
            }
            let config = json!({"linux": {"seccomp": {"defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW"}, rule]}}});
            let err = serde_path_to_error::deserialize::<_, oci_spec::runtime::Spec>(config)
                .expect_err("bad value refused");
            let message = err.to_string();
            assert!(message.contains("linux.seccomp.syscalls[1]"), "{message}");
            assert!(message.contains(bad), "{message}");
        }
    }

    #[test]
    fn notify_as_default_action_is_refused() {
        let err = error_of(json!({"defaultAction": "SCMP_ACT_NOTIFY"}));
        assert!(err.contains("linux.seccomp.defaultAction"), "{err}");
    }

    #[test]
    fn errno_ret_beyond_16_bits_is_refused_naming_the_field() {
        let err = error_of(json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
            {"names": ["getppid"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 70000}]}));
        assert!(err.contains("linux.seccomp.syscalls[1]: errnoRet"), "{err}");
        let err = error_of(json!({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 70000}));
        assert!(err.contains("linux.seccomp.defaultErrnoRet"), "{err}");
    }

    #[test]
    fn argument_index_beyond_five_is_refused_naming_the_arg() {
        let err = error_of(json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
            {"names": ["getppid"], "action": "SCMP_ACT_ERRNO", "args": [
                {"index": 0, "value": 1, "op": "SCMP_CMP_EQ"},
                {"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}]}]}));
        assert!(
            err.contains("linux.seccomp.syscalls[0]: args[1]: index: 6"),
            "{err}"
        );
    }

    #[test]
    fn empty_syscall_name_is_refused() {
        let err = error_of(json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
            {"names": ["getppid", ""], "action": "SCMP_ACT_ERRNO"}]}));
        assert!(err.contains("linux.seccomp.syscalls[0]: names[1]"), "{err}");
    }

    #[test]
    fn unknown_syscall_names_are_skipped() {
        let filter = compile_json(json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
            {"names": ["berth_no_such_syscall"], "action": "SCMP_ACT_ERRNO"}]}));
        assert!(filter.is_ok(), "{filter:?}");
    }

    #[test]
    fn rule_repeating_the_default_action_is_dropped() {
        let filter = compile_json(json!({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
            {"names": ["getppid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]}));
        assert!(filter.is_ok(), "{filter:?}");
    }

    #[test]
    fn notify_rule_requests_a_listener_and_allows_wait_killable_recv() {
        let filter = compile_json(json!({"defaultAction": "SCMP_ACT_ALLOW",
            "listenerPath": "/run/agent.sock",
            "flags": ["SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"],
            "syscalls": [{"names": ["getppid"], "action": "SCMP_ACT_NOTIFY"}]}))
        .expect("compiles");
        assert!(filter.needs_notify());
        assert_ne!(
            filter.flags & libc::SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV,
            0
        );
    }

    #[test]
    fn notify_needs_a_listener_path() {
        let err = error_of(json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
            {"names": ["getppid"], "action": "SCMP_ACT_ERRNO"},
            {"names": ["getpid"], "action": "SCMP_ACT_NOTIFY"}]}));
        assert!(err.contains("linux.seccomp.listenerPath"), "{err}");
        assert!(err.contains("syscalls[1]"), "{err}");
    }

    #[test]
    fn notify_on_write_is_refused_as_runc_does() {
        let err = error_of(json!({"defaultAction": "SCMP_ACT_ALLOW",
            "listenerPath": "/run/agent.sock", "syscalls": [
            {"names": ["getppid"], "action": "SCMP_ACT_NOTIFY"},
            {"names": ["read", "write"], "action": "SCMP_ACT_NOTIFY"}]}));
        assert!(err.contains("linux.seccomp.syscalls[1]"), "{err}");
        assert!(err.contains("write"), "{err}");
    }

    #[test]
    fn wait_killable_recv_without_listener_is_dropped() {
        let filter = compile_json(json!({"defaultAction": "SCMP_ACT_ALLOW",
            "flags": ["SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV", "SECCOMP_FILTER_FLAG_LOG"]}))
        .expect("compiles");
        assert!(!filter.needs_notify());
        assert_eq!(filter.flags, libc::SECCOMP_FILTER_FLAG_LOG);
    }

    #[test]
    fn every_config_architecture_has_a_libseccomp_name() {
        for arch in super::super::features::ARCHS {
            assert!(scmp_arch(arch).is_ok(), "{arch}");
        }
    }
}
