//! cgroup v2 device control: a BPF_PROG_TYPE_CGROUP_DEVICE program built from the spec's device
//! rules (the last matching rule decides; nothing matches = deny, as runc does), and the bpf(2)
//! calls that load it and swap it in for the cgroup's previous program.

use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};

use anyhow::{Context, Result};
use oci_spec::runtime::LinuxDeviceCgroup;

use super::convert::{DeviceClass, device_access, device_class};

/// One eBPF instruction (struct bpf_insn).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Insn {
    code: u8,
    /// dst register in the low nibble, src register in the high nibble.
    regs: u8,
    off: i16,
    imm: i32,
}

const LDX_W_MEM: u8 = 0x61; // dst = *(u32 *)(src + off)
const ALU32_AND_K: u8 = 0x54; // dst &= imm
const ALU32_RSH_K: u8 = 0x74; // dst >>= imm
const ALU32_MOV_X: u8 = 0xbc; // dst = src
const ALU64_MOV_K: u8 = 0xb7; // dst = imm
const JNE_K: u8 = 0x55; // if dst != imm: pc += off
const JNE_X: u8 = 0x5d; // if dst != src: pc += off
const EXIT: u8 = 0x95;

// struct bpf_cgroup_dev_ctx { u32 access_type /* access << 16 | type */; u32 major; u32 minor; }
const DEV_BLOCK: i32 = 1;
const DEV_CHAR: i32 = 2;
const ACC_MKNOD: i32 = 1;
const ACC_READ: i32 = 2;
const ACC_WRITE: i32 = 4;

// Registers after the prologue: the program's context arrives in r1.
const R_TYPE: u8 = 2;
const R_ACCESS: u8 = 3;
const R_MAJOR: u8 = 4;
const R_MINOR: u8 = 5;
const R_SCRATCH: u8 = 1;

fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: dst | (src << 4),
        off,
        imm,
    }
}

fn prologue() -> Vec<Insn> {
    vec![
        insn(LDX_W_MEM, R_TYPE, 1, 0, 0),
        insn(ALU32_AND_K, R_TYPE, 0, 0, 0xFFFF),
        insn(LDX_W_MEM, R_ACCESS, 1, 0, 0),
        insn(ALU32_RSH_K, R_ACCESS, 0, 0, 16),
        insn(LDX_W_MEM, R_MAJOR, 1, 4, 0),
        insn(LDX_W_MEM, R_MINOR, 1, 8, 0),
    ]
}

fn access_mask(access: &str) -> i32 {
    access.chars().fold(0, |mask, c| {
        mask | match c {
            'r' => ACC_READ,
            'w' => ACC_WRITE,
            _ => ACC_MKNOD,
        }
    })
}

/// The checks of one rule; each is a list of instructions whose last one jumps to the next rule
/// when the check fails (offsets are patched once the block's length is known).
fn rule_checks(rule: &LinuxDeviceCgroup) -> Result<Vec<Vec<Insn>>> {
    let mut checks = Vec::new();
    match device_class(rule)? {
        DeviceClass::All => {}
        DeviceClass::Block => checks.push(vec![insn(JNE_K, R_TYPE, 0, 0, DEV_BLOCK)]),
        DeviceClass::Char => checks.push(vec![insn(JNE_K, R_TYPE, 0, 0, DEV_CHAR)]),
    }
    let mask = access_mask(device_access(rule.access().as_deref())?);
    if mask != ACC_READ | ACC_WRITE | ACC_MKNOD {
        // Matches when every requested access bit is in the rule's set.
        checks.push(vec![
            insn(ALU32_MOV_X, R_SCRATCH, R_ACCESS, 0, 0),
            insn(ALU32_AND_K, R_SCRATCH, 0, 0, mask),
            insn(JNE_X, R_SCRATCH, R_ACCESS, 0, 0),
        ]);
    }
    for (number, reg) in [(rule.major(), R_MAJOR), (rule.minor(), R_MINOR)] {
        if let Some(n) = number.filter(|n| *n >= 0) {
            let n = i32::try_from(n)
                .with_context(|| format!("linux.resources.devices: number {n} is too large"))?;
            checks.push(vec![insn(JNE_K, reg, 0, 0, n)]);
        }
    }
    Ok(checks)
}

/// Builds the program. Rules are emitted last first, each returning on a match, so the last
/// matching rule in spec order decides; falling off the end denies.
pub fn device_program(rules: &[LinuxDeviceCgroup]) -> Result<Vec<Insn>> {
    let mut program = prologue();
    for rule in rules.iter().rev() {
        let checks = rule_checks(rule)?;
        let unconditional = checks.is_empty();
        let block_len: usize = checks.iter().map(Vec::len).sum::<usize>() + 2;
        let mut emitted = 0;
        for check in checks {
            emitted += check.len();
            let mut check = check;
            if let Some(jump) = check.last_mut() {
                // Skip the rest of this block: remaining checks plus "r0 = verdict; exit".
                jump.off = i16::try_from(block_len - emitted).context("device rule too long")?;
            }
            program.extend(check);
        }
        program.push(insn(ALU64_MOV_K, 0, 0, 0, i32::from(rule.allow())));
        program.push(insn(EXIT, 0, 0, 0, 0));
        if unconditional {
            // Rules before a catch-all can never be reached.
            return Ok(program);
        }
    }
    program.push(insn(ALU64_MOV_K, 0, 0, 0, 0));
    program.push(insn(EXIT, 0, 0, 0, 0));
    Ok(program)
}

const BPF_PROG_LOAD: libc::c_int = 5;
const BPF_PROG_ATTACH: libc::c_int = 8;
const BPF_PROG_DETACH: libc::c_int = 9;
const BPF_PROG_GET_FD_BY_ID: libc::c_int = 13;
const BPF_PROG_QUERY: libc::c_int = 16;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
const BPF_F_ALLOW_MULTI: u32 = 2;

#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
}

#[repr(C)]
#[derive(Default)]
struct ProgAttachAttr {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
}

#[repr(C)]
#[derive(Default)]
struct ProgQueryAttr {
    target_fd: u32,
    attach_type: u32,
    query_flags: u32,
    attach_flags: u32,
    prog_ids: u64,
    prog_cnt: u32,
}

#[repr(C)]
#[derive(Default)]
struct GetFdByIdAttr {
    prog_id: u32,
    next_id: u32,
    open_flags: u32,
}

/// bpf(2) with an attribute struct of the command's layout.
fn bpf<T>(cmd: libc::c_int, attr: &mut T, what: &str) -> Result<libc::c_long> {
    // SAFETY: attr is a live, initialised #[repr(C)] prefix of union bpf_attr for `cmd`, and the
    // size passed is its exact size, so the kernel reads and writes only within it (it treats the
    // missing tail as zero).
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut T,
            std::mem::size_of::<T>() as libc::c_uint,
        )
    };
    if ret < 0 {
        return Err(std::io::Error::last_os_error()).with_context(|| format!("bpf({what})"));
    }
    Ok(ret)
}

fn owned_fd(fd: libc::c_long, what: &str) -> Result<OwnedFd> {
    let fd = i32::try_from(fd).with_context(|| format!("bpf({what}) returned {fd}"))?;
    // SAFETY: bpf() just returned this new descriptor; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn load(program: &[Insn]) -> Result<OwnedFd> {
    let license = c"Apache";
    let mut attr = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
        insn_cnt: u32::try_from(program.len()).context("device program too long")?,
        insns: program.as_ptr() as u64,
        license: license.as_ptr() as u64,
        ..Default::default()
    };
    let fd = bpf(
        BPF_PROG_LOAD,
        &mut attr,
        "BPF_PROG_LOAD of the device program",
    )?;
    owned_fd(fd, "BPF_PROG_LOAD")
}

/// Ids of the device programs attached to the cgroup (up to 64; berth attaches one).
pub(super) fn attached(cgroup: &impl AsFd) -> Result<Vec<u32>> {
    let mut ids = [0u32; 64];
    let mut attr = ProgQueryAttr {
        target_fd: cgroup.as_fd().as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        prog_ids: ids.as_mut_ptr() as u64,
        prog_cnt: ids.len() as u32,
        ..Default::default()
    };
    bpf(BPF_PROG_QUERY, &mut attr, "BPF_PROG_QUERY")?;
    Ok(ids[..(attr.prog_cnt as usize).min(ids.len())].to_vec())
}

fn attach_or_detach(cmd: libc::c_int, cgroup: &impl AsFd, prog: &OwnedFd) -> Result<()> {
    let mut attr = ProgAttachAttr {
        target_fd: cgroup.as_fd().as_raw_fd() as u32,
        attach_bpf_fd: prog.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: if cmd == BPF_PROG_ATTACH {
            BPF_F_ALLOW_MULTI
        } else {
            0
        },
    };
    let what = if cmd == BPF_PROG_ATTACH {
        "BPF_PROG_ATTACH"
    } else {
        "BPF_PROG_DETACH"
    };
    bpf(cmd, &mut attr, what).map(drop)
}

/// Installs `program` (from [`device_program`]) on the cgroup open as `cgroup` (a directory fd), replacing
/// what was there. The new program is attached before the old ones go, and attached programs
/// must all allow an access, so no moment is less strict than either rule set.
pub fn install(cgroup: &impl AsFd, program: &[Insn]) -> Result<()> {
    let old = attached(cgroup)?;
    let new = load(program)?;
    attach_or_detach(BPF_PROG_ATTACH, cgroup, &new)?;
    for id in old {
        let mut attr = GetFdByIdAttr {
            prog_id: id,
            ..Default::default()
        };
        let fd = bpf(BPF_PROG_GET_FD_BY_ID, &mut attr, "BPF_PROG_GET_FD_BY_ID")?;
        attach_or_detach(
            BPF_PROG_DETACH,
            cgroup,
            &owned_fd(fd, "BPF_PROG_GET_FD_BY_ID")?,
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::{LinuxDeviceCgroupBuilder, LinuxDeviceType};

    /// Runs a program built by `device_program` (only the opcodes it emits).
    fn run(program: &[Insn], dev_type: i32, access: i32, major: u32, minor: u32) -> u64 {
        let ctx = [((access as u32) << 16) | dev_type as u32, major, minor];
        let mut regs = [0u64; 11];
        let mut pc = 0usize;
        loop {
            let i = program[pc];
            let (dst, src) = ((i.regs & 0xf) as usize, (i.regs >> 4) as usize);
            pc += 1;
            match i.code {
                LDX_W_MEM => regs[dst] = u64::from(ctx[i.off as usize / 4]),
                ALU32_AND_K => regs[dst] = (regs[dst] as u32 & i.imm as u32) as u64,
                ALU32_RSH_K => regs[dst] = ((regs[dst] as u32) >> i.imm) as u64,
                ALU32_MOV_X => regs[dst] = regs[src] as u32 as u64,
                ALU64_MOV_K => regs[dst] = i.imm as i64 as u64,
                JNE_K if regs[dst] != i.imm as u32 as u64 => pc += i.off as usize,
                JNE_X if regs[dst] != regs[src] => pc += i.off as usize,
                JNE_K | JNE_X => {}
                EXIT => return regs[0],
                other => panic!("unexpected opcode {other:#x}"),
            }
        }
    }

    fn rule(
        allow: bool,
        typ: LinuxDeviceType,
        major: i64,
        minor: i64,
        access: &str,
    ) -> LinuxDeviceCgroup {
        let mut b = LinuxDeviceCgroupBuilder::default()
            .allow(allow)
            .typ(typ)
            .access(access);
        if major >= 0 {
            b = b.major(major);
        }
        if minor >= 0 {
            b = b.minor(minor);
        }
        b.build().unwrap()
    }

    #[test]
    fn default_is_deny() {
        let program = device_program(&[]).unwrap();
        assert_eq!(run(&program, DEV_CHAR, ACC_READ, 1, 3), 0);
    }

    #[test]
    fn runc_like_rules_allow_null_and_deny_the_rest() {
        let rules = [
            rule(false, LinuxDeviceType::A, -1, -1, "rwm"),
            rule(true, LinuxDeviceType::C, 1, 3, "rwm"),
            rule(true, LinuxDeviceType::C, 136, -1, "rw"),
            rule(false, LinuxDeviceType::C, 136, 5, "w"),
        ];
        let program = device_program(&rules).unwrap();
        assert_eq!(run(&program, DEV_CHAR, ACC_READ | ACC_WRITE, 1, 3), 1);
        assert_eq!(run(&program, DEV_BLOCK, ACC_READ, 1, 3), 0, "wrong type");
        assert_eq!(run(&program, DEV_CHAR, ACC_READ, 1, 5), 0, "wrong minor");
        assert_eq!(run(&program, DEV_CHAR, ACC_READ, 136, 7), 1, "any minor");
        assert_eq!(
            run(&program, DEV_CHAR, ACC_MKNOD, 136, 7),
            0,
            "access not granted"
        );
        assert_eq!(
            run(&program, DEV_CHAR, ACC_WRITE, 136, 5),
            0,
            "later deny wins"
        );
        assert_eq!(
            run(&program, DEV_CHAR, ACC_READ, 136, 5),
            1,
            "deny is only for w"
        );
    }

    #[test]
    fn a_trailing_catch_all_hides_earlier_rules() {
        let rules = [
            rule(false, LinuxDeviceType::C, 1, 3, "rwm"),
            rule(true, LinuxDeviceType::A, -1, -1, "rwm"),
        ];
        let program = device_program(&rules).unwrap();
        assert_eq!(program.len(), prologue().len() + 2);
        assert_eq!(run(&program, DEV_CHAR, ACC_READ, 1, 3), 1);
    }

    #[test]
    fn fifo_rules_and_bad_access_are_rejected() {
        let fifo = [rule(true, LinuxDeviceType::P, -1, -1, "rwm")];
        assert!(device_program(&fifo).is_err());
        let bad = [rule(true, LinuxDeviceType::C, 1, 3, "rwx")];
        assert!(device_program(&bad).is_err());
    }
}
