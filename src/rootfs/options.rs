//! Pure translation of runtime-spec mount options into what the mount syscalls need.

use anyhow::{Result, bail};
use nix::mount::MsFlags;

use super::sys::MountAttr;

const ATIME_MASK: u64 = libc::MOUNT_ATTR__ATIME;

/// What one option word does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Effect {
    /// Set (true) or clear (false) a per-mount attribute on the top mount.
    Attr(u64, bool),
    /// Same, but for the whole tree (mount_setattr AT_RECURSIVE).
    RecAttr(u64, bool),
    /// Select an access-time mode (an enum in the kernel, not a bit).
    Atime(u64),
    RecAtime(u64),
    /// A superblock flag, passed to fsconfig(FSCONFIG_SET_FLAG) for new filesystems.
    SuperblockFlag,
    Propagation(MsFlags, bool),
    Bind,
    Rbind,
    Remount,
    TmpCopyUp,
    IdMap(IdmapScope),
    /// Accepted and meaningless here ("defaults"; "silent"/"loud" only change kernel logging).
    Ignored,
}

/// Which mounts of a tree an idmapping covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdmapScope {
    /// `idmap`: only the top mount.
    Top,
    /// `ridmap`: every mount of the tree (mount_setattr AT_RECURSIVE).
    Tree,
}

/// The options `berth features` reports (runtime-spec features.md
/// `mountOptions`): every one `effect_of` knows.
pub const SUPPORTED_OPTIONS: &[&str] = &[
    "async",
    "atime",
    "bind",
    "defaults",
    "dev",
    "diratime",
    "dirsync",
    "exec",
    "idmap",
    "lazytime",
    "loud",
    "mand",
    "noatime",
    "nodev",
    "nodiratime",
    "noexec",
    "nolazytime",
    "nomand",
    "norelatime",
    "nostrictatime",
    "nosuid",
    "nosymfollow",
    "private",
    "ratime",
    "rbind",
    "rdev",
    "rdiratime",
    "relatime",
    "remount",
    "ridmap",
    "rexec",
    "rnoatime",
    "rnodev",
    "rnodiratime",
    "rnoexec",
    "rnorelatime",
    "rnostrictatime",
    "rnosuid",
    "rnosymfollow",
    "ro",
    "rprivate",
    "rrelatime",
    "rro",
    "rrw",
    "rshared",
    "rslave",
    "rstrictatime",
    "rsuid",
    "rsymfollow",
    "runbindable",
    "rw",
    "shared",
    "silent",
    "slave",
    "strictatime",
    "suid",
    "symfollow",
    "sync",
    "tmpcopyup",
    "unbindable",
];

fn effect_of(option: &str) -> Option<Effect> {
    use Effect::*;
    let e = match option {
        "ro" => Attr(libc::MOUNT_ATTR_RDONLY, true),
        "rw" => Attr(libc::MOUNT_ATTR_RDONLY, false),
        "nosuid" => Attr(libc::MOUNT_ATTR_NOSUID, true),
        "suid" => Attr(libc::MOUNT_ATTR_NOSUID, false),
        "nodev" => Attr(libc::MOUNT_ATTR_NODEV, true),
        "dev" => Attr(libc::MOUNT_ATTR_NODEV, false),
        "noexec" => Attr(libc::MOUNT_ATTR_NOEXEC, true),
        "exec" => Attr(libc::MOUNT_ATTR_NOEXEC, false),
        "nodiratime" => Attr(libc::MOUNT_ATTR_NODIRATIME, true),
        "diratime" => Attr(libc::MOUNT_ATTR_NODIRATIME, false),
        "nosymfollow" => Attr(libc::MOUNT_ATTR_NOSYMFOLLOW, true),
        "symfollow" => Attr(libc::MOUNT_ATTR_NOSYMFOLLOW, false),
        "noatime" => Atime(libc::MOUNT_ATTR_NOATIME),
        "strictatime" => Atime(libc::MOUNT_ATTR_STRICTATIME),
        // The kernel's default mode is relatime; undoing noatime/strictatime returns to it.
        "relatime" | "atime" | "norelatime" | "nostrictatime" => Atime(libc::MOUNT_ATTR_RELATIME),
        "rro" => RecAttr(libc::MOUNT_ATTR_RDONLY, true),
        "rrw" => RecAttr(libc::MOUNT_ATTR_RDONLY, false),
        "rnosuid" => RecAttr(libc::MOUNT_ATTR_NOSUID, true),
        "rsuid" => RecAttr(libc::MOUNT_ATTR_NOSUID, false),
        "rnodev" => RecAttr(libc::MOUNT_ATTR_NODEV, true),
        "rdev" => RecAttr(libc::MOUNT_ATTR_NODEV, false),
        "rnoexec" => RecAttr(libc::MOUNT_ATTR_NOEXEC, true),
        "rexec" => RecAttr(libc::MOUNT_ATTR_NOEXEC, false),
        "rnodiratime" => RecAttr(libc::MOUNT_ATTR_NODIRATIME, true),
        "rdiratime" => RecAttr(libc::MOUNT_ATTR_NODIRATIME, false),
        "rnosymfollow" => RecAttr(libc::MOUNT_ATTR_NOSYMFOLLOW, true),
        "rsymfollow" => RecAttr(libc::MOUNT_ATTR_NOSYMFOLLOW, false),
        "rnoatime" => RecAtime(libc::MOUNT_ATTR_NOATIME),
        "rstrictatime" => RecAtime(libc::MOUNT_ATTR_STRICTATIME),
        "rrelatime" | "ratime" | "rnorelatime" | "rnostrictatime" => {
            RecAtime(libc::MOUNT_ATTR_RELATIME)
        }
        "sync" | "async" | "dirsync" | "mand" | "nomand" | "lazytime" | "nolazytime" => {
            SuperblockFlag
        }
        "private" => Propagation(MsFlags::MS_PRIVATE, false),
        "rprivate" => Propagation(MsFlags::MS_PRIVATE, true),
        "shared" => Propagation(MsFlags::MS_SHARED, false),
        "rshared" => Propagation(MsFlags::MS_SHARED, true),
        "slave" => Propagation(MsFlags::MS_SLAVE, false),
        "rslave" => Propagation(MsFlags::MS_SLAVE, true),
        "unbindable" => Propagation(MsFlags::MS_UNBINDABLE, false),
        "runbindable" => Propagation(MsFlags::MS_UNBINDABLE, true),
        "bind" => Bind,
        "rbind" => Rbind,
        "remount" => Remount,
        "tmpcopyup" => TmpCopyUp,
        "idmap" => IdMap(IdmapScope::Top),
        "ridmap" => IdMap(IdmapScope::Tree),
        "defaults" | "silent" | "loud" => Ignored,
        _ => return None,
    };
    Some(e)
}

/// Everything the options of one mount ask for.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct MountPlan {
    pub bind: bool,
    pub recursive: bool,
    pub remount: bool,
    pub tmpcopyup: bool,
    /// `idmap` or `ridmap`; the mappings themselves are the mount's own fields (see `idmap.rs`).
    pub idmap: Option<IdmapScope>,
    /// Attributes of the top mount.
    pub attr: MountAttr,
    /// Attributes applied to the whole tree.
    pub rec_attr: MountAttr,
    /// Propagation changes in option order: (type, recursive).
    pub propagation: Vec<(MsFlags, bool)>,
    /// Superblock flags (sync, dirsync, mand, ...) for fsconfig.
    pub sb_flags: Vec<String>,
    /// Filesystem-specific options: `key=value` or a bare `key`.
    pub data: Vec<(String, Option<String>)>,
}

fn apply_flag(attr: &mut MountAttr, flag: u64, set: bool) {
    if set {
        attr.set |= flag;
        attr.clear &= !flag;
    } else {
        attr.clear |= flag;
        attr.set &= !flag;
    }
}

fn apply_atime(attr: &mut MountAttr, mode: u64) {
    // mount_setattr(2): an atime mode in attr_set needs the whole MOUNT_ATTR__ATIME in attr_clr.
    attr.set = (attr.set & !ATIME_MASK) | mode;
    attr.clear |= ATIME_MASK;
}

impl MountPlan {
    /// The MS_* flags equivalent to the top-mount attributes, for mount(2) remounts.
    pub fn ms_flags(&self) -> MsFlags {
        let table = [
            (libc::MOUNT_ATTR_RDONLY, MsFlags::MS_RDONLY),
            (libc::MOUNT_ATTR_NOSUID, MsFlags::MS_NOSUID),
            (libc::MOUNT_ATTR_NODEV, MsFlags::MS_NODEV),
            (libc::MOUNT_ATTR_NOEXEC, MsFlags::MS_NOEXEC),
            (libc::MOUNT_ATTR_NODIRATIME, MsFlags::MS_NODIRATIME),
            (
                libc::MOUNT_ATTR_NOSYMFOLLOW,
                MsFlags::from_bits_retain(libc::MS_NOSYMFOLLOW),
            ),
        ];
        let mut flags = MsFlags::empty();
        for (attr, ms) in table {
            if self.attr.set & attr != 0 {
                flags |= ms;
            }
        }
        if self.attr.clear & ATIME_MASK != 0 {
            flags |= match self.attr.set & ATIME_MASK {
                libc::MOUNT_ATTR_NOATIME => MsFlags::MS_NOATIME,
                libc::MOUNT_ATTR_STRICTATIME => MsFlags::MS_STRICTATIME,
                _ => MsFlags::MS_RELATIME,
            };
        }
        flags
    }

    /// Superblock flags and filesystem data joined as a mount(2) data string.
    pub fn data_string(&self) -> String {
        let flags = self.sb_flags.iter().cloned();
        let data = self.data.iter().map(|(k, v)| match v {
            Some(v) => format!("{k}={v}"),
            None => k.clone(),
        });
        flags.chain(data).collect::<Vec<_>>().join(",")
    }
}

/// Parse the `options` of a mount entry (in order; later options win).
pub fn parse_options(options: &[String]) -> MountPlan {
    let mut plan = MountPlan::default();
    for option in options {
        match effect_of(option) {
            Some(Effect::Attr(flag, set)) => apply_flag(&mut plan.attr, flag, set),
            Some(Effect::RecAttr(flag, set)) => apply_flag(&mut plan.rec_attr, flag, set),
            Some(Effect::Atime(mode)) => apply_atime(&mut plan.attr, mode),
            Some(Effect::RecAtime(mode)) => apply_atime(&mut plan.rec_attr, mode),
            Some(Effect::SuperblockFlag) => plan.sb_flags.push(option.clone()),
            Some(Effect::Propagation(kind, recursive)) => plan.propagation.push((kind, recursive)),
            Some(Effect::Bind) => plan.bind = true,
            Some(Effect::Rbind) => {
                plan.bind = true;
                plan.recursive = true;
            }
            Some(Effect::Remount) => plan.remount = true,
            Some(Effect::TmpCopyUp) => plan.tmpcopyup = true,
            Some(Effect::IdMap(scope)) => plan.idmap = Some(scope),
            Some(Effect::Ignored) => {}
            None => plan.data.push(match option.split_once('=') {
                Some((k, v)) => (k.to_owned(), Some(v.to_owned())),
                None => (option.clone(), None),
            }),
        }
    }
    plan
}

/// `linux.rootfsPropagation` as mount(2) flags; runc's default is rslave.
pub fn root_propagation(value: Option<&str>) -> Result<MsFlags> {
    let rec = MsFlags::MS_REC;
    Ok(match value.unwrap_or("rslave") {
        "private" => MsFlags::MS_PRIVATE,
        "rprivate" => MsFlags::MS_PRIVATE | rec,
        "shared" => MsFlags::MS_SHARED,
        "rshared" => MsFlags::MS_SHARED | rec,
        "slave" => MsFlags::MS_SLAVE,
        "rslave" => MsFlags::MS_SLAVE | rec,
        "unbindable" => MsFlags::MS_UNBINDABLE,
        "runbindable" => MsFlags::MS_UNBINDABLE | rec,
        other => bail!("linux.rootfsPropagation: unknown propagation {other:?}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(options: &[&str]) -> MountPlan {
        let owned: Vec<String> = options.iter().map(|s| s.to_string()).collect();
        parse_options(&owned)
    }

    #[test]
    fn per_mount_flags_set_and_clear() {
        let p = plan(&["nosuid", "nodev", "noexec", "ro", "rw", "nosymfollow"]);
        assert_eq!(
            p.attr.set,
            libc::MOUNT_ATTR_NOSUID
                | libc::MOUNT_ATTR_NODEV
                | libc::MOUNT_ATTR_NOEXEC
                | libc::MOUNT_ATTR_NOSYMFOLLOW
        );
        assert_eq!(p.attr.clear, libc::MOUNT_ATTR_RDONLY);
        assert!(p.rec_attr.is_empty());
        assert!(!p.bind);
    }

    #[test]
    fn atime_modes_are_exclusive_and_clear_the_mask() {
        let p = plan(&["noatime", "strictatime"]);
        assert_eq!(p.attr.set, libc::MOUNT_ATTR_STRICTATIME);
        assert_eq!(p.attr.clear, libc::MOUNT_ATTR__ATIME);
        assert_eq!(p.ms_flags(), MsFlags::MS_STRICTATIME);
        let p = plan(&["noatime", "atime"]);
        assert_eq!(
            p.attr.set & libc::MOUNT_ATTR__ATIME,
            libc::MOUNT_ATTR_RELATIME
        );
        let p = plan(&["nodiratime", "diratime"]);
        assert_eq!(p.attr.clear, libc::MOUNT_ATTR_NODIRATIME);
    }

    #[test]
    fn recursive_attributes_go_to_the_tree() {
        let p = plan(&["rbind", "rro", "rnosuid", "rnoatime", "rdev"]);
        assert!(p.bind && p.recursive);
        assert_eq!(
            p.rec_attr.set,
            libc::MOUNT_ATTR_RDONLY | libc::MOUNT_ATTR_NOSUID | libc::MOUNT_ATTR_NOATIME
        );
        assert_eq!(
            p.rec_attr.clear,
            libc::MOUNT_ATTR__ATIME | libc::MOUNT_ATTR_NODEV
        );
        assert!(p.attr.is_empty());
    }

    #[test]
    fn propagation_keeps_order() {
        let p = plan(&["rprivate", "shared", "runbindable"]);
        assert_eq!(
            p.propagation,
            [
                (MsFlags::MS_PRIVATE, true),
                (MsFlags::MS_SHARED, false),
                (MsFlags::MS_UNBINDABLE, true)
            ]
        );
    }

    #[test]
    fn unknown_options_are_filesystem_data() {
        let p = plan(&["mode=755", "size=65536k", "newinstance", "sync", "defaults"]);
        assert_eq!(
            p.data,
            [
                ("mode".to_string(), Some("755".to_string())),
                ("size".to_string(), Some("65536k".to_string())),
                ("newinstance".to_string(), None)
            ]
        );
        assert_eq!(p.sb_flags, ["sync"]);
        assert_eq!(p.data_string(), "sync,mode=755,size=65536k,newinstance");
    }

    #[test]
    fn bind_remount_and_tmpcopyup() {
        let p = plan(&["bind", "remount", "ro", "tmpcopyup"]);
        assert!(p.bind && !p.recursive && p.remount && p.tmpcopyup);
        assert_eq!(p.ms_flags(), MsFlags::MS_RDONLY);
    }

    #[test]
    fn idmap_and_ridmap_choose_the_scope_and_are_not_filesystem_data() {
        assert_eq!(plan(&["rbind", "idmap"]).idmap, Some(IdmapScope::Top));
        let p = plan(&["rbind", "ridmap"]);
        assert_eq!(p.idmap, Some(IdmapScope::Tree));
        assert!(p.data.is_empty() && p.attr.is_empty() && p.rec_attr.is_empty());
        assert_eq!(plan(&["bind"]).idmap, None);
    }

    #[test]
    fn root_propagation_default_and_errors() {
        assert_eq!(
            root_propagation(None).unwrap(),
            MsFlags::MS_SLAVE | MsFlags::MS_REC
        );
        assert_eq!(
            root_propagation(Some("private")).unwrap(),
            MsFlags::MS_PRIVATE
        );
        assert!(root_propagation(Some("bogus")).is_err());
    }

    #[test]
    fn every_reported_option_is_handled() {
        for option in SUPPORTED_OPTIONS {
            assert!(effect_of(option).is_some(), "{option}");
        }
    }
}
