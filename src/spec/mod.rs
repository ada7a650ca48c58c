//! Loading and validating a bundle: everything a bad config.json can get wrong
//! is reported here, before anything on the host changes, with the file and
//! the JSON field in the message.

mod default;
mod list;

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use oci_spec::runtime::{Linux, Process, Spec};

use crate::memory_policy::MemoryPolicy;

pub use default::default_spec;
pub use list::parse_number_list;

pub const CONFIG_FILE: &str = "config.json";

/// A bundle whose config passed validation; the rest of the runtime trusts it.
pub struct Bundle {
    /// Absolute path of the bundle directory.
    pub dir: PathBuf,
    /// Absolute, symlink-free path of `root.path`.
    pub rootfs: PathBuf,
    pub spec: Spec,
}

impl Bundle {
    pub fn linux(&self) -> &Linux {
        self.spec
            .linux()
            .as_ref()
            .expect("validated: linux is present")
    }

    /// Sets environment variables of the container's process, replacing any
    /// earlier values of the same names (variables the runtime passes on).
    pub fn set_process_env(&mut self, vars: &[(&str, String)]) {
        let process = self
            .spec
            .process_mut()
            .as_mut()
            .expect("validated: process is present");
        let mut env = process.env().clone().unwrap_or_default();
        env.retain(|entry| {
            !vars
                .iter()
                .any(|(name, _)| entry.starts_with(&format!("{name}=")))
        });
        env.extend(vars.iter().map(|(name, value)| format!("{name}={value}")));
        process.set_env(Some(env));
    }

    pub fn process(&self) -> &Process {
        self.spec
            .process()
            .as_ref()
            .expect("validated: process is present")
    }
}

pub fn load(dir: &Path) -> Result<Bundle> {
    let dir = std::path::absolute(dir).with_context(|| format!("bundle path {}", dir.display()))?;
    let config_path = dir.join(CONFIG_FILE);
    let spec = parse_config(&config_path)?;
    validate(&spec).with_context(|| format!("{}", config_path.display()))?;
    // Apart from validate: this one asks the host, though only when a label is set.
    let mount_label = spec
        .linux()
        .as_ref()
        .and_then(|l| l.mount_label().as_deref());
    let process = spec
        .process()
        .as_ref()
        .expect("validated: process is present");
    crate::lsm::check_host_supports(process, mount_label)
        .with_context(|| format!("{}", config_path.display()))?;
    check_host_memory_policy(&spec).with_context(|| format!("{}", config_path.display()))?;
    let root = spec.root().as_ref().expect("validated: root is present");
    let rootfs = dir.join(root.path());
    let rootfs = rootfs
        .canonicalize()
        .with_context(|| format!("{}: root.path: {}", config_path.display(), rootfs.display()))?;
    if !rootfs.is_dir() {
        bail!(
            "{}: root.path: {} is not a directory",
            config_path.display(),
            rootfs.display()
        );
    }
    Ok(Bundle { dir, rootfs, spec })
}

fn check_host_memory_policy(spec: &Spec) -> Result<()> {
    let linux = spec.linux().as_ref().expect("validated: linux is present");
    MemoryPolicy::of(linux)?.map_or(Ok(()), |policy| policy.check_host())
}

/// Parses config.json; a type error names the JSON path of the bad field.
fn parse_config(path: &Path) -> Result<Spec> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    parse_config_from(BufReader::new(file)).with_context(|| format!("{}", path.display()))
}

fn parse_config_from(reader: impl std::io::Read) -> Result<Spec> {
    let mut json = serde_json::Deserializer::from_reader(reader);
    serde_path_to_error::deserialize(&mut json).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        if path == "." {
            anyhow::anyhow!("{inner}")
        } else {
            anyhow::anyhow!("{path}: {inner}")
        }
    })
}

/// Checks that do not need the host; namespaces, rootfs and process details
/// are validated again where they are planned.
fn validate(spec: &Spec) -> Result<()> {
    let version = spec.version();
    if !version.starts_with("1.") {
        bail!("ociVersion: {version:?} is not supported (need 1.x)");
    }
    if spec.root().is_none() {
        bail!("root: missing");
    }
    if spec.linux().is_none() {
        bail!("linux: missing");
    }
    let Some(process) = spec.process() else {
        bail!("process: missing");
    };
    if process.args().as_ref().is_none_or(|args| args.is_empty()) {
        bail!("process.args: must name the program to run");
    }
    if !process.cwd().is_absolute() {
        bail!(
            "process.cwd: {} is not an absolute path",
            process.cwd().display()
        );
    }
    let linux = spec.linux().as_ref().expect("checked above");
    MemoryPolicy::of(linux)?;
    crate::intelrdt::validate(linux)?;
    let personality = linux.personality().as_ref();
    crate::process::validate(process, personality)?;
    crate::netdev::validate(spec)?;
    crate::rootfs::validate(spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<Spec> {
        parse_config_from(json.as_bytes())
    }

    #[test]
    fn type_errors_name_the_json_field() {
        let err = parse(r#"{"ociVersion":"1.2.0","process":{"args":"sh","cwd":"/"}}"#)
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("process.args: "), "{err}");
    }

    #[test]
    fn unknown_capabilities_are_rejected_with_their_path() {
        let json = r#"{"ociVersion":"1.2.0","process":{"args":["sh"],"cwd":"/",
            "capabilities":{"bounding":["CAP_KILL","CAP_FLY"]}}}"#;
        let err = parse(json).unwrap_err().to_string();
        assert!(err.contains("process.capabilities.bounding"), "{err}");
    }

    #[test]
    fn empty_args_and_relative_cwd_are_invalid() {
        let mut spec = default_spec(false);
        let process = spec.process_mut().as_mut().unwrap();
        process.set_args(Some(vec![]));
        assert!(
            validate(&spec)
                .unwrap_err()
                .to_string()
                .starts_with("process.args")
        );
        let mut spec = default_spec(false);
        spec.process_mut().as_mut().unwrap().set_cwd("rel".into());
        assert!(
            validate(&spec)
                .unwrap_err()
                .to_string()
                .starts_with("process.cwd")
        );
    }

    #[test]
    fn the_default_spec_is_valid() {
        validate(&default_spec(false)).unwrap();
        validate(&default_spec(true)).unwrap();
    }
}
