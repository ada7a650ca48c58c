//! The process's identity, in the order the kernel requires: supplementary groups, gid, uid
//! (with PR_SET_KEEPCAPS so permitted capabilities survive leaving uid 0), then the capability
//! sets, then no_new_privs. The capability plan and the supplementary groups come before a
//! seccomp filter may be loaded (they read /proc and the kernel's capability list); the rest
//! makes only the calls runc makes after it.

use std::io::Read;
use std::str::FromStr;

use anyhow::{Context, Result, anyhow, bail, ensure};
use caps::{CapSet, Capability as KernelCap, CapsHashSet};
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::unistd::{Gid, Uid, setgroups, setresgid, setresuid};
use oci_spec::runtime::{Capabilities, Capability, LinuxCapabilities, User};

use crate::trusted_proc::ProcRoot;

/// The five capability sets converted to the caps crate's type, with the capabilities the running
/// kernel does not know already removed.
#[derive(Debug)]
pub struct CapabilityPlan {
    bounding: CapsHashSet,
    effective: CapsHashSet,
    inheritable: CapsHashSet,
    permitted: CapsHashSet,
    ambient: CapsHashSet,
}

/// Converts `process.capabilities`. Like runc, a capability the running kernel does not know
/// is skipped with a warning; one the kernel knows but berth itself does not hold (withheld
/// from berth's bounding set by the host, e.g. CAP_SYS_RESOURCE here) cannot be granted and is an
/// error naming it.
pub fn plan_capabilities(capabilities: &LinuxCapabilities) -> Result<CapabilityPlan> {
    let supported = caps::runtime::thread_all_supported();
    let held =
        caps::read(None, CapSet::Bounding).context("process.capabilities: read bounding set")?;
    let convert = |name: &str, set: &Option<Capabilities>| -> Result<CapsHashSet> {
        let mut converted = CapsHashSet::new();
        let mut unknown = Vec::new();
        for &cap in set.iter().flatten() {
            let Some(kernel_cap) = kernel_capability(cap).filter(|c| supported.contains(c)) else {
                unknown.push(format!("CAP_{cap}"));
                continue;
            };
            ensure!(
                held.contains(&kernel_cap),
                "process.capabilities.{name}: {kernel_cap} is not in berth's own bounding set \
                 (the host withholds it), so it cannot be granted"
            );
            converted.insert(kernel_cap);
        }
        if !unknown.is_empty() {
            unknown.sort();
            let message = format!(
                "process.capabilities.{name}: ignoring capabilities the running kernel does not know: {}",
                unknown.join(", ")
            );
            crate::logging::log(crate::logging::Level::Warning, &message);
        }
        Ok(converted)
    };
    Ok(CapabilityPlan {
        bounding: convert("bounding", capabilities.bounding())?,
        effective: convert("effective", capabilities.effective())?,
        inheritable: convert("inheritable", capabilities.inheritable())?,
        permitted: convert("permitted", capabilities.permitted())?,
        ambient: convert("ambient", capabilities.ambient())?,
    })
}

/// oci-spec and the caps crate name the same kernel capabilities ("SYS_ADMIN" vs
/// CAP_SYS_ADMIN); the unit test checks the mapping is total.
fn kernel_capability(cap: Capability) -> Option<KernelCap> {
    KernelCap::from_str(&format!("CAP_{cap}")).ok()
}

/// Drops from the bounding set everything not listed. Needs CAP_SETPCAP, so it runs before the
/// uid changes.
pub fn limit_bounding_set(plan: &CapabilityPlan) -> Result<()> {
    for cap in caps::read(None, CapSet::Bounding).context("process.capabilities.bounding: read")? {
        if !plan.bounding.contains(&cap) {
            caps::drop(None, CapSet::Bounding, cap)
                .map_err(|e| anyhow!("process.capabilities.bounding: drop {cap}: {e}"))?;
        }
    }
    Ok(())
}

/// `user.additionalGids`; always set, also when empty: the host's supplementary groups must not
/// leak in. Except where the kernel forbids it: a user namespace set up by an unprivileged user
/// has setgroups denied, and the user's own groups stay (unmapped, as nogroup), as with runc.
pub fn set_supplementary_groups(user: &User) -> Result<()> {
    let groups: Vec<Gid> = user
        .additional_gids()
        .iter()
        .flatten()
        .map(|&gid| Gid::from_raw(gid))
        .collect();
    match setgroups(&groups) {
        Ok(()) => Ok(()),
        Err(Errno::EPERM) if groups.is_empty() && setgroups_denied()? => Ok(()),
        Err(Errno::EPERM) if setgroups_denied()? => bail!(
            "process.user.additionalGids: setgroups is denied in this user namespace (a rootless \
             one mapping only your own gid); leave additionalGids empty"
        ),
        Err(e) => bail!("process.user.additionalGids: setgroups: {}", e.desc()),
    }
}

fn setgroups_denied() -> Result<bool> {
    let mut file = ProcRoot::open()?.open_file("self/setgroups", OFlag::O_RDONLY)?;
    let mut policy = String::new();
    file.read_to_string(&mut policy)?;
    Ok(policy.trim() == "deny")
}

/// setresgid, setresuid (after [`set_supplementary_groups`]). With `keep_permitted`
/// (capabilities are configured), PR_SET_KEEPCAPS keeps the permitted set across the switch to
/// a non-zero uid; the caller then sets the configured sets explicitly.
pub fn switch_user(user: &User, keep_permitted: bool) -> Result<()> {
    let gid = Gid::from_raw(user.gid());
    setresgid(gid, gid, gid)
        .map_err(|e| anyhow!("process.user.gid {gid}: setresgid: {}", e.desc()))?;
    if keep_permitted {
        nix::sys::prctl::set_keepcaps(true).context("prctl(PR_SET_KEEPCAPS)")?;
    }
    let uid = Uid::from_raw(user.uid());
    setresuid(uid, uid, uid)
        .map_err(|e| anyhow!("process.user.uid {uid}: setresuid: {}", e.desc()))?;
    if keep_permitted {
        nix::sys::prctl::set_keepcaps(false).context("prctl(PR_SET_KEEPCAPS)")?;
    }
    Ok(())
}

/// Sets inheritable, effective and permitted, then the ambient set. The order respects capset's
/// rules with the full permitted set still in place: inheritable may only grow within permitted,
/// effective must stay within permitted, and permitted may only shrink.
pub fn set_capabilities(plan: &CapabilityPlan) -> Result<()> {
    let sets = [
        ("inheritable", CapSet::Inheritable, &plan.inheritable),
        ("effective", CapSet::Effective, &plan.effective),
        ("permitted", CapSet::Permitted, &plan.permitted),
    ];
    for (name, set, value) in sets {
        caps::set(None, set, value).map_err(|e| anyhow!("process.capabilities.{name}: {e}"))?;
    }
    caps::clear(None, CapSet::Ambient).map_err(|e| anyhow!("process.capabilities.ambient: {e}"))?;
    // The kernel only raises an ambient capability that is permitted and inheritable; like runc,
    // a failure is no error (`exec --cap` adds to ambient without touching inheritable, and
    // runc's default spec lists ambient caps without inheritable ones): a debug message only.
    for &cap in &plan.ambient {
        if let Err(error) = caps::raise(None, CapSet::Ambient, cap) {
            let message = format!("process.capabilities.ambient: cannot raise {cap}: {error}");
            crate::logging::log(crate::logging::Level::Debug, &message);
        }
    }
    Ok(())
}

pub fn set_no_new_privileges() -> Result<()> {
    nix::sys::prctl::set_no_new_privs().map_err(|e| {
        anyhow!(
            "process.noNewPrivileges: prctl(PR_SET_NO_NEW_PRIVS): {}",
            e.desc()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn every_kernel_capability_name_maps_both_ways() {
        let names: Vec<String> = caps::all().iter().map(ToString::to_string).collect();
        let oci: HashSet<Capability> = serde_json::from_value(serde_json::json!(names)).unwrap();
        assert_eq!(oci.len(), names.len());
        let back: CapsHashSet = oci
            .into_iter()
            .map(|cap| kernel_capability(cap).unwrap())
            .collect();
        assert_eq!(back, caps::all());
    }
}
