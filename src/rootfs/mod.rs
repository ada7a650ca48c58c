//! INTERIM: minimal rootfs until the rootfs module lands (bind + proc + pivot).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use oci_spec::runtime::{Mount, Spec};

pub struct RootfsOptions<'a> {
    pub rootfs: &'a Path,
    pub no_pivot: bool,
    pub extra_mounts: Vec<Mount>,
}

pub struct PreparedRootfs {
    rootfs: PathBuf,
}
pub struct EnteredRootfs;

pub fn prepare(_spec: &Spec, opts: &RootfsOptions) -> Result<PreparedRootfs> {
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_SLAVE,
        None::<&str>,
    )
    .context("make / rslave")?;
    mount(
        Some(opts.rootfs),
        opts.rootfs,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .context("bind rootfs")?;
    mount(
        Some("proc"),
        &opts.rootfs.join("proc"),
        Some("proc"),
        MsFlags::empty(),
        None::<&str>,
    )
    .context("mount proc")?;
    Ok(PreparedRootfs {
        rootfs: opts.rootfs.to_path_buf(),
    })
}

impl PreparedRootfs {
    pub fn enter(self) -> Result<EnteredRootfs> {
        nix::unistd::chdir(&self.rootfs)?;
        nix::unistd::pivot_root(".", ".").context("pivot_root")?;
        umount2(".", MntFlags::MNT_DETACH).context("detach old root")?;
        nix::unistd::chdir("/")?;
        Ok(EnteredRootfs)
    }
}

impl EnteredRootfs {
    pub fn finish(self, _spec: &Spec) -> Result<()> {
        Ok(())
    }
}

pub fn bind_console(_slave: &Path) -> Result<()> {
    anyhow::bail!("terminal not supported yet")
}
