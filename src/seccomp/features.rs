//! The `seccomp` object of `berth features` (runtime-spec features.md).

use libseccomp::{ScmpAction, ScmpFilterContext};
use oci_spec::runtime::Seccomp;
use oci_spec::runtime::{Arch, LinuxSeccompAction, LinuxSeccompFilterFlag, LinuxSeccompOperator};

use super::compile::{flag_bits, scmp_arch};
use super::sys;

const ACTIONS: [LinuxSeccompAction; 9] = [
    LinuxSeccompAction::ScmpActKill,
    LinuxSeccompAction::ScmpActKillThread,
    LinuxSeccompAction::ScmpActKillProcess,
    LinuxSeccompAction::ScmpActTrap,
    LinuxSeccompAction::ScmpActErrno,
    LinuxSeccompAction::ScmpActNotify,
    LinuxSeccompAction::ScmpActTrace,
    LinuxSeccompAction::ScmpActLog,
    LinuxSeccompAction::ScmpActAllow,
];

const OPERATORS: [LinuxSeccompOperator; 7] = [
    LinuxSeccompOperator::ScmpCmpNe,
    LinuxSeccompOperator::ScmpCmpLt,
    LinuxSeccompOperator::ScmpCmpLe,
    LinuxSeccompOperator::ScmpCmpEq,
    LinuxSeccompOperator::ScmpCmpGe,
    LinuxSeccompOperator::ScmpCmpGt,
    LinuxSeccompOperator::ScmpCmpMaskedEq,
];

/// Every architecture the config can name except SCMP_ARCH_NATIVE, which is always in a filter.
pub(super) const ARCHS: [Arch; 23] = [
    Arch::ScmpArchX86,
    Arch::ScmpArchX86_64,
    Arch::ScmpArchX32,
    Arch::ScmpArchArm,
    Arch::ScmpArchAarch64,
    Arch::ScmpArchMips,
    Arch::ScmpArchMips64,
    Arch::ScmpArchMips64n32,
    Arch::ScmpArchMipsel,
    Arch::ScmpArchMipsel64,
    Arch::ScmpArchMipsel64n32,
    Arch::ScmpArchPpc,
    Arch::ScmpArchPpc64,
    Arch::ScmpArchPpc64le,
    Arch::ScmpArchS390,
    Arch::ScmpArchS390x,
    Arch::ScmpArchParisc,
    Arch::ScmpArchParisc64,
    Arch::ScmpArchRiscv64,
    Arch::ScmpArchLoongarch64,
    Arch::ScmpArchM68k,
    Arch::ScmpArchSh,
    Arch::ScmpArchSheb,
];

const FLAGS: [LinuxSeccompFilterFlag; 4] = [
    LinuxSeccompFilterFlag::SeccompFilterFlagTsync,
    LinuxSeccompFilterFlag::SeccompFilterFlagLog,
    LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow,
    LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv,
];

/// What this build and host support: every action and operator; the architectures the linked
/// libseccomp can add to a filter; the flags the running kernel accepts.
pub fn features() -> Seccomp {
    let mut seccomp = Seccomp::default();
    seccomp.set_enabled(Some(true));
    seccomp.set_actions(Some(ACTIONS.to_vec()));
    seccomp.set_operators(Some(OPERATORS.iter().map(ToString::to_string).collect()));
    seccomp.set_archs(Some(supported_archs()));
    seccomp.set_known_flags(Some(FLAGS.iter().map(ToString::to_string).collect()));
    let supported = FLAGS.iter().filter(|flag| kernel_supports(**flag));
    seccomp.set_supported_flags(Some(supported.map(ToString::to_string).collect()));
    seccomp
}

fn supported_archs() -> Vec<Arch> {
    let Ok(mut ctx) = ScmpFilterContext::new(ScmpAction::Allow) else {
        return Vec::new();
    };
    ARCHS
        .into_iter()
        .filter(|arch| scmp_arch(*arch).is_ok_and(|arch| ctx.add_arch(arch).is_ok()))
        .collect()
}

/// Probes with a listener requested, so that flags valid only next to one are accepted.
fn kernel_supports(flag: LinuxSeccompFilterFlag) -> bool {
    sys::kernel_accepts_flags(flag_bits(flag, true) | libc::SECCOMP_FILTER_FLAG_NEW_LISTENER)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_every_action_and_operator_and_the_host_support() {
        let seccomp = crate::seccomp::features();
        assert_eq!(seccomp.actions().as_ref().map(Vec::len), Some(9));
        let operators = seccomp.operators().clone().unwrap_or_default();
        assert_eq!(operators.len(), 7);
        assert!(operators.contains(&"SCMP_CMP_MASKED_EQ".to_owned()));
        let archs = seccomp.archs().clone().unwrap_or_default();
        assert!(archs.contains(&Arch::ScmpArchX86_64), "{archs:?}");
        assert_eq!(seccomp.known_flags().as_ref().map(Vec::len), Some(4));
        // Linux >= 5.19 accepts every flag; this host runs 6.x.
        assert_eq!(seccomp.supported_flags(), seccomp.known_flags());
    }
}
