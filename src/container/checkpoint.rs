//! `checkpoint`: CRIU dumps (or pre-dumps) a running container into an image directory, as runc
//! asks it to; unless told to leave it running, the container is then deleted. `restore` reads
//! what is written here: the external mounts and namespaces, and `descriptors.json`.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use oci_spec::runtime::{LinuxNamespaceType, Spec};

use super::state::StateRoot;
use super::{Container, delete};
use crate::cgroups::{CgroupHandle, Version};
use crate::criu::{Criu, CriuOptions, Features, Notification, PageServerInfo, Req, ReqType};
use crate::rootfs;
use crate::rootfs::resolve::clean_components;

/// What the container's stdio was at the dump, by fd number (`pipe:[123]`, a path...): restore
/// hands CRIU its own stdio for the pipes, which cannot be restored from the image.
pub const DESCRIPTORS_FILE: &str = "descriptors.json";
const DUMP_LOG: &str = "dump.log";

pub struct CheckpointOptions {
    pub criu: CriuOptions,
    /// --parent-path: the previous (pre-)dump, relative to the image directory.
    pub parent_path: Option<PathBuf>,
    pub leave_running: bool,
    pub pre_dump: bool,
    /// --page-server ADDRESS:PORT: send the memory pages there.
    pub page_server: Option<(String, i32)>,
    /// --status-fd: gets a `\0` once the lazy-pages server is ready.
    pub status_fd: Option<std::os::fd::OwnedFd>,
}

pub fn checkpoint(root: &StateRoot, id: &str, mut options: CheckpointOptions) -> Result<()> {
    let container = Container::load(root, id)?;
    let status = container.status();
    if !status.can_checkpoint() {
        // runc's words.
        bail!(
            "Container cannot be checkpointed in {} state",
            status.name()
        );
    }
    let init = container.state.init.context("the container has no init")?;
    let criu = Criu::find()?;
    if options.pre_dump || options.parent_path.is_some() {
        criu.require(Features {
            mem_track: Some(true),
            ..Default::default()
        })?;
    }
    if options.criu.lazy_pages {
        criu.require(Features {
            lazy_pages: Some(true),
            ..Default::default()
        })?;
    }
    let dirs = options.criu.open_directories(true)?;
    let parent = (options.parent_path.as_deref())
        .map(|parent| check_parent(&options.criu.image_path, parent))
        .transpose()?;

    let config = &container.state.config;
    let mut opts = options
        .criu
        .opts(&dirs, DUMP_LOG, &container.state.annotations());
    opts.pid = Some(init.pid);
    opts.root = Some(container.state.rootfs.to_string_lossy().into_owned());
    opts.leave_running = Some(options.leave_running);
    if let Some(parent) = parent {
        opts.parent_img = Some(parent);
        opts.track_mem = Some(true);
    }
    opts.ps = (options.page_server.clone()).map(|(address, port)| PageServerInfo {
        address: Some(address),
        port: Some(port),
    });
    opts.external = external_namespaces(&criu, config)?;
    opts.freeze_cgroup = (container.state.cgroup.as_ref())
        .and_then(|handle| freezer_dir(handle, &criu))
        .map(|dir| dir.to_string_lossy().into_owned());
    let mut descriptors = Vec::new();
    let kind = if options.pre_dump {
        ReqType::PreDump
    } else {
        opts.ext_mnt = dump_mounts(config, init.pid)?;
        descriptors = write_descriptors(&options.criu.image_path, init.pid)?;
        ReqType::Dump
    };
    let request = Req {
        r#type: kind as i32,
        opts: Some(opts),
        ..Default::default()
    };
    crate::criu::Session::start()?
        .run(&request, |notification| {
            signal_lazy_pages_ready(&notification, &mut options.status_fd)
        })
        .map_err(|err| {
            let err = crate::criu::with_log(err, &dirs.log(DUMP_LOG));
            match host_files_hint(&descriptors) {
                Some(hint) => anyhow::anyhow!("{err:#}\n{hint}"),
                None => err,
            }
        })?;

    if !options.leave_running && !options.pre_dump {
        // CRIU killed the processes; what is left is berth's record, the cgroup and hooks.
        drop(container);
        delete(root, id, true)?;
    }
    Ok(())
}

/// runc's rule: relative to the image directory, and an existing directory.
fn check_parent(images: &Path, parent: &Path) -> Result<String> {
    if parent.is_absolute() {
        bail!("--parent-path must be relative");
    }
    let full = images.join(parent);
    if !full.is_dir() {
        bail!(
            "invalid --parent-path: {} is not a directory",
            full.display()
        );
    }
    Ok(parent.to_string_lossy().into_owned())
}

/// CRIU's name for a namespace type.
pub fn criu_namespace_name(kind: LinuxNamespaceType) -> &'static str {
    match kind {
        LinuxNamespaceType::Network => "net",
        LinuxNamespaceType::Pid => "pid",
        LinuxNamespaceType::Mount => "mnt",
        LinuxNamespaceType::Uts => "uts",
        LinuxNamespaceType::Ipc => "ipc",
        LinuxNamespaceType::User => "user",
        LinuxNamespaceType::Cgroup => "cgroup",
        LinuxNamespaceType::Time => "time",
    }
}

/// The namespaces CRIU treats as external when the container joined them by path (network and
/// pid, as runc does), and the CRIU version each needs.
pub const EXTERNAL_NAMESPACES: [(LinuxNamespaceType, i32); 2] = [
    (LinuxNamespaceType::Network, 31100),
    (LinuxNamespaceType::Pid, 31500),
];

/// The key under which an external namespace is dumped and found again at restore (runc's).
pub fn external_namespace_key(kind: LinuxNamespaceType) -> String {
    let name = criu_namespace_name(kind);
    let (first, rest) = name.split_at(1);
    format!("extRoot{}{rest}NS", first.to_uppercase())
}

/// The namespace path the config joins for `kind`, if any.
pub fn joined_namespace(config: &Spec, kind: LinuxNamespaceType) -> Option<&Path> {
    let namespaces = config.linux().as_ref()?.namespaces().as_ref()?;
    let namespace = namespaces.iter().find(|ns| ns.typ() == kind)?;
    namespace.path().as_deref()
}

/// `--external net[<inode>]:extRootNetNS` for each external namespace the container joined.
fn external_namespaces(criu: &Criu, config: &Spec) -> Result<Vec<String>> {
    let mut external = Vec::new();
    for (kind, min_version) in EXTERNAL_NAMESPACES {
        let Some(path) = joined_namespace(config, kind) else {
            continue;
        };
        let name = criu_namespace_name(kind);
        if criu.version < min_version {
            bail!(
                "criu {} cannot checkpoint a container that joined a {name} namespace (needs {min_version})",
                criu.version
            );
        }
        let inode = std::fs::metadata(path)
            .with_context(|| format!("the container's {name} namespace {}", path.display()))?
            .ino();
        external.push(format!("{name}[{inode}]:{}", external_namespace_key(kind)));
    }
    Ok(external)
}

/// The cgroup CRIU freezes the container with (runc's choice): the v1 freezer hierarchy's, or
/// the cgroup2 one, whose freezer CRIU knows since 3.14. Without it CRIU stops each process
/// with ptrace.
fn freezer_dir<'a>(handle: &'a CgroupHandle, criu: &Criu) -> Option<&'a Path> {
    let v1 = handle
        .dirs
        .iter()
        .find(|dir| dir.version == Version::V1 && dir.controllers.iter().any(|c| c == "freezer"));
    let v2 = || {
        let dir = handle.dirs.iter().find(|dir| dir.version == Version::V2)?;
        (handle.hierarchy == Version::V2 && criu.version >= 31400).then_some(dir)
    };
    v1.or_else(v2).map(|dir| dir.path.as_path())
}

/// A mount of the container that CRIU cannot dump because its source lies outside the
/// container: dumped under `key`, restored from `source`.
pub struct ExternalMount {
    pub key: String,
    pub source: String,
}

/// The config's bind mounts and device nodes (bind-mounted from the host in a user namespace),
/// keyed by their destination as runc keys them.
pub fn external_mounts(config: &Spec) -> Result<Vec<ExternalMount>> {
    let binds = config
        .mounts()
        .iter()
        .flatten()
        .filter(|m| rootfs::is_bind_mount(m));
    let mut mounts: Vec<ExternalMount> = binds
        .filter_map(|m| {
            Some(ExternalMount {
                key: clean_path(m.destination()),
                source: m.source().as_ref()?.to_string_lossy().into_owned(),
            })
        })
        .collect();
    for device in rootfs::devices_for(config)? {
        let path = clean_path(&device.path);
        mounts.push(ExternalMount {
            key: path.clone(),
            source: path,
        });
    }
    Ok(mounts)
}

/// What a masked file is covered with: a bind of /dev/null, dumped under this key.
pub const MASKED_FILE_SOURCE: &str = "/dev/null";

fn dump_mounts(config: &Spec, init: i32) -> Result<Vec<crate::criu::ExtMountMap>> {
    let mut map: Vec<_> = external_mounts(config)?
        .into_iter()
        .map(|m| crate::criu::ExtMountMap {
            val: m.key.clone(),
            key: m.key,
        })
        .collect();
    let masked = config
        .linux()
        .as_ref()
        .and_then(|l| l.masked_paths().as_ref());
    for path in masked.into_iter().flatten() {
        let inside = PathBuf::from(format!("/proc/{init}/root{}", clean_path(Path::new(path))));
        match std::fs::metadata(&inside) {
            Ok(meta) if !meta.is_dir() => map.push(crate::criu::ExtMountMap {
                key: clean_path(Path::new(path)),
                val: MASKED_FILE_SOURCE.into(),
            }),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("maskedPaths: {path}")),
        }
    }
    Ok(map)
}

/// `/a/./b/` as `/a/b`: the form CRIU finds in the container's mount table.
fn clean_path(path: &Path) -> String {
    let mut clean = PathBuf::from("/");
    clean.extend(clean_components(path));
    clean.to_string_lossy().into_owned()
}

/// Records where the init's stdin, stdout and stderr lead, as runc's `descriptors.json`, and
/// returns that.
fn write_descriptors(images: &Path, init: i32) -> Result<Vec<String>> {
    let descriptors: Vec<String> = (0..3)
        .map(|fd| {
            let link = format!("/proc/{init}/fd/{fd}");
            std::fs::read_link(&link)
                .map(|target| target.to_string_lossy().into_owned())
                .with_context(|| format!("reading {link}"))
        })
        .collect::<Result<_>>()?;
    let path = images.join(DESCRIPTORS_FILE);
    std::fs::write(&path, serde_json::to_vec(&descriptors)?)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(descriptors)
}

/// The likely cause of a failed dump when the container's stdio are files (not pipes or a
/// terminal): the caller's, outside the container's mounts, which CRIU cannot dump.
fn host_files_hint(descriptors: &[String]) -> Option<String> {
    let files: Vec<String> = (descriptors.iter().enumerate())
        .filter(|(_, target)| target.starts_with('/') && !target.starts_with("/dev/pts/"))
        .map(|(fd, target)| format!("fd {fd} is {target}"))
        .collect();
    (!files.is_empty()).then(|| {
        format!(
            "the container's stdio are files of the host ({}): CRIU dumps pipes and terminals, \
             not files outside the container",
            files.join(", ")
        )
    })
}

/// CRIU says its lazy-pages server is ready: tell whoever waits on --status-fd, once.
fn signal_lazy_pages_ready(
    notification: &Notification,
    status_fd: &mut Option<std::os::fd::OwnedFd>,
) -> Result<()> {
    if notification.script == "status-ready"
        && let Some(fd) = status_fd.take()
    {
        nix::unistd::write(&fd, &[0]).context("writing to --status-fd")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_files_as_stdio_get_the_hint() {
        let pipes = [
            "pipe:[1]".to_string(),
            "pipe:[2]".into(),
            "/dev/pts/0".into(),
        ];
        assert_eq!(host_files_hint(&pipes), None);
        let files = [
            "/dev/null".to_string(),
            "pipe:[2]".into(),
            "/var/log/x".into(),
        ];
        let hint = host_files_hint(&files).unwrap();
        assert!(
            hint.contains("fd 0 is /dev/null, fd 2 is /var/log/x"),
            "{hint}"
        );
    }

    #[test]
    fn external_namespace_keys_are_runcs() {
        assert_eq!(
            external_namespace_key(LinuxNamespaceType::Network),
            "extRootNetNS"
        );
        assert_eq!(
            external_namespace_key(LinuxNamespaceType::Pid),
            "extRootPidNS"
        );
    }

    #[test]
    fn bind_mounts_and_devices_are_external_under_their_clean_destination() {
        let config: Spec = serde_json::from_value(serde_json::json!({
            "ociVersion": "1.0.0",
            "root": {"path": "rootfs"},
            "mounts": [
                {"destination": "/data/./x/", "type": "bind", "source": "/srv/x", "options": ["rbind"]},
                {"destination": "/etc/hosts", "source": "/run/hosts", "options": ["bind", "ro"]},
                {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs"},
            ],
            "linux": {"devices": [{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229}]},
        }))
        .unwrap();
        let mounts: Vec<(String, String)> = external_mounts(&config)
            .unwrap()
            .into_iter()
            .map(|m| (m.key, m.source))
            .collect();
        assert_eq!(mounts[0], ("/data/x".into(), "/srv/x".into()));
        assert_eq!(mounts[1], ("/etc/hosts".into(), "/run/hosts".into()));
        assert!(mounts.contains(&("/dev/null".into(), "/dev/null".into())));
        assert!(mounts.contains(&("/dev/fuse".into(), "/dev/fuse".into())));
        assert!(!mounts.iter().any(|(key, _)| key == "/tmp"));
    }
}
