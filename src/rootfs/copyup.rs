//! `tmpcopyup`: seed a new tmpfs with what the image had at the mount destination. The source
//! is image content, so every step is an *at() call with O_NOFOLLOW on a single name.

use std::ffi::OsStr;
use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use anyhow::{Context, Result, bail};
use nix::dir::Dir;
use nix::fcntl::{AtFlags, OFlag, openat, readlinkat};
use nix::sys::stat::{
    FchmodatFlags, FileStat, Mode, SFlag, fchmodat, fstatat, mkdirat, mknodat, umask,
};
use nix::unistd::{Gid, Uid, fchownat, symlinkat};

/// How deep a directory tree tmpcopyup follows; images have nothing near this.
const MAX_DEPTH: usize = 64;

/// Copy every entry of directory `src` into directory `dst` (which is normally the root of a
/// detached tmpfs), keeping modes, owners and symlinks.
pub fn copy_dir_contents(src: BorrowedFd<'_>, dst: BorrowedFd<'_>) -> Result<()> {
    let st = nix::sys::stat::fstat(src).context("fstat tmpcopyup source")?;
    if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT != SFlag::S_IFDIR {
        bail!("tmpcopyup needs a directory destination");
    }
    // Exact modes matter (sticky /tmp, 0700 dirs); berth is single-threaded.
    let old = umask(Mode::empty());
    let copied = copy_tree(src, dst, 0);
    umask(old);
    copied
}

fn open_dir(parent: BorrowedFd<'_>, name: &OsStr, flags: OFlag) -> nix::Result<OwnedFd> {
    openat(
        parent,
        Path::new(name),
        flags | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
}

fn copy_tree(src: BorrowedFd<'_>, dst: BorrowedFd<'_>, depth: usize) -> Result<()> {
    if depth > MAX_DEPTH {
        bail!("tmpcopyup: directory tree deeper than {MAX_DEPTH}");
    }
    let listing =
        open_dir(src, OsStr::new("."), OFlag::O_RDONLY).context("open directory to copy")?;
    let mut dir = Dir::from_fd(listing).context("read directory to copy")?;
    for entry in dir.iter() {
        let entry = entry.context("read directory entry")?;
        let name = OsStr::from_bytes(entry.file_name().to_bytes());
        if name == "." || name == ".." {
            continue;
        }
        copy_entry(src, dst, name, depth).with_context(|| format!("copy {name:?}"))?;
    }
    Ok(())
}

fn copy_entry(src: BorrowedFd<'_>, dst: BorrowedFd<'_>, name: &OsStr, depth: usize) -> Result<()> {
    let st: FileStat = fstatat(src, Path::new(name), AtFlags::AT_SYMLINK_NOFOLLOW)?;
    let kind = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT;
    let perm = Mode::from_bits_truncate(st.st_mode & 0o7777);
    match kind {
        SFlag::S_IFDIR => {
            mkdirat(dst, Path::new(name), perm)?;
            let from = open_dir(src, name, OFlag::O_PATH)?;
            let to = open_dir(dst, name, OFlag::O_PATH)?;
            copy_tree(from.as_fd(), to.as_fd(), depth + 1)?;
        }
        SFlag::S_IFREG => {
            let flags = OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
            let mut from = File::from(openat(
                src,
                Path::new(name),
                flags | OFlag::O_RDONLY,
                Mode::empty(),
            )?);
            let to = openat(
                dst,
                Path::new(name),
                flags | OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL,
                perm,
            )?;
            std::io::copy(&mut from, &mut File::from(to))?;
        }
        SFlag::S_IFLNK => {
            let target = readlinkat(src, Path::new(name))?;
            symlinkat(target.as_os_str(), dst, Path::new(name))?;
        }
        _ => mknodat(dst, Path::new(name), kind, perm, st.st_rdev)?,
    }
    fchownat(
        dst,
        Path::new(name),
        Some(Uid::from_raw(st.st_uid)),
        Some(Gid::from_raw(st.st_gid)),
        AtFlags::AT_SYMLINK_NOFOLLOW,
    )?;
    if kind != SFlag::S_IFLNK {
        // chown clears setuid/setgid bits; put the exact mode back.
        fchmodat(dst, Path::new(name), perm, FchmodatFlags::NoFollowSymlink)?;
    }
    Ok(())
}
