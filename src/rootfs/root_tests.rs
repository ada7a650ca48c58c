//! End-to-end checks of the three phases, as real root, inside throwaway namespaces.
//!
//! Forking inside the multi-threaded test harness can deadlock the child on a lock another
//! test thread held, so each test re-executes this test binary for just itself; that copy
//! forks a child which unshares mount/pid/net/ipc/uts namespaces and forks again, so the
//! scenario runs as pid 1 of a private pid namespace and every mount dies with it. Errors come
//! back through a pipe and the exit status. Skipped when not running as root.

use std::fs;
use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, ensure};
use nix::fcntl::{OFlag, open};
use nix::sched::{CloneFlags, unshare};
use nix::sys::stat::Mode;
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::{ForkResult, fork, pipe};
use oci_spec::runtime::Spec;
use procfs::process::Process;

use super::*;

/// Set in the re-executed copy of the test binary.
const CHILD_ENV: &str = "BERTH_ROOTFS_ROOT_TEST";

/// A scratch directory removed when the test ends, pass or fail.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn scratch(name: &str) -> Scratch {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let dir = std::env::temp_dir().join(format!(
        "berth-rootfs-{name}-{}-{nanos}",
        std::process::id()
    ));
    fs::create_dir_all(&dir).unwrap();
    Scratch(dir)
}

/// Run `scenario` (with a fresh scratch directory) as pid 1 of private namespaces, in a
/// re-executed copy of this test binary that runs only `test`.
fn root_scenario(test: &str, scenario: fn(&Path) -> Result<()>) {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    if std::env::var_os(CHILD_ENV).is_some() {
        let base = scratch(test);
        in_private_namespaces(|| scenario(&base.0));
        return;
    }
    let exe = std::env::current_exe().unwrap();
    let out = Command::new(exe)
        .args([
            "--exact",
            &format!("rootfs::root_tests::{test}"),
            "--test-threads=1",
            "--nocapture",
        ])
        .env(CHILD_ENV, "1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{test} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn in_private_namespaces(scenario: impl FnOnce() -> Result<()>) {
    let (read_end, write_end) = pipe().unwrap();
    // SAFETY: the child only runs the scenario and then _exits; it never returns to the harness.
    match unsafe { fork() }.unwrap() {
        ForkResult::Child => {
            drop(read_end);
            let code = run_as_namespace_init(scenario, write_end);
            // SAFETY: _exit ends the forked child without running the harness's atexit handlers.
            unsafe { libc::_exit(code) }
        }
        ForkResult::Parent { child } => {
            drop(write_end);
            let mut report = String::new();
            fs::File::from(read_end)
                .read_to_string(&mut report)
                .unwrap();
            let status = waitpid(child, None).unwrap();
            assert_eq!(
                status,
                WaitStatus::Exited(child, 0),
                "scenario failed: {report}"
            );
        }
    }
}

fn run_as_namespace_init(scenario: impl FnOnce() -> Result<()>, report: OwnedFd) -> i32 {
    let flags = CloneFlags::CLONE_NEWNS
        | CloneFlags::CLONE_NEWPID
        | CloneFlags::CLONE_NEWNET
        | CloneFlags::CLONE_NEWIPC
        | CloneFlags::CLONE_NEWUTS;
    if let Err(e) = unshare(flags) {
        let _ = nix::unistd::write(&report, format!("unshare: {e}").as_bytes());
        return 1;
    }
    // SAFETY: as above, the grandchild _exits after the scenario.
    match unsafe { fork() } {
        Ok(ForkResult::Child) => {
            let code = match scenario() {
                Ok(()) => 0,
                Err(e) => {
                    let _ = nix::unistd::write(&report, format!("{e:#}").as_bytes());
                    1
                }
            };
            // SAFETY: see in_private_namespaces.
            unsafe { libc::_exit(code) }
        }
        Ok(ForkResult::Parent { child }) => match waitpid(child, None) {
            Ok(WaitStatus::Exited(_, code)) => code,
            _ => 1,
        },
        Err(_) => 1,
    }
}

fn spec_from(json: serde_json::Value) -> Spec {
    serde_json::from_value(json).unwrap()
}

fn namespaces() -> serde_json::Value {
    serde_json::json!([{"type": "mount"}, {"type": "pid"}, {"type": "network"}, {"type": "ipc"}, {"type": "uts"}])
}

/// The image: a few directories and the traps a malicious image would set.
struct Image {
    rootfs: PathBuf,
    host_target: PathBuf,
    host_secret: PathBuf,
    host_data: PathBuf,
}

fn build_image(base: &Path) -> Image {
    let rootfs = base.join("rootfs");
    for dir in [
        "proc",
        "sys",
        "dev",
        "etc",
        "mnt/maskdir",
        "mnt/rodir",
        "tmpcopy/sub",
    ] {
        fs::create_dir_all(rootfs.join(dir)).unwrap();
    }
    let host_target = base.join("host-target");
    fs::create_dir_all(&host_target).unwrap();
    let host_secret = base.join("host-secret");
    fs::write(&host_secret, "host secret").unwrap();
    let host_data = base.join("host-data");
    fs::create_dir_all(&host_data).unwrap();
    fs::write(host_data.join("hello"), "hi").unwrap();
    fs::write(base.join("host-file"), "bound file").unwrap();
    fs::write(rootfs.join("etc/secret"), "masked").unwrap();
    fs::write(rootfs.join("mnt/maskdir/inside"), "masked").unwrap();
    fs::write(rootfs.join("tmpcopy/seed"), "seed").unwrap();
    fs::set_permissions(
        rootfs.join("tmpcopy/sub"),
        fs::Permissions::from_mode(0o1777),
    )
    .unwrap();
    // Traps: absolute symlinks naming host paths, which must resolve inside the rootfs.
    symlink(&host_target, rootfs.join("mnt/escape")).unwrap();
    symlink(&host_secret, rootfs.join("dev/null")).unwrap();
    symlink(&host_secret, rootfs.join("dev/console")).unwrap();
    symlink(&host_secret, rootfs.join("dev/stdin")).unwrap();
    Image {
        rootfs,
        host_target,
        host_secret,
        host_data,
    }
}

fn full_spec(base: &Path, image: &Image) -> Spec {
    spec_from(serde_json::json!({
        "ociVersion": "1.3.0",
        "root": {"path": image.rootfs, "readonly": true},
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
             "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]},
            {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
             "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]},
            {"destination": "/mnt/data", "type": "bind", "source": image.host_data, "options": ["rbind", "ro", "nosuid"]},
            {"destination": "/mnt/data", "options": ["remount", "bind", "ro", "nosuid", "noexec"]},
            {"destination": "/mnt/rro", "source": image.host_data, "options": ["rbind", "rro", "rnodev"]},
            {"destination": "/etc/bound", "source": base.join("host-file"), "options": ["bind"]},
            {"destination": "/mnt/escape/x", "type": "tmpfs", "source": "tmpfs", "options": ["noatime"]},
            {"destination": "/tmpcopy", "type": "tmpfs", "source": "tmpfs", "options": ["tmpcopyup", "strictatime"]},
        ],
        "linux": {
            "namespaces": namespaces(),
            "devices": [{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229, "fileMode": 384, "uid": 1000, "gid": 1000}],
            "sysctl": {"net.ipv4.ip_forward": "1", "kernel.shmmax": "12345"},
            "maskedPaths": ["/proc/version", "/etc/secret", "/mnt/maskdir", "/does/not/exist"],
            "readonlyPaths": ["/proc/sys", "/mnt/rodir", "/not/there"],
        }
    }))
}

fn mount_options(mount_point: &str) -> Result<Vec<String>> {
    let infos = Process::myself()?.mountinfo()?;
    let info = infos
        .0
        .iter()
        .rev()
        .find(|m| m.mount_point == Path::new(mount_point))
        .with_context(|| format!("{mount_point} is not a mount point"))?;
    Ok(info.mount_options.keys().cloned().collect())
}

fn has_options(mount_point: &str, wanted: &[&str]) -> Result<()> {
    let options = mount_options(mount_point)?;
    for w in wanted {
        ensure!(
            options.iter().any(|o| o == w),
            "{mount_point}: {w} missing from {options:?}"
        );
    }
    Ok(())
}

fn char_device(path: &str, major: u64, minor: u64, mode: u32) -> Result<()> {
    let meta = fs::symlink_metadata(path).with_context(|| path.to_string())?;
    ensure!(
        meta.file_type().is_char_device(),
        "{path} is not a char device"
    );
    let rdev = meta.rdev();
    ensure!(
        (nix::sys::stat::major(rdev), nix::sys::stat::minor(rdev)) == (major, minor),
        "{path} has the wrong numbers"
    );
    ensure!(
        meta.mode() & 0o7777 == mode,
        "{path} mode {:o}",
        meta.mode() & 0o7777
    );
    Ok(())
}

fn full_lifecycle(base: &Path) -> Result<()> {
    let image = build_image(base);
    let spec = full_spec(base, &image);
    let opts = RootfsOptions {
        rootfs: &image.rootfs,
        no_pivot: false,
        own_mount_namespace: true,
        cgroup_namespace: false,
        extra_mounts: Vec::new(),
        host_clones: HostClones::default(),
        before_cgroup_use: None,
    };
    let prepared = prepare(&spec, opts)?;

    // Seen from the host side before entering: no trap was followed.
    ensure!(
        fs::read_dir(&image.host_target)?.next().is_none(),
        "a mount destination escaped to the host"
    );
    ensure!(
        fs::read_to_string(&image.host_secret)? == "host secret",
        "host file was changed"
    );
    ensure!(
        fs::symlink_metadata(image.rootfs.join("dev/null"))?
            .file_type()
            .is_char_device(),
        "the image's /dev/null symlink was not replaced"
    );

    let entered = prepared.enter()?;
    let master =
        nix::pty::posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY).context("open /dev/ptmx")?;
    nix::pty::grantpt(&master)?;
    nix::pty::unlockpt(&master)?;
    let slave = nix::pty::ptsname_r(&master)?;
    bind_console(Path::new(&slave))?;
    entered.finish(&spec)?;

    ensure!(std::env::current_dir()? == Path::new("/"), "cwd is not /");
    ensure!(
        !Path::new(&image.rootfs).exists(),
        "the host is still visible after pivot_root"
    );
    has_options("/", &["ro"])?;
    has_options("/mnt/data", &["ro", "nosuid", "noexec"])?;
    has_options("/mnt/rro", &["ro", "nodev"])?;
    has_options("/dev/shm", &["nosuid", "nodev", "noexec"])?;
    has_options("/sys", &["ro", "nosuid"])?;
    // The symlink was resolved inside the container: the mount sits at the image's copy of the
    // host path it names.
    let escaped = image.host_target.join("x");
    has_options(escaped.to_str().context("scratch path")?, &["noatime"])?;
    has_options("/dev/mqueue", &["nosuid"])?;
    ensure!(
        fs::read_to_string("/mnt/data/hello").context("/mnt/data/hello")? == "hi",
        "bind mount content"
    );
    ensure!(
        fs::read_to_string("/etc/bound").context("/etc/bound")? == "bound file",
        "file bind mount content"
    );
    ensure!(
        fs::read_to_string("/tmpcopy/seed").context("/tmpcopy/seed")? == "seed",
        "tmpcopyup did not copy"
    );
    ensure!(
        fs::metadata("/tmpcopy/sub").context("/tmpcopy/sub")?.mode() & 0o7777 == 0o1777,
        "tmpcopyup mode"
    );
    ensure!(
        fs::write("/mnt/data/new", "x").is_err(),
        "/mnt/data is writable"
    );

    char_device("/dev/null", 1, 3, 0o666)?;
    char_device("/dev/urandom", 1, 9, 0o666)?;
    char_device("/dev/fuse", 10, 229, 0o600)?;
    ensure!(
        fs::metadata("/dev/fuse").context("/dev/fuse")?.uid() == 1000,
        "/dev/fuse owner"
    );
    ensure!(
        fs::read_link("/dev/ptmx").context("/dev/ptmx")? == Path::new("pts/ptmx"),
        "/dev/ptmx link"
    );
    ensure!(
        fs::read_link("/dev/stdin").context("/dev/stdin")? == Path::new("/proc/self/fd/0"),
        "/dev/stdin link"
    );
    ensure!(
        fs::read_link("/dev/fd").context("/dev/fd")? == Path::new("/proc/self/fd"),
        "/dev/fd link"
    );
    let console = fs::symlink_metadata("/dev/console").context("/dev/console")?;
    ensure!(
        console.file_type().is_char_device(),
        "/dev/console is not the pty"
    );
    ensure!(
        nix::sys::stat::major(console.rdev()) >= 136,
        "/dev/console is not a pty slave"
    );

    ensure!(
        fs::read_to_string("/proc/sys/net/ipv4/ip_forward")
            .context("/proc/sys/net/ipv4/ip_forward")?
            .trim()
            == "1",
        "sysctl not applied"
    );
    ensure!(
        fs::read_to_string("/proc/sys/kernel/shmmax")
            .context("/proc/sys/kernel/shmmax")?
            .trim()
            == "12345",
        "ipc sysctl not applied"
    );
    ensure!(
        fs::write("/proc/sys/net/ipv4/ip_forward", "0").is_err(),
        "/proc/sys is writable"
    );
    has_options("/mnt/rodir", &["ro"])?;
    ensure!(
        fs::read("/proc/version")
            .context("/proc/version")?
            .is_empty(),
        "/proc/version not masked"
    );
    ensure!(
        fs::read("/etc/secret").context("/etc/secret")?.is_empty(),
        "/etc/secret not masked"
    );
    ensure!(
        fs::read_dir("/mnt/maskdir")
            .context("/mnt/maskdir")?
            .next()
            .is_none(),
        "/mnt/maskdir not masked"
    );
    has_options("/mnt/maskdir", &["ro"])?;
    if Path::new("/sys/fs/cgroup/memory").exists() {
        // v1: the hierarchies take the entry's ro, their tmpfs stays writable (as in runc).
        has_options("/sys/fs/cgroup/memory", &["ro"])?;
        has_options("/sys/fs/cgroup", &["rw"])?;
    } else if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        has_options("/sys/fs/cgroup", &["ro"])?;
    } else {
        anyhow::bail!("/sys/fs/cgroup shows no cgroup hierarchy");
    }
    Ok(())
}

#[test]
fn prepare_enter_finish_as_root() {
    root_scenario("prepare_enter_finish_as_root", full_lifecycle);
}

fn proc_on_symlink_is_refused(base: &Path) -> Result<()> {
    let rootfs = base.join("rootfs");
    fs::create_dir_all(rootfs.join("tmp"))?;
    symlink("/tmp", rootfs.join("proc"))?;
    let spec = spec_from(serde_json::json!({
        "ociVersion": "1.3.0",
        "root": {"path": rootfs},
        "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"}],
        "linux": {"namespaces": namespaces()}
    }));
    let opts = RootfsOptions {
        rootfs: &rootfs,
        no_pivot: false,
        own_mount_namespace: true,
        cgroup_namespace: false,
        extra_mounts: Vec::new(),
        host_clones: HostClones::default(),
        before_cgroup_use: None,
    };
    let err = prepare(&spec, opts)
        .err()
        .context("proc was mounted over a symlink")?;
    ensure!(
        format!("{err:#}").contains("symlink"),
        "unexpected error: {err:#}"
    );
    Ok(())
}

#[test]
fn proc_over_a_symlink_fails() {
    root_scenario("proc_over_a_symlink_fails", proc_on_symlink_is_refused);
}

fn masking_refuses_a_fake_dev_null(base: &Path) -> Result<()> {
    let rootfs = base.join("rootfs");
    fs::create_dir_all(rootfs.join("dev"))?;
    fs::write(rootfs.join("secret"), "data")?;
    fs::write(base.join("host-file"), "host")?;
    symlink(base.join("host-file"), rootfs.join("dev/null"))?;
    let root = open(&rootfs, OFlag::O_PATH | OFlag::O_DIRECTORY, Mode::empty())?;
    let err = harden::mask(root.as_fd(), &["/secret".to_string()], None)
        .err()
        .context("masked with a fake /dev/null")?;
    ensure!(
        format!("{err:#}").contains("not the character device 1:3"),
        "unexpected error: {err:#}"
    );
    ensure!(
        fs::read_to_string(rootfs.join("secret"))? == "data",
        "the path was mounted over"
    );
    Ok(())
}

#[test]
fn masking_with_a_symlinked_dev_null_fails() {
    root_scenario(
        "masking_with_a_symlinked_dev_null_fails",
        masking_refuses_a_fake_dev_null,
    );
}

fn no_pivot_enters_with_chroot(base: &Path) -> Result<()> {
    let rootfs = base.join("rootfs");
    fs::create_dir_all(rootfs.join("dev"))?;
    fs::write(rootfs.join("marker"), "inside")?;
    let spec = spec_from(serde_json::json!({
        "ociVersion": "1.3.0",
        "root": {"path": rootfs},
        "linux": {"namespaces": namespaces(), "rootfsPropagation": "private"}
    }));
    let opts = RootfsOptions {
        rootfs: &rootfs,
        no_pivot: true,
        own_mount_namespace: true,
        cgroup_namespace: false,
        extra_mounts: Vec::new(),
        host_clones: HostClones::default(),
        before_cgroup_use: None,
    };
    prepare(&spec, opts)?.enter()?.finish(&spec)?;
    ensure!(
        fs::read_to_string("/marker").context("/marker")? == "inside",
        "not inside the rootfs"
    );
    char_device("/dev/zero", 1, 5, 0o666)?;
    Ok(())
}

#[test]
fn no_pivot_uses_ms_move_and_chroot() {
    root_scenario(
        "no_pivot_uses_ms_move_and_chroot",
        no_pivot_enters_with_chroot,
    );
}
