//! runc's -ENOSYS stub: under a non-permissive default action, a syscall newer than every
//! syscall the profile names fails with ENOSYS instead of the default action. A C library
//! probing a syscall that the profile predates (clone3, openat2, ...) then falls back to the
//! old one, as on a kernel without it, instead of failing with EPERM.
//!
//! The stub is prepended to libseccomp's program; for the native architecture and each one in
//! `linux.seccomp.architectures` (as in runc 1.2+) it compares the syscall number with the
//! highest one the profile names for that architecture.

use anyhow::{Context, Result};
use libc::sock_filter;
use libseccomp::{ScmpArch, ScmpSyscall};
use oci_spec::runtime::{Arch, LinuxSeccomp, LinuxSeccompAction};

use super::compile::scmp_arch;
use super::features::ARCHS;

/// Marks x32 syscall numbers on the x86_64 audit architecture.
const X32_SYSCALL_BIT: u32 = 0x4000_0000;
/// Offsets in `struct seccomp_data`.
const NR_OFFSET: u32 = 0;
const ARCH_OFFSET: u32 = 4;

/// The highest syscall numbers the profile names on one audit architecture (x86_64 carries
/// both the x86_64 and the x32 ABI).
struct Limits {
    audit_arch: u32,
    native: Option<u32>,
    x32: Option<u32>,
}

/// The stub to prepend, empty when the default action lets unknown syscalls through anyway.
pub(super) fn stub(config: &LinuxSeccomp) -> Result<Vec<sock_filter>> {
    let permissive = matches!(
        config.default_action(),
        LinuxSeccompAction::ScmpActAllow
            | LinuxSeccompAction::ScmpActLog
            | LinuxSeccompAction::ScmpActTrace
    );
    let enosys_already = config.default_action() == LinuxSeccompAction::ScmpActErrno
        && config.default_errno_ret() == Some(libc::ENOSYS as u32);
    if permissive || enosys_already {
        return Ok(Vec::new());
    }
    assemble(&limits(config)?)
}

/// The architectures the stub checks: those the profile lists, SCMP_ARCH_NATIVE as the one
/// it stands for, and the native one always (runc 1.2+: a profile without `architectures`
/// still filters the native arch, and glibc falls back from `clone3` only on ENOSYS).
fn stub_archs(config: &LinuxSeccomp) -> Result<Vec<Arch>> {
    let native = native_arch()?;
    let listed = config
        .architectures()
        .iter()
        .flatten()
        .map(|&arch| match arch {
            Arch::ScmpArchNative => native,
            arch => arch,
        });
    let mut archs = vec![native];
    for arch in listed {
        if !archs.contains(&arch) {
            archs.push(arch);
        }
    }
    Ok(archs)
}

fn native_arch() -> Result<Arch> {
    let native = ScmpArch::native();
    ARCHS
        .into_iter()
        .find(|&arch| scmp_arch(arch).is_ok_and(|arch| arch == native))
        .with_context(|| format!("no seccomp architecture name for the native {native:?}"))
}

fn limits(config: &LinuxSeccomp) -> Result<Vec<Limits>> {
    let mut limits: Vec<Limits> = Vec::new();
    for arch in stub_archs(config)? {
        // s390 multiplexes unknown syscalls through number 0 (runc special-cases it): it
        // keeps the plain default action.
        if matches!(arch, Arch::ScmpArchS390 | Arch::ScmpArchS390x) {
            continue;
        }
        let Some(last) = last_syscall(config, arch)? else {
            continue;
        };
        let is_x32 = arch == Arch::ScmpArchX32;
        // SCMP_ARCH_* values are the kernel's AUDIT_ARCH_* ones, except x32's made-up one.
        let audit_arch = if is_x32 { Arch::ScmpArchX86_64 } else { arch } as u32;
        let index = match limits.iter().position(|l| l.audit_arch == audit_arch) {
            Some(index) => index,
            None => {
                limits.push(Limits {
                    audit_arch,
                    native: None,
                    x32: None,
                });
                limits.len() - 1
            }
        };
        let entry = &mut limits[index];
        let slot = if is_x32 {
            &mut entry.x32
        } else {
            &mut entry.native
        };
        *slot = Some(last);
    }
    Ok(limits)
}

/// The highest number, on `arch`, of the syscalls named anywhere in the profile.
fn last_syscall(config: &LinuxSeccomp, arch: Arch) -> Result<Option<u32>> {
    let arch = scmp_arch(arch).context("linux.seccomp.architectures")?;
    let names = config
        .syscalls()
        .iter()
        .flatten()
        .flat_map(|rule| rule.names());
    Ok(names
        .filter_map(|name| ScmpSyscall::from_name_by_arch(name, arch).ok())
        // Negative numbers are libseccomp's pseudo-syscalls, absent on this arch.
        .filter_map(|syscall| u32::try_from(syscall.as_raw_syscall()).ok())
        .max())
}

/// A jump target while assembling; resolved to an offset once the stub's length is known.
#[derive(Clone, Copy)]
enum To {
    /// This many instructions further, from the next one.
    Skip(u8),
    /// The next architecture's check, or libseccomp's program after the last one.
    NextArch,
    Enosys,
    Filter,
}

struct Insn {
    code: u32,
    k: u32,
    jt: To,
    jf: To,
}

fn load(offset: u32) -> Insn {
    let code = libc::BPF_LD | libc::BPF_W | libc::BPF_ABS;
    Insn {
        code,
        k: offset,
        jt: To::Skip(0),
        jf: To::Skip(0),
    }
}

fn jump(op: u32, k: u32, jt: To, jf: To) -> Insn {
    Insn {
        code: libc::BPF_JMP | op | libc::BPF_K,
        k,
        jt,
        jf,
    }
}

/// Per architecture: check the arch, load the number, compare with the profile's last one.
/// Then `ret ERRNO(ENOSYS)`; libseccomp's program follows and checks the arch again itself.
fn assemble(limits: &[Limits]) -> Result<Vec<sock_filter>> {
    let blocks: Vec<Vec<Insn>> = limits.iter().filter_map(arch_check).collect();
    if blocks.is_empty() {
        return Ok(Vec::new());
    }
    let enosys = blocks.iter().map(Vec::len).sum::<usize>();
    let filter = enosys + 1;
    let mut program = Vec::with_capacity(filter);
    for block in &blocks {
        let next_arch = program.len() + block.len();
        let next_arch = if next_arch == enosys {
            filter
        } else {
            next_arch
        };
        for insn in block {
            let at = program.len();
            let offset = |to| {
                let target = match to {
                    To::Skip(n) => at + 1 + usize::from(n),
                    To::NextArch => next_arch,
                    To::Enosys => enosys,
                    To::Filter => filter,
                };
                u8::try_from(target - at - 1).context("the -ENOSYS stub outgrew BPF's jumps")
            };
            program.push(sock_filter {
                code: insn.code as u16,
                jt: offset(insn.jt)?,
                jf: offset(insn.jf)?,
                k: insn.k,
            });
        }
    }
    let ret_enosys = libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32;
    program.push(sock_filter {
        code: (libc::BPF_RET | libc::BPF_K) as u16,
        jt: 0,
        jf: 0,
        k: ret_enosys,
    });
    Ok(program)
}

/// The checks for one audit architecture; None when it has no limit to check.
fn arch_check(limit: &Limits) -> Option<Vec<Insn>> {
    let mut block = vec![
        load(ARCH_OFFSET),
        jump(libc::BPF_JEQ, limit.audit_arch, To::Skip(0), To::NextArch),
        load(NR_OFFSET),
    ];
    let above = |last| jump(libc::BPF_JGT, last, To::Enosys, To::Filter);
    let is_x86_64 = limit.audit_arch == Arch::ScmpArchX86_64 as u32;
    match (limit.native, limit.x32) {
        (Some(native), Some(x32)) => block.extend([
            jump(libc::BPF_JSET, X32_SYSCALL_BIT, To::Skip(1), To::Skip(0)),
            above(native),
            above(x32),
        ]),
        // On x86_64 an ABI the profile does not list is left to libseccomp's program.
        (Some(native), None) if is_x86_64 => block.extend([
            jump(libc::BPF_JSET, X32_SYSCALL_BIT, To::Filter, To::Skip(0)),
            above(native),
        ]),
        (Some(native), None) => block.push(above(native)),
        (None, Some(x32)) => block.extend([
            jump(libc::BPF_JSET, X32_SYSCALL_BIT, To::Skip(0), To::Filter),
            above(x32),
        ]),
        (None, None) => return None,
    }
    Some(block)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn config(default_action: &str, errno: u32) -> LinuxSeccomp {
        serde_json::from_value(json!({
            "defaultAction": default_action,
            "defaultErrnoRet": errno,
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X32", "SCMP_ARCH_X86"],
            "syscalls": [{"names": ["read", "exit_group"], "action": "SCMP_ACT_ALLOW"}],
        }))
        .expect("config")
    }

    #[test]
    fn permissive_or_enosys_defaults_need_no_stub() {
        for action in ["SCMP_ACT_ALLOW", "SCMP_ACT_LOG", "SCMP_ACT_TRACE"] {
            assert!(
                stub(&config(action, 1)).expect("stub").is_empty(),
                "{action}"
            );
        }
        let enosys = config("SCMP_ACT_ERRNO", libc::ENOSYS as u32);
        assert!(stub(&enosys).expect("stub").is_empty());
        assert!(!stub(&config("SCMP_ACT_KILL", 1)).expect("stub").is_empty());
    }

    #[test]
    fn x32_and_x86_64_share_one_audit_arch_with_their_own_limits() {
        let limits = limits(&config("SCMP_ACT_ERRNO", 1)).expect("limits");
        assert_eq!(limits.len(), 2);
        let x86_64 = &limits[0];
        assert_eq!(x86_64.audit_arch, Arch::ScmpArchX86_64 as u32);
        assert_eq!(x86_64.native, Some(libc::SYS_exit_group as u32));
        assert_eq!(
            x86_64.x32,
            Some(X32_SYSCALL_BIT | libc::SYS_exit_group as u32)
        );
        assert_eq!(limits[1].audit_arch, Arch::ScmpArchX86 as u32);
    }
}
