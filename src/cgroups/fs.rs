//! Reading and writing cgroup control files.

use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::thread::sleep;
use std::time::Duration;

use anyhow::{Context, Result};

/// Writes one value with a single write(2), as cgroupfs requires.
pub fn write(dir: &Path, file: &str, value: &str) -> Result<()> {
    let path = dir.join(file);
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .and_then(|mut f| f.write_all(value.as_bytes()))
        .with_context(|| format!("writing {value:?} to {}", path.display()))
}

pub fn read(dir: &Path, file: &str) -> Result<String> {
    let path = dir.join(file);
    std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))
}

/// Parses a counter or limit; `max` (unlimited) reads as `u64::MAX`, as runc reports it.
pub fn parse_u64(text: &str) -> Option<u64> {
    match text.trim() {
        "max" => Some(u64::MAX),
        t => t.parse().ok(),
    }
}

pub fn read_u64(dir: &Path, file: &str) -> Result<u64> {
    let text = read(dir, file)?;
    parse_u64(&text).with_context(|| format!("{}/{file}: not a number: {text:?}", dir.display()))
}

/// Reads a file that only some kernels or configurations provide.
pub fn read_u64_if_exists(dir: &Path, file: &str) -> Result<Option<u64>> {
    if dir.join(file).exists() {
        read_u64(dir, file).map(Some)
    } else {
        Ok(None)
    }
}

/// `key value` lines (memory.stat, cpu.stat, cgroup.events…) into a map of the numeric ones.
pub fn parse_flat_keyed(text: &str) -> std::collections::BTreeMap<String, u64> {
    text.lines()
        .filter_map(|line| {
            let (key, value) = line.split_once(' ')?;
            Some((key.to_string(), value.trim().parse().ok()?))
        })
        .collect()
}

/// Creates `dir` and any missing parents; returns the directories it created, outermost first.
pub fn create_dirs(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut missing = Vec::new();
    let mut cursor = Some(dir);
    while let Some(d) = cursor.filter(|d| !d.exists()) {
        missing.push(d.to_path_buf());
        cursor = d.parent();
    }
    missing.reverse();
    let mut created = Vec::new();
    for d in missing {
        match std::fs::create_dir(&d) {
            Ok(()) => created.push(d),
            // Another container created the shared parent at the same time.
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e).with_context(|| format!("creating cgroup {}", d.display())),
        }
    }
    Ok(created)
}

/// Removes a cgroup and any cgroups the container made below it. rmdir fails with EBUSY while
/// exiting tasks are still being released, so retry briefly.
pub fn remove_cgroup_tree(dir: &Path) -> Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("listing {}", dir.display())),
    };
    for entry in entries {
        let entry = entry.with_context(|| format!("listing {}", dir.display()))?;
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            remove_cgroup_tree(&entry.path())?;
        }
    }
    let mut delay = Duration::from_millis(5);
    let mut retries_left = 6;
    loop {
        match std::fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && retries_left > 0 => {
                retries_left -= 1;
                sleep(delay);
                delay *= 2;
            }
            Err(e) => return Err(e).with_context(|| format!("removing cgroup {}", dir.display())),
        }
    }
}

/// The pids in `dir` and in every cgroup below it.
pub fn pids_recursive(dir: &Path, pids: &mut Vec<i32>) -> Result<()> {
    // A cgroup that was never created (create killed half-way) holds no process.
    if !dir.exists() {
        return Ok(());
    }
    let procs = read(dir, "cgroup.procs")?;
    pids.extend(procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
    for entry in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let entry = entry.with_context(|| format!("listing {}", dir.display()))?;
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            pids_recursive(&entry.path(), pids)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_numbers_and_max() {
        assert_eq!(parse_u64("max\n"), Some(u64::MAX));
        assert_eq!(parse_u64("4096\n"), Some(4096));
        assert_eq!(parse_u64("x"), None);
        let map = parse_flat_keyed("populated 1\nfrozen 0\nbad line here\n");
        assert_eq!(map.get("frozen"), Some(&0));
        assert_eq!(map.len(), 2);
    }
}
