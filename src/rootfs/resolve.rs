//! Path resolution confined to a root directory.
//!
//! Every lookup goes through openat2(2) with RESOLVE_IN_ROOT (symlinks and ".." are clamped to
//! the root, exactly as the container will see them) and RESOLVE_NO_MAGICLINKS (no
//! /proc/self/fd/N style jumps). Objects are only ever created with *at() calls on a single path
//! component of an already-resolved parent, with O_NOFOLLOW semantics, so nothing the image
//! contains can redirect a creation outside the root.

use std::ffi::OsString;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use anyhow::{Context, Result, bail};
use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, OpenHow, ResolveFlag, openat2, readlinkat};
use nix::sys::stat::{Mode, SFlag, fstatat, mkdirat};

/// What to create when a destination does not exist yet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File,
}

/// Resolution flags for lookups inside a container root.
fn in_root() -> ResolveFlag {
    ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS
}

/// Resolution flags for a single freshly created component: it must be right there.
fn strictly_beneath() -> ResolveFlag {
    ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_SYMLINKS | ResolveFlag::RESOLVE_NO_XDEV
}

/// The components of `path` after lexical cleaning, with ".." clamped at the root the way the
/// kernel clamps it under RESOLVE_IN_ROOT. An empty result means the root itself.
pub fn clean_components(path: &Path) -> Vec<OsString> {
    let mut parts: Vec<OsString> = Vec::new();
    for component in path.components() {
        match component {
            Component::Normal(name) => parts.push(name.to_owned()),
            Component::ParentDir => {
                parts.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    parts
}

fn relative(parts: &[OsString]) -> PathBuf {
    if parts.is_empty() {
        PathBuf::from(".")
    } else {
        parts.iter().collect()
    }
}

/// Open `path` (absolute or relative, always taken relative to `root`) inside `root`.
/// `flags` are the open flags (O_CLOEXEC is always added); the raw errno is returned so callers
/// can tell "missing" (ENOENT) from real failures.
pub fn open_in_root(root: BorrowedFd<'_>, path: &Path, flags: OFlag) -> nix::Result<OwnedFd> {
    let rel = relative(&clean_components(path));
    let how = OpenHow::new()
        .flags(flags | OFlag::O_CLOEXEC)
        .resolve(in_root());
    openat2(root, &rel, how)
}

/// An O_PATH handle on `path` inside `root`; `follow` says whether a final symlink is followed
/// (still inside the root) or returned as the symlink itself.
pub fn open_path_in_root(root: BorrowedFd<'_>, path: &Path, follow: bool) -> nix::Result<OwnedFd> {
    let mut flags = OFlag::O_PATH;
    if !follow {
        flags |= OFlag::O_NOFOLLOW;
    }
    open_in_root(root, path, flags)
}

fn open_created(parent: BorrowedFd<'_>, name: &OsString, flags: OFlag) -> nix::Result<OwnedFd> {
    let how = OpenHow::new()
        .flags(flags | OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC)
        .resolve(strictly_beneath());
    openat2(parent, Path::new(name), how)
}

/// How many dangling symlinks creation follows before giving up (the kernel's own limit).
const MAX_SYMLINKS: usize = 40;

/// The path a dangling symlink `parts[i]` (whose target is `target`) stands for, with the rest
/// of the path appended, still to be resolved inside the root.
fn through_symlink(parts: &[OsString], i: usize, target: &Path) -> Vec<OsString> {
    let mut next = if target.is_absolute() {
        PathBuf::new()
    } else {
        relative(&parts[..i])
    };
    next.push(target);
    next.extend(&parts[i + 1..]);
    clean_components(&next)
}

/// Create every missing directory of `path` inside `root` (mode `mode`, subject to umask) and
/// return an O_PATH handle on the last one. A dangling symlink on the way is followed by
/// creating its target inside the root, as runc does.
pub fn mkdir_all_in_root(root: BorrowedFd<'_>, path: &Path, mode: Mode) -> Result<OwnedFd> {
    let mut parts = clean_components(path);
    let mut links = 0;
    'restart: loop {
        let mut current = open_in_root(root, Path::new("."), OFlag::O_PATH | OFlag::O_DIRECTORY)
            .context("open the root directory")?;
        for i in 0..parts.len() {
            let prefix = relative(&parts[..=i]);
            current = match open_in_root(root, &prefix, OFlag::O_PATH | OFlag::O_DIRECTORY) {
                Ok(fd) => fd,
                Err(Errno::ENOENT) => match mkdirat(current.as_fd(), Path::new(&parts[i]), mode) {
                    Ok(()) => open_created(current.as_fd(), &parts[i], OFlag::O_DIRECTORY)
                        .with_context(|| format!("open new directory {}", prefix.display()))?,
                    // A name that exists but does not resolve is a dangling symlink.
                    Err(Errno::EEXIST) if links < MAX_SYMLINKS => {
                        links += 1;
                        let target = readlinkat(current.as_fd(), Path::new(&parts[i]))
                            .with_context(|| format!("readlink {}", prefix.display()))?;
                        parts = through_symlink(&parts, i, Path::new(&target));
                        continue 'restart;
                    }
                    Err(e) => {
                        return Err(e).with_context(|| format!("mkdirat {}", prefix.display()));
                    }
                },
                Err(Errno::ENOTDIR) => bail!("{} is not a directory", prefix.display()),
                Err(e) => return Err(e).with_context(|| format!("openat2 {}", prefix.display())),
            };
        }
        return Ok(current);
    }
}

/// An O_PATH handle on `path` inside `root`, creating it (and its parents) as `kind` if it does
/// not exist. A final symlink is followed inside the root when `follow` is set.
pub fn ensure_in_root(
    root: BorrowedFd<'_>,
    path: &Path,
    kind: Kind,
    follow: bool,
) -> Result<OwnedFd> {
    match open_path_in_root(root, path, follow) {
        Ok(fd) => return Ok(fd),
        Err(Errno::ENOENT) => {}
        Err(e) => {
            return Err(e).with_context(|| format!("openat2 {} in the rootfs", path.display()));
        }
    }
    if kind == Kind::Dir {
        return mkdir_all_in_root(root, path, Mode::from_bits_truncate(0o755));
    }
    let mut parts = clean_components(path);
    for _ in 0..MAX_SYMLINKS {
        let Some((name, dirs)) = parts.split_last() else {
            bail!("the root itself cannot be missing");
        };
        let parent = mkdir_all_in_root(root, &relative(dirs), Mode::from_bits_truncate(0o755))?;
        match fstatat(
            parent.as_fd(),
            Path::new(name),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        ) {
            Ok(st) if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFLNK => {
                let target = readlinkat(parent.as_fd(), Path::new(name)).context("readlink")?;
                parts = through_symlink(&parts, parts.len() - 1, Path::new(&target));
            }
            _ => {
                return create_file_at(parent.as_fd(), name)
                    .with_context(|| format!("create {} in the rootfs", path.display()));
            }
        }
    }
    bail!(
        "too many levels of symbolic links creating {}",
        path.display()
    )
}

/// Create an empty regular file `name` in `parent` (never through a symlink) and return an
/// O_PATH handle on it.
pub fn create_file_at(parent: BorrowedFd<'_>, name: &OsString) -> Result<OwnedFd> {
    let how = OpenHow::new()
        .flags(
            OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        )
        .mode(Mode::from_bits_truncate(0o644))
        .resolve(strictly_beneath());
    match openat2(parent, Path::new(name), how) {
        Ok(_) | Err(Errno::EEXIST) => {}
        Err(e) => return Err(e).with_context(|| format!("create file {name:?}")),
    }
    open_created(parent, name, OFlag::empty()).with_context(|| format!("open new file {name:?}"))
}

/// Split `path` into the handle of its parent directory inside `root` (created if missing) and
/// its final component, for operations that must act on the name itself (mknod, symlink,
/// unlink) rather than on whatever it points to.
pub fn parent_in_root(root: BorrowedFd<'_>, path: &Path) -> Result<(OwnedFd, OsString)> {
    let mut parts = clean_components(path);
    let Some(name) = parts.pop() else {
        bail!("{} names the root directory itself", path.display());
    };
    let parent = mkdir_all_in_root(root, &relative(&parts), Mode::from_bits_truncate(0o755))?;
    Ok((parent, name))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clean(p: &str) -> Vec<String> {
        clean_components(Path::new(p))
            .into_iter()
            .map(|s| s.into_string().unwrap())
            .collect()
    }

    #[test]
    fn dotdot_is_clamped_at_the_root() {
        assert_eq!(clean("/../../etc/passwd"), ["etc", "passwd"]);
        assert_eq!(clean("a/./b/../c"), ["a", "c"]);
        assert!(clean("/").is_empty());
        assert!(clean("/..").is_empty());
    }

    #[test]
    fn dangling_symlinks_continue_at_their_target() {
        let parts = clean_components(Path::new("/a/b/c/d"));
        let via = |target: &str| -> Vec<String> {
            through_symlink(&parts, 2, Path::new(target))
                .into_iter()
                .map(|s| s.into_string().unwrap())
                .collect()
        };
        assert_eq!(via("/x/y"), ["x", "y", "d"]);
        assert_eq!(via("../z"), ["a", "z", "d"]);
        assert_eq!(via("../../../../../etc"), ["etc", "d"]);
    }

    #[test]
    fn relative_of_nothing_is_dot() {
        assert_eq!(relative(&[]), PathBuf::from("."));
        assert_eq!(
            relative(&clean_components(Path::new("/dev/pts"))),
            PathBuf::from("dev/pts")
        );
    }
}
