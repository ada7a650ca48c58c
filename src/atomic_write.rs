//! Replacing a file so that readers see the old or the new contents, never half, and
//! concurrent writers (`pause` racing `delete` on one state.json, two containers compiling the
//! same seccomp profile) never write into each other's temporary file.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use nix::errno::Errno;
use nix::fcntl::{AT_FDCWD as CWD, RenameFlags, renameat2};

/// Writes `contents` to a temporary sibling of `path` of this process's own, then swaps it in
/// (see `swap_in`). On failure the temporary is removed and `path` is as it was.
pub fn write_atomically(path: &Path, contents: &[u8]) -> Result<()> {
    let temporary = temporary_for(path, std::process::id())?;
    let write = || -> std::io::Result<()> {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&temporary)?;
        file.write_all(contents)?;
        swap_in(&temporary, path)
    };
    let written = write();
    if written.is_err() {
        let _ = fs::remove_file(&temporary);
    }
    written.with_context(|| format!("writing {}", path.display()))
}

/// `.<name>.<pid>.tmp` beside `path`: a hidden name per writing process (berth is
/// single-threaded where it writes), in the same directory, so that the swap stays on one file
/// system.
fn temporary_for(path: &Path, writer: u32) -> Result<PathBuf> {
    let name = path.file_name().context("atomic write needs a file name")?;
    Ok(path.with_file_name(format!(".{}.{writer}.tmp", name.to_string_lossy())))
}

/// Puts `temporary` in `path`'s place atomically. Over a file, an exchange, after which the
/// old contents (now under the temporary name) are removed: ext4 (a disk-backed /run) starts
/// writing a file's data out before a rename replaces another file with it (`auto_da_alloc`,
/// so that an editor's save survives a crash), which cost 0.2-5 ms per save of a container's
/// state; an exchange skips that. Nothing is lost: the state describes processes that a crash
/// ends anyway. Anything else (a first write, a file system without exchanges) is a rename.
fn swap_in(temporary: &Path, path: &Path) -> std::io::Result<()> {
    if fs::symlink_metadata(path).is_ok_and(|metadata| metadata.is_file()) {
        let flags = RenameFlags::RENAME_EXCHANGE;
        match renameat2(CWD, temporary, CWD, path, flags) {
            Ok(()) => return fs::remove_file(temporary),
            Err(Errno::EINVAL | Errno::ENOENT) => {}
            Err(errno) => return Err(errno.into()),
        }
    }
    fs::rename(temporary, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("berth-unit-{name}-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn names_in(dir: &Path) -> Vec<String> {
        let mut names: Vec<_> = fs::read_dir(dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn an_atomic_write_creates_then_replaces_and_leaves_no_temporary() {
        let dir = scratch_dir("atomic");
        let path = dir.join("state.json");
        let written = (|| -> Result<Vec<u8>> {
            write_atomically(&path, b"first")?;
            write_atomically(&path, b"second")?;
            Ok(fs::read(&path)?)
        })();
        let left = names_in(&dir);
        fs::remove_dir_all(&dir).unwrap();
        assert_eq!(written.unwrap(), b"second");
        assert_eq!(left, ["state.json"]);
    }

    /// Another process half-way through its own write of the same file keeps its temporary:
    /// with one shared name, this write would truncate it and swap the other's data in.
    #[test]
    fn an_atomic_write_leaves_another_writers_temporary_alone() {
        let dir = scratch_dir("atomic-concurrent");
        let path = dir.join("state.json");
        let theirs = temporary_for(&path, std::process::id() + 1).unwrap();
        fs::write(&theirs, b"theirs, half-writ").unwrap();
        let written = write_atomically(&path, b"ours");
        let (ours, left_theirs) = (fs::read(&path), fs::read(&theirs));
        fs::remove_dir_all(&dir).unwrap();
        written.unwrap();
        assert_eq!(ours.unwrap(), b"ours");
        assert_eq!(left_theirs.unwrap(), b"theirs, half-writ");
    }

    /// A --pid-file naming a directory: an error, as with rename, and the directory stays,
    /// with no temporary beside it.
    #[test]
    fn an_atomic_write_over_a_directory_fails_and_leaves_it() {
        let dir = scratch_dir("atomic-dir");
        let target = dir.join("pid");
        fs::create_dir_all(&target).unwrap();
        let written = write_atomically(&target, b"1");
        let still_a_directory = target.is_dir();
        let left = names_in(&dir);
        fs::remove_dir_all(&dir).unwrap();
        assert!(written.is_err());
        assert!(still_a_directory);
        assert_eq!(left, ["pid"]);
    }
}
