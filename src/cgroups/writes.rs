//! Resource changes as a list of cgroup file writes, planned in full before the first is made.
//!
//! Planning checks everything that can be checked without changing the cgroup: every field's
//! value, that its controller and file exist, what depends on the current values (the order of
//! memory and swap limits, `checkBeforeUpdate`). Only then are the files written, in order.
//!
//! A kernel can still refuse a write that passed every check (a cpuset outside the parent's, a
//! limit below what the cgroup uses). At create that fails the create, which removes the whole
//! cgroup. An update must leave the container as it was, so [`Writes::apply_or_restore`] reads
//! each file's setting just before writing it and, when a later write fails, writes those
//! settings back, newest first. That costs a read per file, paid only by `update`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};

use oci_spec::runtime::LinuxDeviceCgroup;

use super::bpf::{self, Insn};
use super::fs;
use crate::logging;

/// How to put a file's current setting back after a failed update.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Restore {
    /// The file reads back the way it is written (`memory.max`, `cpu.shares`, `pids.max` …).
    Content,
    /// A file of `KEY value` lines (per device or interface) that takes one line at a time:
    /// restore the `key` line, or write `absent` when the key had no line (its default).
    Line { key: String, absent: String },
    /// A flat-keyed file whose `key` line holds the value the file takes
    /// (`memory.oom_control`: reads `oom_kill_disable 0`, takes `0`).
    KeyedValue { key: String },
}

#[derive(Debug)]
struct Write {
    path: PathBuf,
    value: String,
    /// The spec field, as named after `linux.resources.`.
    field: String,
    restore: Restore,
}

/// The planned writes, in the order they will be made, and the cgroup v2 device program.
#[derive(Debug, Default)]
pub struct Writes {
    files: Vec<Write>,
    /// Installed after the file writes. Device rules are never restored: `update` leaves them
    /// alone (as runc's does), so only a create, whose failure removes the cgroup, plans them.
    device_program: Option<(PathBuf, Vec<Insn>)>,
}

impl Writes {
    /// Plans `value` for `dir/file`, which reads back the way it is written.
    pub fn set(&mut self, dir: &Path, file: &str, value: &str, field: &str) -> Result<()> {
        self.push(dir, file, value, field, Restore::Content)
    }

    /// Plans one `key …` line for a file that holds one line per key (device, interface);
    /// `absent` is the line that puts the key back to its default.
    pub fn set_line(
        &mut self,
        dir: &Path,
        file: &str,
        key: &str,
        value: &str,
        absent: &str,
        field: &str,
    ) -> Result<()> {
        let restore = Restore::Line {
            key: key.to_string(),
            absent: absent.to_string(),
        };
        self.push(dir, file, value, field, restore)
    }

    /// Plans `value` for a flat-keyed file that shows it on its `key` line.
    pub fn set_keyed_value(
        &mut self,
        dir: &Path,
        file: &str,
        key: &str,
        value: &str,
        field: &str,
    ) -> Result<()> {
        let restore = Restore::KeyedValue {
            key: key.to_string(),
        };
        self.push(dir, file, value, field, restore)
    }

    /// Plans the cgroup v2 device program for `rules`, built now so that a bad rule fails here.
    pub fn install_device_program(
        &mut self,
        dir: &Path,
        rules: &[LinuxDeviceCgroup],
    ) -> Result<()> {
        let program = bpf::device_program(rules)?;
        self.device_program = Some((dir.to_path_buf(), program));
        Ok(())
    }

    fn push(
        &mut self,
        dir: &Path,
        file: &str,
        value: &str,
        field: &str,
        restore: Restore,
    ) -> Result<()> {
        let path = dir.join(file);
        if !path.exists() {
            bail!(
                "linux.resources.{field}: {} does not exist (not supported by this kernel or \
                 cgroup)",
                path.display()
            );
        }
        self.files.push(Write {
            path,
            value: value.to_string(),
            field: field.to_string(),
            restore,
        });
        Ok(())
    }

    /// Makes every write in order, stopping at the first error, then installs the device
    /// program.
    pub fn apply(self) -> Result<()> {
        self.files.iter().try_for_each(Write::make)?;
        self.install_planned_program()
    }

    /// Makes every write in order; when one fails, restores the files written before it.
    pub fn apply_or_restore(self) -> Result<()> {
        let mut done: Vec<(&Write, String)> = Vec::new();
        for write in &self.files {
            let previous = write.current_setting()?;
            if let Err(error) = write.make() {
                return Err(match restore(&done) {
                    None => anyhow!("{error:#} (nothing was changed)"),
                    Some(files) => anyhow!("{error:#} (and restoring {files} failed)"),
                });
            }
            done.push((write, previous));
        }
        self.install_planned_program()
    }

    fn install_planned_program(&self) -> Result<()> {
        let Some((dir, program)) = &self.device_program else {
            return Ok(());
        };
        let cgroup = std::fs::File::open(dir)
            .with_context(|| format!("opening {} for the device program", dir.display()))?;
        bpf::install(&cgroup, program).context("linux.resources.devices")
    }
}

impl Write {
    fn make(&self) -> Result<()> {
        let (dir, file) = split(&self.path);
        fs::write(dir, file, &self.value).with_context(|| format!("linux.resources.{}", self.field))
    }

    /// What to write to put this file back as it is now.
    fn current_setting(&self) -> Result<String> {
        let (dir, file) = split(&self.path);
        let content = fs::read(dir, file)?;
        let line_of = |key: &str| {
            content
                .lines()
                .find(|line| line.split_whitespace().next() == Some(key))
        };
        Ok(match &self.restore {
            Restore::Content => content.trim().to_string(),
            Restore::Line { key, absent } => line_of(key).unwrap_or(absent).to_string(),
            Restore::KeyedValue { key } => {
                let line = line_of(key).with_context(|| {
                    format!("{}: no {key} line to restore", self.path.display())
                })?;
                line.split_whitespace()
                    .nth(1)
                    .unwrap_or_default()
                    .to_string()
            }
        })
    }
}

/// Writes the saved settings back, newest first; names the files that could not be restored.
fn restore(done: &[(&Write, String)]) -> Option<String> {
    let mut failed = Vec::new();
    for (write, previous) in done.iter().rev() {
        let (dir, file) = split(&write.path);
        if let Err(e) = fs::write(dir, file, previous) {
            logging::log(
                logging::Level::Warning,
                &format!("update: restoring: {e:#}"),
            );
            failed.push(write.path.display().to_string());
        }
    }
    (!failed.is_empty()).then(|| failed.join(", "))
}

fn split(path: &Path) -> (&Path, &str) {
    let dir = path.parent().unwrap_or(Path::new("/"));
    let file = path
        .file_name()
        .and_then(|f| f.to_str())
        .unwrap_or_default();
    (dir, file)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A scratch directory standing in for a cgroup; `deny` reads but refuses every write (a
    /// link to /proc/version). Like cgroup files, files here are written without truncation:
    /// tests write values no shorter than what they overwrite.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(name: &str) -> Scratch {
            let dir =
                std::env::temp_dir().join(format!("berth-writes-{name}-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            std::os::unix::fs::symlink("/proc/version", dir.join("deny")).unwrap();
            Scratch(dir)
        }

        fn file(&self, name: &str, content: &str) {
            std::fs::write(self.0.join(name), content).unwrap();
        }

        fn read(&self, name: &str) -> String {
            std::fs::read_to_string(self.0.join(name)).unwrap()
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn a_missing_file_is_refused_when_planned_naming_the_field() {
        let dir = Scratch::new("missing");
        let mut writes = Writes::default();
        let err = writes.set(&dir.0, "cpu.idle", "1", "cpu.idle").unwrap_err();
        assert!(
            err.to_string().starts_with("linux.resources.cpu.idle: "),
            "{err}"
        );
        assert!(writes.files.is_empty());
    }

    #[test]
    fn a_failed_write_restores_what_was_written_before_it() {
        let dir = Scratch::new("restore");
        dir.file("memory.max", "2000\n");
        dir.file("io.max", "8:0 rbps=1 wbps=max riops=max wiops=max\n");
        dir.file("memory.oom_control", "oom_kill_disable 0\nunder_oom 0\n");
        let mut writes = Writes::default();
        writes
            .set(&dir.0, "memory.max", "1000", "memory.limit")
            .unwrap();
        let absent = "8:0 rbps=max wbps=max riops=max wiops=max";
        let line = "8:0 rbps=5";
        writes
            .set_line(&dir.0, "io.max", "8:0", line, absent, "blockIO")
            .unwrap();
        writes
            .set_line(
                &dir.0,
                "io.max",
                "9:0",
                "9:0 rbps=5",
                "9:0 rbps=max",
                "blockIO",
            )
            .unwrap();
        (writes.set_keyed_value(
            &dir.0,
            "memory.oom_control",
            "oom_kill_disable",
            "1",
            "memory",
        ))
        .unwrap();
        writes.set(&dir.0, "deny", "x", "unified.deny").unwrap();
        let err = format!("{:#}", writes.apply_or_restore().unwrap_err());
        assert!(
            err.contains("nothing was changed") && err.contains("unified.deny"),
            "{err}"
        );
        assert_eq!(dir.read("memory.max"), "2000\n");
        // Newest first: 9:0 back to its default, then 8:0's old line.
        assert_eq!(
            dir.read("io.max"),
            "8:0 rbps=1 wbps=max riops=max wiops=max\n"
        );
        // "1" was written over the first byte, then the "0" read from the key's line.
        assert!(
            dir.read("memory.oom_control")
                .starts_with("0om_kill_disable")
        );
    }

    #[test]
    fn writes_are_made_in_order() {
        let dir = Scratch::new("order");
        dir.file("a", "");
        let mut writes = Writes::default();
        writes.set(&dir.0, "a", "1", "a").unwrap();
        writes.set(&dir.0, "a", "2", "a").unwrap();
        writes.apply().unwrap();
        assert_eq!(dir.read("a"), "2");
    }
}
