//! `exec --cgroup`: run the process in an existing sub-cgroup of the container's (runc 1.2+).
//! `--cgroup PATH` names the same sub-cgroup in every hierarchy; on cgroup v1,
//! `--cgroup CONTROLLER[,CONTROLLER…]:PATH` one for those controllers' hierarchies (the others
//! keep the container's own cgroup), and the flag may be repeated.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};

use super::{CgroupDir, Version, layout};

/// Where in the container's cgroups an exec'd process goes. The default: the container's own.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SubCgroups {
    /// `--cgroup PATH`: this sub-cgroup in every hierarchy.
    everywhere: Option<String>,
    /// `--cgroup CONTROLLERS:PATH`: per v1 controller.
    by_controller: Vec<(String, String)>,
}

impl SubCgroups {
    /// Parses the `--cgroup` flags as runc does.
    pub fn parse(args: &[String]) -> Result<SubCgroups> {
        let mut sub = SubCgroups::default();
        for arg in args {
            let Some((controllers, path)) = arg.split_once(':') else {
                if args.len() != 1 {
                    bail!("exec --cgroup {arg:?}: with several --cgroup, each needs CONTROLLER:");
                }
                sub.everywhere = Some(checked(arg, arg)?);
                continue;
            };
            for controller in controllers.split(',') {
                if controller.is_empty() {
                    bail!("exec --cgroup {arg:?}: empty controller name");
                }
                if sub.by_controller.iter().any(|(c, _)| c == controller) {
                    bail!("exec --cgroup {arg:?}: controller {controller} given more than once");
                }
                sub.by_controller
                    .push((controller.to_string(), checked(path, arg)?));
            }
        }
        Ok(sub)
    }

    /// The directory of `dir`'s hierarchy the process goes to; the sub-cgroup must exist.
    pub fn dir_in(&self, dir: &CgroupDir) -> Result<PathBuf> {
        let in_this_hierarchy = |(controller, _): &&(String, String)| {
            dir.version == Version::V1 && dir.controllers.contains(controller)
        };
        let sub = (self.by_controller.iter().find(in_this_hierarchy))
            .map(|(_, path)| path)
            .or(self.everywhere.as_ref());
        let Some(sub) = sub else {
            return Ok(dir.path.clone());
        };
        let target = dir.path.join(sub);
        if !target.is_dir() {
            bail!(
                "exec --cgroup {sub}: {} does not exist (the sub-cgroup must be made first)",
                target.display()
            );
        }
        Ok(target)
    }

    /// Fails for a controller no hierarchy of `dirs` has (as runc: it would be ignored).
    pub fn check_controllers(&self, dirs: &[CgroupDir]) -> Result<()> {
        for (controller, _) in &self.by_controller {
            let known =
                |d: &CgroupDir| d.version == Version::V1 && d.controllers.contains(controller);
            if !dirs.iter().any(known) {
                bail!(
                    "exec --cgroup {controller}:…: the container has no cgroup v1 hierarchy with \
                     the {controller} controller (on cgroup v2, give the path alone)"
                );
            }
        }
        Ok(())
    }
}

/// A sub-cgroup path below the container's cgroup: relative, cleaned, never above it.
fn checked(path: &str, arg: &str) -> Result<String> {
    let escapes = Path::new(path)
        .components()
        .any(|c| matches!(c, std::path::Component::ParentDir));
    if escapes {
        bail!("exec --cgroup {arg:?}: the path must stay inside the container's cgroup");
    }
    let clean = layout::clean_cgroup_path(path);
    Ok(clean.trim_start_matches('/').to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn v1_dir(controllers: &[&str], path: &str) -> CgroupDir {
        CgroupDir {
            version: Version::V1,
            mount_point: PathBuf::from("/sys/fs/cgroup/x"),
            path: PathBuf::from(path),
            controllers: args(controllers),
            created: true,
        }
    }

    #[test]
    fn a_path_alone_goes_to_every_hierarchy() {
        let sub = SubCgroups::parse(&args(&["/a/./b/"])).unwrap();
        assert_eq!(sub.everywhere.as_deref(), Some("a/b"));
    }

    #[test]
    fn controller_lists_pick_their_hierarchies_and_the_others_stay() {
        let sub = SubCgroups::parse(&args(&["cpu,cpuacct:s1", "memory:s2"])).unwrap();
        let cpu = v1_dir(&["cpu", "cpuacct"], "/nonexistent/c");
        let pids = v1_dir(&["pids"], "/c");
        assert!(
            sub.dir_in(&cpu)
                .unwrap_err()
                .to_string()
                .contains("does not exist")
        );
        assert_eq!(sub.dir_in(&pids).unwrap(), PathBuf::from("/c"));
        assert!(
            sub.check_controllers(&[cpu, pids]).is_err(),
            "memory is nowhere"
        );
    }

    #[test]
    fn malformed_flags_are_refused() {
        for bad in [
            &["../x"][..],
            &["a/../../x"],
            &[":x"],
            &["cpu,:x"],
            &["cpu:a", "cpu:b"],
            &["a", "b"],
        ] {
            let err = SubCgroups::parse(&args(bad)).unwrap_err().to_string();
            assert!(err.contains("exec --cgroup"), "{bad:?}: {err}");
        }
    }
}
