//! `linux.intelRdt` (runtime-spec 1.3): Intel RDT cache and memory bandwidth allocation
//! through the resctrl filesystem (kernel Documentation/arch/x86/resctrl.rst).
//!
//! The container's processes join a control group (CTRL_MON): the directory `closID` names,
//! the root for `/`, or one named after the container, which berth creates and removes. Its
//! `schemata` file takes `l3CacheSchema`, `memBwSchema` and `schemata`, in that order, in one
//! write. With `enableMonitoring` they also join a monitoring group, `mon_groups/<id>` of the
//! control group, which berth creates and removes. A task written to a control group's `tasks`
//! leaves any other group; one written to a monitoring group's must already be in its parent.
//!
//! `create` checks everything against the host before it creates anything, records the group
//! in the state before it makes a directory (so `delete --force` finds it whatever happened),
//! and adds the init before it goes on: everything it starts inherits the group. Exec'd
//! processes are added by `exec`.

mod schemata;

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use nix::sys::statfs::FsType;
use oci_spec::runtime::{Linux, LinuxIntelRdt};
use serde::{Deserialize, Serialize};

/// Where the kernel offers resctrl; it may be mounted elsewhere too.
const DEFAULT_MOUNT: &str = "/sys/fs/resctrl";
/// RDTGROUP_SUPER_MAGIC.
const RESCTRL_MAGIC: FsType = FsType(0x7655821);

/// A mounted resctrl filesystem.
pub struct Resctrl {
    root: PathBuf,
}

impl Resctrl {
    /// The resctrl mount of berth's mount namespace (the spec: an error when there is none).
    pub fn find() -> Result<Resctrl> {
        let is_resctrl = nix::sys::statfs::statfs(DEFAULT_MOUNT)
            .is_ok_and(|fs| fs.filesystem_type() == RESCTRL_MAGIC);
        let root = if is_resctrl {
            PathBuf::from(DEFAULT_MOUNT)
        } else {
            mount_point_of_resctrl()?.context(
                "this host has no resctrl filesystem mounted (Intel RDT needs the CPU's support \
                 and `mount -t resctrl resctrl /sys/fs/resctrl`)",
            )?
        };
        Ok(Resctrl { root })
    }

    /// Whether `info/<resource>` exists: L3 (cache allocation), MB (memory bandwidth
    /// allocation), L3_MON (monitoring).
    fn has(&self, resource: &str) -> bool {
        self.root.join("info").join(resource).is_dir()
    }
}

fn mount_point_of_resctrl() -> Result<Option<PathBuf>> {
    let mounts = procfs::process::Process::myself()
        .and_then(|me| me.mountinfo())
        .context("read /proc/self/mountinfo")?;
    Ok(mounts
        .into_iter()
        .find(|mount| mount.fs_type == "resctrl")
        .map(|mount| mount.mount_point))
}

/// Which control group the container joins.
#[derive(Debug, PartialEq)]
enum Clos {
    /// `closID: "/"`: the root group, the default class of service.
    Root,
    /// A group someone else owns, made by berth if missing, never removed by berth.
    Named(String),
    /// No `closID`: a group named after the container, made and removed by berth.
    Container,
}

/// A validated `linux.intelRdt`.
#[derive(Debug)]
pub struct RdtConfig {
    clos: Clos,
    /// l3CacheSchema, memBwSchema and schemata, in the order they are written.
    schemata: Vec<String>,
    has_l3_schema: bool,
    has_mb_schema: bool,
    monitoring: bool,
}

/// What the config asks, checked without the host; errors name the field.
pub fn validate(linux: &Linux) -> Result<()> {
    RdtConfig::of(linux).map(drop)
}

impl RdtConfig {
    pub fn of(linux: &Linux) -> Result<Option<RdtConfig>> {
        linux.intel_rdt().as_ref().map(Self::parse).transpose()
    }

    fn parse(config: &LinuxIntelRdt) -> Result<RdtConfig> {
        let clos = match config.clos_id().as_deref() {
            None | Some("") => Clos::Container,
            Some("/") => Clos::Root,
            Some(name) => {
                if name == "." || name == ".." || name.contains(['/', '\n']) {
                    bail!("linux.intelRdt.closID: {name:?} is not a resctrl group name");
                }
                Clos::Named(name.to_string())
            }
        };
        let l3 = config
            .l3_cache_schema()
            .as_deref()
            .filter(|s| !s.is_empty());
        let mb = config.mem_bw_schema().as_deref().filter(|s| !s.is_empty());
        if let Some(l3) = l3 {
            schemata::check_line(l3).context("linux.intelRdt.l3CacheSchema")?;
        }
        if let Some(mb) = mb {
            schemata::check_line(mb).context("linux.intelRdt.memBwSchema")?;
            if !mb.starts_with("MB:") {
                bail!("linux.intelRdt.memBwSchema: {mb:?} does not start with MB:");
            }
        }
        let extra = config.schemata().clone().unwrap_or_default();
        for (index, line) in extra.iter().enumerate() {
            schemata::check_line(line)
                .with_context(|| format!("linux.intelRdt.schemata[{index}]"))?;
        }
        let schemata = l3
            .into_iter()
            .chain(mb)
            .map(str::to_string)
            .chain(extra)
            .collect();
        Ok(RdtConfig {
            clos,
            schemata,
            has_l3_schema: l3.is_some(),
            has_mb_schema: mb.is_some(),
            monitoring: config.enable_monitoring().unwrap_or(false),
        })
    }

    /// Everything the host decides, checked before anything is created: the features the
    /// config uses, and the control group as the spec wants it (a `closID` without schemata
    /// must exist; one with schemata that exists must have them; a group named after the
    /// container must not exist yet). Returns the group the container will join.
    pub fn plan(&self, resctrl: &Resctrl, id: &str) -> Result<RdtGroup> {
        let field = "linux.intelRdt";
        if self.has_l3_schema && !resctrl.has("L3") {
            bail!("{field}.l3CacheSchema: this host's Intel RDT has no cache allocation (CAT)");
        }
        if self.has_mb_schema && !resctrl.has("MB") {
            bail!("{field}.memBwSchema: this host's Intel RDT has no memory bandwidth allocation");
        }
        if self.monitoring && !resctrl.has("L3_MON") {
            bail!("{field}.enableMonitoring: this host's Intel RDT has no monitoring");
        }
        let (dir, create, remove) = match &self.clos {
            Clos::Root => (resctrl.root.clone(), false, false),
            Clos::Named(name) => {
                let dir = resctrl.root.join(name);
                let exists = dir.is_dir();
                if !exists && self.schemata.is_empty() {
                    bail!(
                        "{field}.closID: there is no resctrl group {}",
                        dir.display()
                    );
                }
                if exists && !self.schemata.is_empty() {
                    let current = read_schemata(&dir)?;
                    schemata::check_matches(&self.schemata, &current)
                        .with_context(|| format!("{field}: resctrl group {}", dir.display()))?;
                }
                (dir, !exists, false)
            }
            Clos::Container => {
                let dir = resctrl.root.join(id);
                if dir.exists() {
                    bail!(
                        "{field}: the resctrl group {} exists already",
                        dir.display()
                    );
                }
                (dir, true, true)
            }
        };
        let monitor = self.monitoring.then(|| dir.join("mon_groups").join(id));
        if let Some(monitor) = monitor.as_ref().filter(|m| m.exists()) {
            bail!(
                "{field}: the monitoring group {} exists already",
                monitor.display()
            );
        }
        Ok(RdtGroup {
            root: resctrl.root.clone(),
            dir,
            create,
            remove,
            monitor,
            schemata: if create {
                self.schemata.clone()
            } else {
                Vec::new()
            },
        })
    }
}

/// The group a new container `id` joins, checked against the host (see `RdtConfig::plan`);
/// `None` without `linux.intelRdt`.
pub fn plan(linux: &Linux, id: &str) -> Result<Option<RdtGroup>> {
    let Some(config) = RdtConfig::of(linux)? else {
        return Ok(None);
    };
    let resctrl = Resctrl::find().context("linux.intelRdt")?;
    config.plan(&resctrl, id).map(Some)
}

// `update`'s Intel RDT flags (runc's). (Not a doc comment: clap would make it the help text
// of `update`.)
#[derive(clap::Args, Debug, Default)]
pub struct RdtUpdateArgs {
    /// The L3 cache schema of the container's resctrl group, e.g. L3:0=ff;1=f0
    #[arg(long)]
    pub l3_cache_schema: Option<String>,
    /// The memory bandwidth schema of the container's resctrl group, e.g. MB:0=20;1=70
    #[arg(long)]
    pub mem_bw_schema: Option<String>,
}

/// The resctrl groups of a container, as recorded in its state.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct RdtGroup {
    /// The resctrl mount.
    root: PathBuf,
    /// The control group.
    dir: PathBuf,
    /// Whether `create` makes the control group (it did not exist).
    create: bool,
    /// Whether `delete` removes the control group (the one named after the container).
    remove: bool,
    /// The monitoring group, with `enableMonitoring`.
    monitor: Option<PathBuf>,
    /// What `create` writes to the new control group's `schemata`.
    schemata: Vec<String>,
}

impl RdtGroup {
    /// Makes the groups and puts `pid` (the init) in them.
    pub fn create(&self, pid: i32) -> Result<()> {
        let field = "linux.intelRdt";
        if self.create {
            self.kernel_call(fs::create_dir(&self.dir), "mkdir", &self.dir)
                .context(field)?;
            if !self.schemata.is_empty() {
                self.write_schemata(&self.schemata).context(field)?;
            }
        }
        if let Some(monitor) = &self.monitor {
            self.kernel_call(fs::create_dir(monitor), "mkdir", monitor)
                .context(field)?;
        }
        self.add_process(pid).context(field)
    }

    /// Puts `pid` in the control group, then in the monitoring group (the kernel takes a
    /// task into a monitoring group only from its parent).
    pub fn add_process(&self, pid: i32) -> Result<()> {
        for dir in std::iter::once(&self.dir).chain(&self.monitor) {
            let tasks = dir.join("tasks");
            self.kernel_call(fs::write(&tasks, pid.to_string()), "writing to", &tasks)?;
        }
        Ok(())
    }

    fn write_schemata(&self, lines: &[String]) -> Result<()> {
        let path = self.dir.join("schemata");
        let text: String = lines.iter().map(|line| format!("{line}\n")).collect();
        self.kernel_call(fs::write(&path, &text), "writing to", &path)
            .with_context(|| format!("schemata {:?}", lines.join("; ")))
    }

    /// Removes what berth made (a missing directory is no error: `create` may not have got
    /// that far). The kernel moves any task left in a removed group to its parent.
    pub fn remove(&self) -> Result<()> {
        let ours = self.monitor.iter().chain(self.remove.then_some(&self.dir));
        for dir in ours {
            match fs::remove_dir(dir) {
                Err(e) if e.kind() != ErrorKind::NotFound => {
                    return Err(e).with_context(|| format!("removing {}", dir.display()));
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// The result of a resctrl file operation, its error with the kernel's explanation.
    fn kernel_call(&self, result: std::io::Result<()>, what: &str, path: &Path) -> Result<()> {
        result.with_context(|| {
            // The kernel's explanation of the operation that failed.
            let status =
                fs::read_to_string(self.root.join("info/last_cmd_status")).unwrap_or_default();
            match status.trim() {
                "" | "ok" => format!("{what} {}", path.display()),
                status => format!("{what} {} (resctrl: {status})", path.display()),
            }
        })
    }
}

fn read_schemata(dir: &Path) -> Result<String> {
    let path = dir.join("schemata");
    fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))
}

/// A checked `update --l3-cache-schema/--mem-bw-schema`, to apply after the cgroup update.
pub struct RdtUpdate<'a> {
    group: &'a RdtGroup,
    config: LinuxIntelRdt,
    lines: Vec<String>,
}

/// runc's checks and words for the update flags, against the container's recorded config and
/// group; `None` when no such flag was given.
pub fn prepare_update<'a>(
    config: Option<&LinuxIntelRdt>,
    group: Option<&'a RdtGroup>,
    args: &RdtUpdateArgs,
) -> Result<Option<RdtUpdate<'a>>> {
    let l3_cache_schema = args.l3_cache_schema.as_deref();
    let mem_bw_schema = args.mem_bw_schema.as_deref();
    if l3_cache_schema.is_none() && mem_bw_schema.is_none() {
        return Ok(None);
    }
    let resctrl = Resctrl::find();
    let has = |resource| resctrl.as_ref().is_ok_and(|r: &Resctrl| r.has(resource));
    if l3_cache_schema.is_some() && !has("L3") {
        bail!("Intel RDT/CAT: l3 cache schema is not enabled");
    }
    if mem_bw_schema.is_some() && !has("MB") {
        bail!("Intel RDT/MBA: memory bandwidth schema is not enabled");
    }
    let (Some(config), Some(group)) = (config, group) else {
        bail!("updating a non-existent Intel RDT configuration is not supported");
    };
    let mut config = config.clone();
    config.set_l3_cache_schema(
        l3_cache_schema
            .map(str::to_string)
            .or(config.l3_cache_schema().clone()),
    );
    config.set_mem_bw_schema(
        mem_bw_schema
            .map(str::to_string)
            .or(config.mem_bw_schema().clone()),
    );
    RdtConfig::parse(&config)?;
    let lines: Vec<String> = l3_cache_schema
        .into_iter()
        .chain(mem_bw_schema)
        .map(str::to_string)
        .collect();
    Ok(Some(RdtUpdate {
        group,
        config,
        lines,
    }))
}

impl RdtUpdate<'_> {
    /// Writes the new lines; returns the config to record.
    pub fn apply(self) -> Result<LinuxIntelRdt> {
        self.group.write_schemata(&self.lines)?;
        Ok(self.config)
    }
}

/// Against a directory laid out as the kernel lays out a resctrl mount (resctrl.rst): `info/`
/// with one directory per feature, and `tasks`, `schemata` and `mon_groups/` in every control
/// group. The kernel fills a new group's directory itself; a plain directory gets its files
/// from the writes.
#[cfg(test)]
mod tests {
    use super::*;

    struct FakeResctrl {
        root: PathBuf,
    }

    impl FakeResctrl {
        /// Features from `info`: L3, MB, L3_MON.
        fn new(name: &str, info: &[&str]) -> FakeResctrl {
            let root =
                std::env::temp_dir().join(format!("berth-rdt-{name}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&root);
            for feature in info {
                fs::create_dir_all(root.join("info").join(feature)).unwrap();
            }
            fs::write(root.join("info/last_cmd_status"), "ok\n").unwrap();
            let fake = FakeResctrl { root };
            fake.group("", "L3:0=fffff;1=fffff\nMB:0=100;1=100\n");
            fake
        }

        /// A control group (`""`: the root) as the kernel shows it.
        fn group(&self, name: &str, schemata: &str) -> PathBuf {
            let dir = self.root.join(name);
            fs::create_dir_all(dir.join("mon_groups")).unwrap();
            fs::write(dir.join("tasks"), "").unwrap();
            fs::write(dir.join("schemata"), schemata).unwrap();
            dir
        }

        fn resctrl(&self) -> Resctrl {
            Resctrl {
                root: self.root.clone(),
            }
        }

        fn read(&self, path: &str) -> String {
            fs::read_to_string(self.root.join(path)).unwrap()
        }
    }

    impl Drop for FakeResctrl {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.root);
        }
    }

    fn config(json: serde_json::Value) -> RdtConfig {
        RdtConfig::parse(&serde_json::from_value(json).unwrap()).unwrap()
    }

    fn error(json: serde_json::Value) -> String {
        let config: LinuxIntelRdt = serde_json::from_value(json).unwrap();
        format!("{:#}", RdtConfig::parse(&config).unwrap_err())
    }

    #[test]
    fn without_clos_id_a_group_named_after_the_container_is_made_and_removed() {
        let fake = FakeResctrl::new("own", &["L3", "MB"]);
        let rdt = config(serde_json::json!({
            "l3CacheSchema": "L3:0=7f0;1=1f",
            "memBwSchema": "MB:0=20;1=70",
            "schemata": ["L2:0=f"],
        }));
        let group = rdt.plan(&fake.resctrl(), "ctr").unwrap();
        group.create(4242).unwrap();
        assert_eq!(fake.read("ctr/tasks"), "4242");
        // One write, in the spec's order.
        assert_eq!(
            fake.read("ctr/schemata"),
            "L3:0=7f0;1=1f\nMB:0=20;1=70\nL2:0=f\n"
        );
        group.add_process(4343).unwrap();
        assert_eq!(fake.read("ctr/tasks"), "4343");
        // Now it exists: a second container of that name is refused.
        let err = rdt.plan(&fake.resctrl(), "ctr").unwrap_err().to_string();
        assert!(err.contains("exists already"), "{err}");
        // The kernel's own files would go with the directory.
        fs::remove_file(fake.root.join("ctr/tasks")).unwrap();
        fs::remove_file(fake.root.join("ctr/schemata")).unwrap();
        group.remove().unwrap();
        assert!(!fake.root.join("ctr").exists());
        group.remove().unwrap();
    }

    #[test]
    fn the_root_clos_takes_the_process_and_is_never_removed() {
        let fake = FakeResctrl::new("root", &["L3", "L3_MON"]);
        let rdt = config(serde_json::json!({"closID": "/", "enableMonitoring": true}));
        let group = rdt.plan(&fake.resctrl(), "ctr").unwrap();
        group.create(77).unwrap();
        assert_eq!(fake.read("tasks"), "77");
        assert_eq!(fake.read("mon_groups/ctr/tasks"), "77");
        // Untouched: no schemata in the config.
        assert_eq!(
            fake.read("schemata"),
            "L3:0=fffff;1=fffff\nMB:0=100;1=100\n"
        );
        fs::remove_file(fake.root.join("mon_groups/ctr/tasks")).unwrap();
        group.remove().unwrap();
        assert!(!fake.root.join("mon_groups/ctr").exists());
        assert!(fake.root.join("tasks").exists());
    }

    #[test]
    fn a_named_clos_is_joined_made_when_missing_and_never_removed() {
        let fake = FakeResctrl::new("named", &["L3", "MB"]);
        fake.group("shared", "L3:0=00ff;1=fffff\nMB:0=100;1=100\n");

        // Exists, no schemata: joined as it is.
        let group = config(serde_json::json!({"closID": "shared"}))
            .plan(&fake.resctrl(), "ctr")
            .unwrap();
        group.create(5).unwrap();
        assert_eq!(fake.read("shared/tasks"), "5");
        assert_eq!(
            fake.read("shared/schemata"),
            "L3:0=00ff;1=fffff\nMB:0=100;1=100\n"
        );

        // Exists with matching schemata: joined, nothing written.
        let matching = config(serde_json::json!({"closID": "shared", "l3CacheSchema": "L3:0=ff"}));
        matching
            .plan(&fake.resctrl(), "ctr")
            .unwrap()
            .create(6)
            .unwrap();
        assert_eq!(
            fake.read("shared/schemata"),
            "L3:0=00ff;1=fffff\nMB:0=100;1=100\n"
        );

        // Exists with other schemata: refused.
        let other = config(serde_json::json!({"closID": "shared", "memBwSchema": "MB:0=50"}));
        let err = format!("{:#}", other.plan(&fake.resctrl(), "ctr").unwrap_err());
        assert!(
            err.contains("its schemata has MB:0=100, the config MB:0=50"),
            "{err}"
        );

        // Missing without schemata: refused.
        let missing = config(serde_json::json!({"closID": "gone"}));
        let err = format!("{:#}", missing.plan(&fake.resctrl(), "ctr").unwrap_err());
        assert!(
            err.starts_with("linux.intelRdt.closID: there is no resctrl group"),
            "{err}"
        );

        // Missing with schemata: made and written, but left in place on delete.
        let new = config(serde_json::json!({"closID": "fresh", "memBwSchema": "MB:0=30"}));
        let group = new.plan(&fake.resctrl(), "ctr").unwrap();
        group.create(8).unwrap();
        assert_eq!(fake.read("fresh/schemata"), "MB:0=30\n");
        group.remove().unwrap();
        assert!(fake.root.join("fresh").exists());
    }

    #[test]
    fn features_the_host_lacks_are_refused() {
        let fake = FakeResctrl::new("lacking", &["L3"]);
        let resctrl = fake.resctrl();
        let err = config(serde_json::json!({"memBwSchema": "MB:0=20"}))
            .plan(&resctrl, "ctr")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("linux.intelRdt.memBwSchema: "), "{err}");
        let err = config(serde_json::json!({"enableMonitoring": true}))
            .plan(&resctrl, "ctr")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("linux.intelRdt.enableMonitoring: "),
            "{err}"
        );
        assert!(!fake.root.join("ctr").exists());
    }

    #[test]
    fn a_refused_write_carries_the_kernels_explanation() {
        let fake = FakeResctrl::new("refused", &["L3"]);
        fs::write(fake.root.join("info/last_cmd_status"), "Invalid domain 9\n").unwrap();
        let group = fake.group("g", "");
        // A directory where the file should be: the write fails, as the kernel's would.
        fs::remove_file(group.join("schemata")).unwrap();
        fs::create_dir(group.join("schemata")).unwrap();
        let rdt = config(serde_json::json!({"closID": "g"}));
        let planned = rdt.plan(&fake.resctrl(), "ctr").unwrap();
        let err = format!(
            "{:#}",
            planned.write_schemata(&["L3:9=f".into()]).unwrap_err()
        );
        assert!(err.contains("(resctrl: Invalid domain 9)"), "{err}");
    }

    #[test]
    fn config_errors_name_the_field() {
        assert_eq!(
            error(serde_json::json!({"closID": ".."})),
            "linux.intelRdt.closID: \"..\" is not a resctrl group name"
        );
        assert!(error(serde_json::json!({"closID": "a/b"})).starts_with("linux.intelRdt.closID"));
        assert_eq!(
            error(serde_json::json!({"memBwSchema": "L3:0=f"})),
            "linux.intelRdt.memBwSchema: \"L3:0=f\" does not start with MB:"
        );
        assert!(
            error(serde_json::json!({"l3CacheSchema": "L3:0=f\nMB:0=1"}))
                .starts_with("linux.intelRdt.l3CacheSchema: ")
        );
        assert!(
            error(serde_json::json!({"schemata": ["L3:0=f", "junk"]}))
                .starts_with("linux.intelRdt.schemata[1]: ")
        );
    }
}
