//! `restore`: a new container from a checkpoint. Like `create` it claims the id, makes the
//! cgroup and records the state; then CRIU, instead of a fresh init, brings the dumped processes
//! back into that cgroup on a bind of the bundle's rootfs, and the container is `running` with
//! the restored init as its init. Without --detach berth stays as its parent, as `run` does.
//! Any failure undoes everything done so far.

use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::unistd::Pid;
use oci_spec::runtime::{LinuxNamespace, LinuxNamespaceType, Mount, Spec};

use super::checkpoint::{
    DESCRIPTORS_FILE, EXTERNAL_NAMESPACES, MASKED_FILE_SOURCE, criu_namespace_name,
    external_mounts, external_namespace_key, joined_namespace,
};
use super::create::{ConsoleTarget, connect_console, container_resources};
use super::delete;
use super::foreground::{self, receive_pty_master};
use super::rollback::Rollback;
use super::state::{Phase, ProcessId, State, StateRoot, Status};
use crate::atomic_write::write_atomically;
use crate::cgroups::{self, CgroupOptions};
use crate::criu::{
    CgroupRoot, Criu, CriuOptions, ExtMountMap, Features, InheritFd, JoinNamespace, Notification,
    Opts, Req, ReqType, Session,
};
use crate::intelrdt;
use crate::rootfs::resolve::{Kind, clean_components, ensure_in_root};
use crate::spec::{self, Bundle};
use crate::{hooks, sys};

const RESTORE_LOG: &str = "restore.log";
/// The bind of the rootfs CRIU restores onto, in the container's state directory: CRIU wants a
/// mount point whose parent is not overmounted.
const CRIU_ROOT: &str = "criu-root";

pub struct RestoreOptions {
    pub id: String,
    pub bundle: PathBuf,
    pub cgroups: CgroupOptions,
    pub criu: CriuOptions,
    pub pid_file: Option<PathBuf>,
    pub console_socket: Option<PathBuf>,
    pub detach: bool,
    pub no_subreaper: bool,
}

/// Returns the exit code berth itself should exit with (the container's, in the foreground).
pub fn restore(root: &StateRoot, options: &RestoreOptions) -> Result<i32> {
    let bundle = spec::load(&options.bundle)?;
    let rdt_group = intelrdt::plan(bundle.linux(), &options.id)?;
    let dirs = options.criu.open_directories(false)?;
    let pipes = stdio_pipes(&options.criu.image_path)?;
    let criu = Criu::find()?;
    if options.criu.lazy_pages {
        criu.require(Features {
            lazy_pages: Some(true),
            ..Default::default()
        })?;
    }
    let console = match (&options.console_socket, options.detach) {
        (Some(path), _) => ConsoleTarget::Socket(path.clone()),
        (None, false) => ConsoleTarget::Proxy,
        (None, true) => ConsoleTarget::None,
    };
    let (console_for_criu, console_receiver) = connect_console(&bundle, console)?;
    let signals = (!options.detach)
        .then(foreground::block_signals)
        .transpose()?;
    if !options.detach && !options.no_subreaper {
        sys::set_child_subreaper()?;
    }
    let cgroups_path = bundle
        .linux()
        .cgroups_path()
        .as_ref()
        .map(|p| p.to_string_lossy());
    let cgroup = cgroups::for_new_container(cgroups_path.as_deref(), &options.id, options.cgroups)?;

    let dir = root.claim(&options.id)?;
    let mut rollback = Rollback::new(&dir, rdt_group.as_ref());
    let mut state = State {
        id: options.id.clone(),
        bundle: bundle.dir.clone(),
        rootfs: bundle.rootfs.clone(),
        created: now(),
        phase: Phase::Creating,
        creator: Some(ProcessId::of(nix::unistd::getpid())?),
        init: None,
        cgroup: Some(cgroup.handle()),
        intel_rdt: rdt_group.clone(),
        // CRIU restores the mount namespace the container had.
        shared_rootfs: None,
        config: bundle.spec.clone(),
    };
    state.save(&dir)?;
    let cgroup = rollback.cgroup.insert(cgroup);
    cgroup.create()?;
    state.cgroup = Some(cgroup.handle()).filter(|handle| !handle.dirs.is_empty());
    state.save(&dir)?;
    cgroup.apply(&container_resources(&bundle))?;

    make_mountpoints(&bundle)?;
    let criu_root = CriuRoot::mount(&dir, &bundle.rootfs)?;
    let mut opts = options.criu.opts(&dirs, RESTORE_LOG, &state.annotations());
    opts.root = Some(criu_root.0.to_string_lossy().into_owned());
    // The restored init becomes our child, as a created init is, not criu's.
    opts.rst_sibling = Some(true);
    opts.evasive_devices = Some(true);
    opts.ext_mnt = restore_mounts(&bundle.spec)?;
    let namespaces = join_namespaces(&criu, &bundle.spec, &mut opts)?;
    opts.inherit_fd.extend(pipes);
    let inherited: Vec<_> = namespaces.iter().map(|file| file.as_fd()).collect();
    let session = Session::start_restore(&inherited)?;
    cgroup.add_process(session.pid().as_raw())?;
    opts.cg_root = cgroup_roots(session.pid())?;
    let request = Req {
        r#type: ReqType::Restore as i32,
        opts: Some(opts),
        ..Default::default()
    };
    let restored = session.run(&request, |notification| {
        on_notification(
            notification,
            &mut state,
            &dir,
            &mut rollback.init,
            console_for_criu.as_ref(),
        )
    });
    restored.map_err(|err| crate::criu::with_log(err, &dirs.log(RESTORE_LOG)))?;
    drop((criu_root, namespaces, console_for_criu));

    let init = state
        .init
        .context("criu restored no init (no post-restore notification)")?;
    join_time_namespace(&mut state.config, init.pid())?;
    if let Some(pid_file) = &options.pid_file {
        write_atomically(pid_file, init.pid.to_string().as_bytes())
            .with_context(|| format!("--pid-file {}", pid_file.display()))?;
    }
    state.save(&dir)?;
    rollback.disarm();

    let Some(signals) = signals else {
        return Ok(0);
    };
    let pty = console_receiver
        .as_ref()
        .map(receive_pty_master)
        .transpose();
    let pty = match pty {
        Ok(pty) => pty,
        Err(err) => {
            let _ = delete(root, &options.id, true);
            return Err(err);
        }
    };
    let _raw_terminal = pty.as_ref().map(|_| foreground::RawTerminal::enter());
    let code = foreground::wait(init.pid(), signals, pty)?;
    delete(root, &options.id, true)?;
    Ok(code)
}

fn now() -> String {
    humantime::format_rfc3339_nanos(std::time::SystemTime::now()).to_string()
}

/// What CRIU reports while it restores: the namespaces exist (the init joins its Intel RDT
/// group and the create hooks run, as in runc), the processes are back (the container now has
/// its init), and a terminal's master.
fn on_notification(
    notification: Notification,
    state: &mut State,
    dir: &Path,
    init: &mut Option<(Pid, OwnedFd)>,
    console: Option<&UnixStream>,
) -> Result<()> {
    match notification.script.as_str() {
        "setup-namespaces" => {
            let pid = notification.pid.context("setup-namespaces without a pid")?;
            // The restored init's tasks are forked after this and inherit its resctrl group,
            // which CRIU knows nothing of (runc leaves restored containers out of theirs).
            if let Some(group) = &state.intel_rdt {
                group.create(pid)?;
            }
            let mut json = state.to_oci_json(Status::Creating);
            json["pid"] = pid.into();
            let json = serde_json::to_vec(&json)?;
            let hooks = state.config.hooks().as_ref();
            hooks::run_all("prestart", hooks.and_then(|h| h.prestart().as_ref()), &json)?;
            hooks::run_all(
                "createRuntime",
                hooks.and_then(|h| h.create_runtime().as_ref()),
                &json,
            )
        }
        "post-restore" => {
            let pid = Pid::from_raw(notification.pid.context("post-restore without a pid")?);
            let pidfd = sys::pidfd_open(pid).context("pidfd_open of the restored init")?;
            *init = Some((pid, pidfd));
            state.init = Some(ProcessId::of(pid)?);
            state.phase = Phase::Started;
            state.creator = None;
            state.created = now();
            state.save(dir)
        }
        "orphan-pts-master" => {
            let master = notification.fd.context("criu sent no pty master")?;
            let socket = console.context("criu restored a terminal, but the config has none")?;
            sys::send_fd(socket.as_fd(), b"/dev/ptmx", master.as_fd())
                .context("sending the restored terminal's master")
        }
        _ => Ok(()),
    }
}

/// The checkpointed stdio that were pipes: CRIU gives the restored processes ours instead (the
/// same fd numbers in criu, which inherits our stdio).
fn stdio_pipes(images: &Path) -> Result<Vec<InheritFd>> {
    let path = images.join(DESCRIPTORS_FILE);
    let json = std::fs::read(&path).with_context(|| {
        format!(
            "--image-path {}: no checkpoint of berth or runc there ({})",
            images.display(),
            path.display()
        )
    })?;
    let descriptors: Vec<String> =
        serde_json::from_slice(&json).with_context(|| format!("parsing {}", path.display()))?;
    Ok(descriptors
        .into_iter()
        .enumerate()
        .filter(|(_, target)| target.contains("pipe:"))
        .map(|(fd, target)| InheritFd {
            key: target,
            fd: fd as i32,
        })
        .collect())
}

/// The external mounts as checkpoint keyed them, from their host sources now.
fn restore_mounts(config: &Spec) -> Result<Vec<ExtMountMap>> {
    let mut map: Vec<_> = external_mounts(config)?
        .into_iter()
        .map(|m| ExtMountMap {
            key: m.key,
            val: m.source,
        })
        .collect();
    let masked = config
        .linux()
        .as_ref()
        .and_then(|l| l.masked_paths().as_ref());
    if masked.is_some_and(|paths| !paths.is_empty()) {
        map.push(ExtMountMap {
            key: MASKED_FILE_SOURCE.into(),
            val: MASKED_FILE_SOURCE.into(),
        });
    }
    Ok(map)
}

/// Namespaces the config joins by path: network and pid ones are handed to CRIU as the external
/// namespaces checkpoint recorded (their fds stay open in the returned files until CRIU is
/// done), the others CRIU joins itself. CRIU cannot join a cgroup namespace.
fn join_namespaces(criu: &Criu, config: &Spec, opts: &mut Opts) -> Result<Vec<File>> {
    let mut files = Vec::new();
    let namespaces = config
        .linux()
        .as_ref()
        .and_then(|l| l.namespaces().as_ref());
    for namespace in namespaces.into_iter().flatten() {
        let kind = namespace.typ();
        let Some(path) = joined_namespace(config, kind) else {
            continue;
        };
        let name = criu_namespace_name(kind);
        if let Some((_, min_version)) = EXTERNAL_NAMESPACES.iter().find(|(k, _)| *k == kind) {
            if criu.version < *min_version {
                bail!(
                    "criu {} cannot restore into a given {name} namespace (needs {min_version})",
                    criu.version
                );
            }
            let file = File::open(path)
                .with_context(|| format!("the container's {name} namespace {}", path.display()))?;
            opts.inherit_fd.push(InheritFd {
                key: external_namespace_key(kind),
                fd: file.as_raw_fd(),
            });
            files.push(file);
        } else if kind == LinuxNamespaceType::Cgroup {
            bail!(
                "criu cannot restore into a given cgroup namespace ({})",
                path.display()
            );
        } else {
            opts.join_ns.push(JoinNamespace {
                ns: name.into(),
                ns_file: path.to_string_lossy().into_owned(),
            });
        }
    }
    Ok(files)
}

/// The cgroups criu was just moved into (the container's): CRIU restores the dumped cgroup
/// tree below them instead of at the dumped paths, as runc asks it to.
fn cgroup_roots(criu: Pid) -> Result<Vec<CgroupRoot>> {
    let cgroups = procfs::process::Process::new(criu.as_raw())
        .and_then(|process| process.cgroups())
        .with_context(|| format!("reading /proc/{criu}/cgroup"))?;
    let mut roots = Vec::new();
    for cgroup in cgroups.0 {
        // cgroup v2 has no controller names: CRIU takes "" for it, as runc sends.
        let controllers = if cgroup.controllers.is_empty() {
            vec![String::new()]
        } else {
            cgroup.controllers
        };
        roots.extend(controllers.into_iter().map(|ctrl| CgroupRoot {
            ctrl: Some(ctrl),
            path: cgroup.pathname.clone(),
        }));
    }
    Ok(roots)
}

/// CRIU restores into a new time namespace (keeping the dumped clocks) where the kernel has
/// them; the config then says so, so that `exec` joins it (runc does the same).
fn join_time_namespace(config: &mut Spec, init: Pid) -> Result<()> {
    let ours = std::fs::metadata("/proc/self/ns/time");
    let theirs = std::fs::metadata(format!("/proc/{init}/ns/time"));
    let (Ok(ours), Ok(theirs)) = (ours, theirs) else {
        return Ok(()); // a kernel without time namespaces
    };
    use std::os::unix::fs::MetadataExt;
    if ours.ino() == theirs.ino() {
        return Ok(());
    }
    let linux = config.linux_mut().get_or_insert_with(Default::default);
    let namespaces = linux.namespaces_mut().get_or_insert_with(Vec::new);
    if !namespaces
        .iter()
        .any(|ns| ns.typ() == LinuxNamespaceType::Time)
    {
        let mut time = LinuxNamespace::default();
        time.set_typ(LinuxNamespaceType::Time);
        namespaces.push(time);
    }
    Ok(())
}

/// Mount points that CRIU expects in the rootfs but a fresh rootfs may lack (the init made them
/// when the container was created). Those under a tmpfs or bind mount are not the rootfs's:
/// CRIU restores a tmpfs with its content, and a bind source has its own.
fn make_mountpoints(bundle: &Bundle) -> Result<()> {
    let root = File::open(&bundle.rootfs)
        .with_context(|| format!("opening the rootfs {}", bundle.rootfs.display()))?;
    let mounts = bundle.spec.mounts().as_deref().unwrap_or_default();
    let covers = |m: &Mount| m.typ().as_deref() == Some("tmpfs") || crate::rootfs::is_bind_mount(m);
    for mount in mounts {
        let destination = clean_components(mount.destination());
        let covered = mounts.iter().any(|other| {
            let other_dest = clean_components(other.destination());
            covers(other)
                && destination.len() > other_dest.len()
                && destination.starts_with(&other_dest)
        });
        if covered || mount.typ().as_deref() == Some("cgroup") {
            continue;
        }
        let is_file = crate::rootfs::is_bind_mount(mount)
            && mount.source().as_ref().is_some_and(|s| !s.is_dir());
        let kind = if is_file { Kind::File } else { Kind::Dir };
        ensure_in_root(root.as_fd(), mount.destination(), kind, true)
            .with_context(|| format!("mount point {}", mount.destination().display()))?;
    }
    Ok(())
}

/// The rootfs bound onto `<state dir>/criu-root` while CRIU restores; unmounted and removed on
/// drop (the restored container has its own mount namespace by then).
struct CriuRoot(PathBuf);

impl CriuRoot {
    fn mount(state_dir: &Path, rootfs: &Path) -> Result<CriuRoot> {
        let path = state_dir.join(CRIU_ROOT);
        std::fs::create_dir(&path).with_context(|| format!("creating {}", path.display()))?;
        let root = CriuRoot(path);
        mount(
            Some(rootfs),
            &root.0,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        )
        .with_context(|| format!("binding the rootfs onto {}", root.0.display()))?;
        Ok(root)
    }
}

impl Drop for CriuRoot {
    fn drop(&mut self) {
        let _ = umount2(&self.0, MntFlags::MNT_DETACH);
        let _ = std::fs::remove_dir(&self.0);
    }
}
