//! The CRIU options `checkpoint` and `restore` share, from runc's flags of the same names.

use std::collections::HashMap;
use std::fs::{self, File};
use std::os::fd::AsRawFd;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use super::rpc::{CgroupMode, Opts};

/// The annotation naming a CRIU configuration file for this container (runc's): an empty value
/// means none at all.
pub const CONFIG_ANNOTATION: &str = "org.criu.config";
/// Read when the annotation is absent: runc's file, so that one CRIU configuration serves both
/// runtimes.
pub const DEFAULT_CONFIG_FILE: &str = "/etc/criu/runc.conf";

/// CRIU's log level 4: everything, which the error message quotes from.
const LOG_LEVEL: i32 = 4;

pub struct CriuOptions {
    /// --image-path (default: `checkpoint` in the current directory).
    pub image_path: PathBuf,
    /// --work-path: CRIU's logs and work files (default: the image directory).
    pub work_path: Option<PathBuf>,
    pub tcp_established: bool,
    pub ext_unix_sk: bool,
    pub shell_job: bool,
    pub file_locks: bool,
    /// --manage-cgroups-mode (CRIU's default, soft, when not given).
    pub cgroup_mode: CgroupMode,
    /// --empty-ns: CLONE_NEW* bits of namespaces CRIU creates without restoring what was in them
    /// (the network namespace's always, as runc does).
    pub empty_ns: u32,
    pub auto_dedup: bool,
    pub lazy_pages: bool,
}

/// The image and work directories, opened: CRIU is given their fds, which must stay open until
/// it is done.
pub struct Directories {
    pub images: File,
    pub work: Option<File>,
    /// Where CRIU writes its log.
    pub log_dir: PathBuf,
}

impl Directories {
    pub fn log(&self, name: &str) -> PathBuf {
        self.log_dir.join(name)
    }
}

impl CriuOptions {
    /// Opens the image directory (made first when `create`: a checkpoint may start a new one)
    /// and the work directory (always made if missing, as runc does).
    pub fn open_directories(&self, create: bool) -> Result<Directories> {
        if create {
            make_dir(&self.image_path)
                .with_context(|| format!("--image-path {}", self.image_path.display()))?;
        }
        let images = open_dir(&self.image_path)
            .with_context(|| format!("--image-path {}", self.image_path.display()))?;
        let work = match &self.work_path {
            Some(path) => Some(
                make_dir(path)
                    .and_then(|()| open_dir(path))
                    .with_context(|| format!("--work-path {}", path.display()))?,
            ),
            None => None,
        };
        Ok(Directories {
            images,
            work,
            log_dir: self.work_path.clone().unwrap_or(self.image_path.clone()),
        })
    }

    /// The options every dump and restore request carries.
    pub fn opts(
        &self,
        dirs: &Directories,
        log_file: &str,
        annotations: &HashMap<String, String>,
    ) -> Opts {
        Opts {
            images_dir_fd: dirs.images.as_raw_fd(),
            work_dir_fd: dirs.work.as_ref().map(|dir| dir.as_raw_fd()),
            log_level: Some(LOG_LEVEL),
            log_file: Some(log_file.into()),
            // Older CRIUs read only manage_cgroups; newer ones let the mode override it.
            manage_cgroups: Some(true),
            manage_cgroups_mode: Some(self.cgroup_mode as i32),
            notify_scripts: Some(true),
            shell_job: Some(self.shell_job),
            tcp_established: Some(self.tcp_established),
            ext_unix_sk: Some(self.ext_unix_sk),
            file_locks: Some(self.file_locks),
            // As runc: the content of the container's own network namespace (devices,
            // addresses, routes) is neither dumped nor restored: it is made anew, empty, as for
            // `create`, and the hooks that set it up (Docker's) run again at restore. One
            // joined by path is external and kept.
            empty_ns: Some(self.empty_ns | libc::CLONE_NEWNET as u32),
            orphan_pts_master: Some(true),
            auto_dedup: Some(self.auto_dedup),
            lazy_pages: Some(self.lazy_pages),
            config_file: config_file(annotations),
            ..Default::default()
        }
    }
}

/// `org.criu.config`: absent means runc's default file, empty means none (CRIU ignores a named
/// file that does not exist, so the default costs nothing where there is none).
fn config_file(annotations: &HashMap<String, String>) -> Option<String> {
    match annotations.get(CONFIG_ANNOTATION) {
        None => Some(DEFAULT_CONFIG_FILE.into()),
        Some(file) if file.is_empty() => None,
        Some(file) => Some(file.clone()),
    }
}

fn make_dir(path: &Path) -> Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .context("creating the directory")
}

fn open_dir(path: &Path) -> Result<File> {
    let dir = File::open(path).context("opening the directory")?;
    if !dir.metadata()?.is_dir() {
        bail!("not a directory");
    }
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_annotation_names_a_file_or_none_and_runcs_is_the_default() {
        let with = |value: &str| HashMap::from([(CONFIG_ANNOTATION.to_string(), value.into())]);
        assert_eq!(
            config_file(&HashMap::new()).as_deref(),
            Some(DEFAULT_CONFIG_FILE)
        );
        assert_eq!(config_file(&with("")), None);
        assert_eq!(
            config_file(&with("/etc/criu/mine.conf")).as_deref(),
            Some("/etc/criu/mine.conf")
        );
    }
}
