//! Rootless: the runtime run by an unprivileged user, made for each test with useradd (and
//! removed with userdel). The config is what `spec --rootless` writes for that user: a user
//! namespace mapping only the user's uid and gid, and no cgroup unless one is delegated.

use std::fs;
use std::os::unix::fs::chown;
use std::path::{Path, PathBuf};
use std::process::Command;

use oci_spec::runtime::{
    LinuxIdMappingBuilder, LinuxNamespaceType, LinuxPidsBuilder, LinuxResourcesBuilder,
    MountBuilder, Spec,
};

use crate::common::host_user::HostUser;
use crate::common::{
    COMMAND_TIMEOUT, Container, MARKER_ENV, Output, cgroup_hierarchies, is_berth, remove_namespace,
    runtime, set_args,
};

/// A container of a [`HostUser`], with the config `spec --rootless` writes for that user. The
/// container is dropped (force-deleted and leak-checked) before the user is removed.
pub(crate) struct RootlessContainer {
    pub(crate) c: Container,
    pub(crate) user: HostUser,
}

impl RootlessContainer {
    pub(crate) fn new(args: &[&str]) -> RootlessContainer {
        let c = Container::new();
        let user = HostUser::new(&c.id);
        fs::create_dir_all(&c.root).unwrap();
        chown(&c.root, Some(user.uid), Some(user.gid)).unwrap();
        let mut rootless = RootlessContainer { c, user };
        let spec = rootless.spec_for_the_user();
        let id = rootless.c.id.clone();
        rootless.c.configure(|s| {
            *s = spec;
            set_args(s, args);
            let process = s.process_mut().as_mut().unwrap();
            process.set_terminal(Some(false));
            let env = process.env_mut().get_or_insert_with(Vec::new);
            env.push(format!("{MARKER_ENV}={id}"));
        });
        rootless
    }

    /// `spec --rootless` run by the user in a scratch directory of its own.
    fn spec_for_the_user(&self) -> Spec {
        let scratch = self.c.dir.join("spec");
        fs::create_dir_all(&scratch).unwrap();
        chown(&scratch, Some(self.user.uid), Some(self.user.gid)).unwrap();
        let out = self.as_user(
            &[runtime().to_str().unwrap(), "spec", "--rootless"],
            |cmd| {
                cmd.current_dir(&scratch);
            },
        );
        out.success();
        let json = fs::read(scratch.join("config.json")).expect("spec wrote config.json");
        serde_json::from_slice(&json).expect("a valid spec")
    }

    /// The runtime with the container's `--root`, run as the user.
    #[track_caller]
    pub(crate) fn berth(&self, args: &[&str]) -> Output {
        self.berth_with(args, |_| {})
    }

    /// [`berth`](Self::berth) with a hook to adjust the command (its environment).
    #[track_caller]
    pub(crate) fn berth_with(&self, args: &[&str], adjust: impl FnOnce(&mut Command)) -> Output {
        let root = self.c.root.to_str().unwrap();
        let mut full = vec![runtime().to_str().unwrap(), "--root", root];
        full.extend_from_slice(args);
        self.as_user(&full, adjust)
    }

    /// `command…` as the user, without supplementary groups.
    #[track_caller]
    pub(crate) fn as_user(&self, command: &[&str], adjust: impl FnOnce(&mut Command)) -> Output {
        let (uid, gid) = (self.user.uid.to_string(), self.user.gid.to_string());
        let mut args = vec!["--reuid", &uid, "--regid", &gid, "--clear-groups", "--"];
        args.extend_from_slice(command);
        self.c
            .spawn_program(Path::new("setpriv"), &args, adjust)
            .wait(COMMAND_TIMEOUT)
    }

    pub(crate) fn bundle(&self) -> &str {
        self.c.bundle.to_str().unwrap()
    }

    #[track_caller]
    fn run(&self) -> Output {
        self.berth(&["run", "--bundle", self.bundle(), &self.c.id])
    }

    #[track_caller]
    fn create(&self) -> Output {
        self.berth(&["create", "--bundle", self.bundle(), &self.c.id])
    }
}

fn host_uid_of(pid: i64) -> String {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    line.split_whitespace().nth(1).unwrap().to_string()
}

#[test]
fn the_users_container_is_root_inside_and_the_user_outside() {
    let r = RootlessContainer::new(&["sleep", "1000"]);
    r.create().success();
    r.berth(&["start", &r.c.id]).success();
    let pid = r.c.state_json()["pid"].as_i64().unwrap();
    assert_eq!(host_uid_of(pid), r.user.uid.to_string());

    let inside = r.berth(&[
        "exec",
        &r.c.id,
        "sh",
        "-c",
        "id -u; id -g; cat /proc/self/uid_map",
    ]);
    let words: Vec<String> = inside
        .success()
        .stdout
        .split_whitespace()
        .map(String::from)
        .collect();
    assert_eq!(words, ["0", "0", "0", &r.user.uid.to_string(), "1"]);

    r.berth(&["kill", &r.c.id, "KILL"]).success();
    r.c.wait_for_status("stopped", COMMAND_TIMEOUT);
    r.berth(&["delete", &r.c.id]).success();
    r.c.assert_no_leaks();
}

/// Before `start` the init is berth's own code, kept non-dumpable: the user's `exec` gets the
/// container's namespaces from it, and the exec'd process still cannot open its
/// /proc/<pid>/exe (the host's binary).
#[test]
fn exec_enters_a_created_container() {
    let r = RootlessContainer::new(&["sleep", "1000"]);
    r.create().success();
    let init = r.c.state_json()["pid"].as_i64().unwrap();
    let kinds = ["user", "pid", "mnt", "net", "ipc", "uts"];
    let script = format!(
        "for ns in {}; do readlink /proc/self/ns/$ns; done; readlink /proc/1/exe || echo denied",
        kinds.join(" ")
    );
    let out = r.berth(&["exec", &r.c.id, "sh", "-c", &script]).success();
    let lines: Vec<&str> = out.stdout.lines().collect();
    let of_init: Vec<String> = kinds
        .iter()
        .map(|ns| {
            let link = fs::read_link(format!("/proc/{init}/ns/{ns}")).unwrap();
            link.to_string_lossy().into_owned()
        })
        .collect();
    assert_eq!(lines[..kinds.len()], of_init, "{out}");
    if is_berth() {
        assert_eq!(lines[kinds.len()..], ["denied"], "{out}");
    }

    r.berth(&["start", &r.c.id]).success();
    assert_eq!(r.c.status().as_deref(), Some("running"));
    r.berth(&["delete", "--force", &r.c.id]).success();
    r.c.assert_no_leaks();
}

#[test]
fn host_files_are_the_users_to_write_not_roots() {
    let mut r = RootlessContainer::new(&[
        "sh",
        "-c",
        "stat -c %u:%g /mnt/root-only; echo x >> /mnt/root-only || echo denied; \
         touch /dev/shm/mine && stat -c %u /dev/shm/mine",
    ]);
    let data = r.c.dir.join("data");
    fs::create_dir(&data).unwrap();
    fs::write(data.join("root-only"), "").unwrap();
    r.c.configure(|spec| {
        let bind = MountBuilder::default()
            .destination("/mnt")
            .source(&data)
            .typ("bind")
            .options(vec!["rbind".to_string(), "rw".to_string()])
            .build()
            .unwrap();
        spec.mounts_mut().get_or_insert_with(Vec::new).push(bind);
    });
    let out = r.run().success();
    let lines: Vec<&str> = out.stdout.lines().collect();
    // The host's root is not mapped: its files are nobody's inside, and closed to the container.
    assert_eq!(lines, ["65534:65534", "denied", "0"], "{out}");
    assert_eq!(fs::read_to_string(data.join("root-only")).unwrap(), "");
}

/// A rootless container whose config shares the runtime's user namespace, as rootless podman
/// writes it: no user namespace, no id mappings.
fn sharing_the_runtimes_user_namespace(args: &[&str]) -> RootlessContainer {
    let mut r = RootlessContainer::new(args);
    r.c.configure(|spec| {
        remove_namespace(spec, LinuxNamespaceType::User);
        let linux = spec.linux_mut().as_mut().unwrap();
        linux.set_uid_mappings(None);
        linux.set_gid_mappings(None);
    });
    r
}

/// Runs `script` as root in one user namespace the test user made, as rootless podman runs the
/// runtime (podman keeps that namespace; `unshare` makes a new one at each call). `$RUNTIME`
/// is the runtime with the container's `--root`, `$BUNDLE` and `$ID` the container's.
fn as_root_in_a_user_namespace(r: &RootlessContainer, script: &str) -> Output {
    let runtime = format!("{} --root {}", runtime().display(), r.c.root.display());
    let command = ["unshare", "--user", "--map-root-user", "sh", "-c", script];
    r.as_user(&command, |cmd| {
        cmd.env("RUNTIME", runtime)
            .env("BUNDLE", r.bundle())
            .env("ID", &r.c.id);
    })
}

#[test]
fn root_in_a_user_namespace_runs_a_container_in_the_pid_namespace_of_another() {
    // As podman's `--pid container:<first>`: the second container's config names the first's
    // pid namespace, here through a symlink the script makes once the first runs.
    let r = sharing_the_runtimes_user_namespace(&["sleep", "1000"]);
    let files = r.c.dir.join("user-files");
    fs::create_dir(&files).unwrap();
    chown(&files, Some(r.user.uid), Some(r.user.gid)).unwrap();
    let second = files.join("second");
    fs::create_dir(&second).unwrap();
    let mut spec = r.c.spec().clone();
    set_args(&mut spec, &["sh", "-c", "echo $$; cat /proc/1/cmdline"]);
    let first_rootfs = r.c.bundle.join(spec.root().as_ref().unwrap().path());
    spec.root_mut().as_mut().unwrap().set_path(first_rootfs);
    let first_pid_namespace = files.join("first-pid-ns");
    let linux = spec.linux_mut().as_mut().unwrap();
    for namespace in linux.namespaces_mut().as_mut().unwrap() {
        if namespace.typ() == LinuxNamespaceType::Pid {
            namespace.set_path(Some(first_pid_namespace.clone()));
        }
    }
    spec.save(second.join("config.json")).unwrap();

    let script = format!(
        "$RUNTIME run --detach --pid-file {files}/first.pid --bundle $BUNDLE $ID && \
         ln -s /proc/$(cat {files}/first.pid)/ns/pid {pid_namespace} && \
         $RUNTIME run --bundle {second} $ID-second; code=$?; \
         $RUNTIME delete --force $ID; exit $code",
        files = files.display(),
        pid_namespace = first_pid_namespace.display(),
        second = second.display(),
    );
    let out = as_root_in_a_user_namespace(&r, &script).success();
    // The second's process is the first's namespace's second, beside its `sleep`.
    let words: Vec<&str> = out
        .stdout
        .split(['\n', '\0'])
        .filter(|w| !w.is_empty())
        .collect();
    assert_eq!(words, ["2", "sleep", "1000"], "{out}");
    r.c.assert_no_leaks();
}

#[test]
fn root_in_a_user_namespace_runs_a_container_without_one_of_its_own() {
    // Devices can only be bound from the host there.
    let r = sharing_the_runtimes_user_namespace(&[
        "sh",
        "-c",
        "id -u; cat /proc/self/uid_map; ls /dev/null",
    ]);
    let out = as_root_in_a_user_namespace(&r, "$RUNTIME run --bundle $BUNDLE $ID").success();
    let words: Vec<&str> = out.stdout.split_whitespace().collect();
    let uid = r.user.uid.to_string();
    assert_eq!(words, ["0", "0", &uid, "1", "/dev/null"], "{out}");
}

/// berth once entered the container's pid namespace for the clone and then tried to go back,
/// which root in a user namespace may not: setns into its own (the host's) pid namespace needs
/// CAP_SYS_ADMIN over the host's. So: `start` (`run --detach`, `create`) the container as root
/// in a user namespace, exec into it and delete it; the exec'd shell must be root there and the
/// container's second process.
fn assert_exec_as_root_in_a_user_namespace(r: &RootlessContainer, start: &str) {
    let script = format!(
        "$RUNTIME {start} --bundle $BUNDLE $ID && \
         $RUNTIME exec $ID sh -c 'id -u; echo $$'; code=$?; \
         $RUNTIME delete --force $ID; exit $code"
    );
    let out = as_root_in_a_user_namespace(r, &script).success();
    let words: Vec<&str> = out.stdout.split_whitespace().collect();
    assert_eq!(words, ["0", "2"], "{out}");
    r.c.assert_no_leaks();
}

#[test]
fn root_in_a_user_namespace_execs_into_its_running_container() {
    let r = sharing_the_runtimes_user_namespace(&["sleep", "1000"]);
    assert_exec_as_root_in_a_user_namespace(&r, "run --detach");
}

#[test]
fn root_in_a_user_namespace_execs_into_a_created_container_with_a_user_namespace() {
    let mut r = RootlessContainer::new(&["sleep", "1000"]);
    // Its own user namespace, mapping the runtime's root, the one id mapped where it runs.
    r.c.configure(|spec| {
        let root_only = LinuxIdMappingBuilder::default()
            .host_id(0u32)
            .container_id(0u32)
            .size(1u32)
            .build()
            .unwrap();
        let linux = spec.linux_mut().as_mut().unwrap();
        linux.set_uid_mappings(Some(vec![root_only]));
        linux.set_gid_mappings(Some(vec![root_only]));
    });
    assert_exec_as_root_in_a_user_namespace(&r, "create");
}

#[test]
fn state_defaults_to_the_users_runtime_dir() {
    let r = RootlessContainer::new(&["sleep", "1000"]);
    // $XDG_RUNTIME_DIR/berth is the test's --root, so the harness still finds what is left.
    let runtime_dir = r.c.dir.join("xdg");
    fs::create_dir_all(&runtime_dir).unwrap();
    std::os::unix::fs::symlink(&r.c.root, runtime_dir.join(runtime_name())).unwrap();
    let without_root = |args: &[&str]| {
        let mut full = vec![runtime().to_str().unwrap()];
        full.extend_from_slice(args);
        r.as_user(&full, |cmd| {
            cmd.env("XDG_RUNTIME_DIR", &runtime_dir);
        })
    };
    without_root(&["create", "--bundle", r.bundle(), &r.c.id]).success();
    assert!(r.c.state_dir().is_dir(), "no state under $XDG_RUNTIME_DIR");
    let listed = without_root(&["list", "-q"]).success().stdout;
    assert_eq!(listed.trim(), r.c.id);
    without_root(&["delete", "--force", &r.c.id]).success();
    r.c.assert_no_leaks();
}

#[test]
fn root_in_a_user_namespace_without_user_keeps_state_in_the_runtime_dir() {
    // How conmon runs the runtime for rootless podman: no --root, no $USER.
    let r = sharing_the_runtimes_user_namespace(&["sleep", "1000"]);
    let runtime_dir = r.c.dir.join("xdg");
    fs::create_dir_all(&runtime_dir).unwrap();
    std::os::unix::fs::symlink(&r.c.root, runtime_dir.join(runtime_name())).unwrap();
    let script = "$BERTH create --bundle $BUNDLE $ID && $BERTH list --quiet; \
                  $BERTH delete --force $ID";
    let command = ["unshare", "--user", "--map-root-user", "sh", "-c", script];
    let out = r.as_user(&command, |cmd| {
        cmd.env_remove("USER")
            .env("XDG_RUNTIME_DIR", &runtime_dir)
            .env("BERTH", runtime())
            .env("BUNDLE", r.bundle())
            .env("ID", &r.c.id);
    });
    assert_eq!(out.success().stdout.trim(), r.c.id);
    r.c.assert_no_leaks();
}

/// The directory name each runtime uses under $XDG_RUNTIME_DIR.
fn runtime_name() -> &'static str {
    if is_berth() { "berth" } else { "runc" }
}

#[test]
fn without_delegated_cgroups_the_container_stays_in_the_users() {
    let r = RootlessContainer::new(&["sleep", "1000"]);
    assert!(
        r.c.spec()
            .linux()
            .as_ref()
            .unwrap()
            .cgroups_path()
            .is_none()
    );
    r.create().success();
    let pid = r.c.state_json()["pid"].as_i64().unwrap();
    // The user's runtime ran from this test's cgroups.
    let of_container = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    assert_eq!(
        of_container,
        fs::read_to_string("/proc/self/cgroup").unwrap()
    );
    r.berth(&["delete", "--force", &r.c.id]).success();
    r.c.assert_no_leaks();
}

#[test]
fn limits_without_delegated_cgroups_are_refused() {
    let mut r = RootlessContainer::new(&["true"]);
    r.c.configure(|spec| {
        let pids = LinuxPidsBuilder::default().limit(10).build().unwrap();
        let resources = LinuxResourcesBuilder::default().pids(pids).build().unwrap();
        spec.linux_mut()
            .as_mut()
            .unwrap()
            .set_resources(Some(resources));
    });
    let out = r.create().failure();
    if is_berth() {
        assert!(out.stderr.contains("no cgroup to set limits in"), "{out}");
    }
    r.c.assert_no_leaks();
}

#[test]
fn additional_groups_are_refused_where_setgroups_is_denied() {
    let mut r = RootlessContainer::new(&["true"]);
    r.c.configure(|spec| {
        let user = spec.process_mut().as_mut().unwrap().user_mut();
        user.set_additional_gids(Some(vec![0]));
    });
    let out = r.create().failure();
    assert!(out.stderr.contains("additional"), "{out}");
    r.c.assert_no_leaks();
}

#[test]
fn a_range_beyond_the_users_own_id_is_mapped_with_newuidmap() {
    let mut r = RootlessContainer::new(&[
        "sh",
        "-c",
        "cat /proc/self/uid_map /proc/self/gid_map; touch /dev/shm/f; stat -c %u:%g /dev/shm/f",
    ]);
    let (uid, gid) = (r.user.uid, r.user.gid);
    let (sub_uid, sub_uid_count) = r.user.subordinate_range("/etc/subuid");
    let (sub_gid, sub_gid_count) = r.user.subordinate_range("/etc/subgid");
    let map = |own: u32, sub: u32, count: u32| {
        let mapping = |container_id: u32, host_id: u32, size: u32| {
            LinuxIdMappingBuilder::default()
                .container_id(container_id)
                .host_id(host_id)
                .size(size)
                .build()
                .unwrap()
        };
        vec![mapping(0, own, 1), mapping(1, sub, count)]
    };
    r.c.configure(|spec| {
        let linux = spec.linux_mut().as_mut().unwrap();
        linux.set_uid_mappings(Some(map(uid, sub_uid, sub_uid_count)));
        linux.set_gid_mappings(Some(map(gid, sub_gid, sub_gid_count)));
        // Only a mapped id can be taken: the process runs as one from the subordinate range.
        let user = spec.process_mut().as_mut().unwrap().user_mut();
        user.set_uid(1);
        user.set_gid(1);
    });
    let out = r.run().success();
    let words: Vec<&str> = out.stdout.split_whitespace().collect();
    let expected = [
        "0".to_string(),
        uid.to_string(),
        "1".into(),
        "1".into(),
        sub_uid.to_string(),
        sub_uid_count.to_string(),
        "0".into(),
        gid.to_string(),
        "1".into(),
        "1".into(),
        sub_gid.to_string(),
        sub_gid_count.to_string(),
        "1:1".into(),
    ];
    assert_eq!(words, expected, "{out}");
}

#[test]
fn delegated_cgroups_take_the_container_and_its_limits() {
    let mut r = RootlessContainer::new(&["sleep", "1000"]);
    let delegated = DelegatedCgroup::new(&r.c.id, r.user.uid, r.user.gid);
    r.c.configure(|spec| {
        let linux = spec.linux_mut().as_mut().unwrap();
        linux.set_cgroups_path(Some(PathBuf::from(format!("{}/c", delegated.name))));
        let pids = LinuxPidsBuilder::default().limit(7).build().unwrap();
        let resources = LinuxResourcesBuilder::default().pids(pids).build().unwrap();
        linux.set_resources(Some(resources));
    });
    // As a delegating manager places its user's session: berth starts inside the delegated
    // cgroup2 subtree, so it may move the container within it.
    let create = delegated.run_inside(&r, &["create", "--bundle", r.bundle(), &r.c.id]);
    create.success();
    let pid = r.c.state_json()["pid"].as_i64().unwrap();
    let pids_dir = delegated.container_dir_with("pids.max");
    let pids_max = || fs::read_to_string(pids_dir.join("pids.max")).unwrap();
    assert_eq!(pids_max().trim(), "7");
    let members = fs::read_to_string(pids_dir.join("cgroup.procs")).unwrap();
    assert_eq!(members.trim(), pid.to_string());

    // Updates carry device rules too (containerd sends whole resources): left out, as at create.
    let update = r.c.dir.join("update.json");
    let resources = r#"{"pids":{"limit":9},"devices":[{"allow":false,"access":"rwm"}]}"#;
    fs::write(&update, resources).unwrap();
    let update = update.to_str().unwrap();
    r.berth(&["update", "--resources", update, &r.c.id])
        .success();
    assert_eq!(pids_max().trim(), "9");
    r.berth(&["delete", "--force", &r.c.id]).success();
    assert!(!pids_dir.exists(), "delete left the container's cgroup");
    drop(delegated);
    r.c.assert_no_leaks();
}

/// `/<name>` in every cgroup hierarchy, given to a user as a manager delegates: the directory
/// is the user's, and on cgroup2 a `runtime` child for the user's processes. cpuset is filled in
/// (a new v1 cpuset is empty). Named as the harness's container cgroups, so its leak check and
/// cleanup cover it too; removed on drop.
struct DelegatedCgroup {
    name: String,
    dirs: Vec<PathBuf>,
}

impl DelegatedCgroup {
    fn new(id: &str, uid: u32, gid: u32) -> DelegatedCgroup {
        let name = format!("/berth-it-{id}");
        let mut dirs = Vec::new();
        for mount in cgroup_hierarchies() {
            let dir = mount.join(&name[1..]);
            fs::create_dir(&dir).unwrap();
            dirs.push(dir.clone());
            // A new v1 cpuset starts empty; a cgroup2 one inherits (its root has no such file).
            for file in ["cpuset.cpus", "cpuset.mems"] {
                if dir.join(file).exists() && mount.join(file).exists() {
                    fs::write(dir.join(file), fs::read(mount.join(file)).unwrap()).unwrap();
                }
            }
            let mut owned = vec![dir.clone()];
            if dir.join("cgroup.subtree_control").exists() {
                let runtime = dir.join("runtime");
                fs::create_dir(&runtime).unwrap();
                dirs.insert(dirs.len() - 1, runtime.clone());
                owned.extend(["cgroup.procs", "cgroup.subtree_control"].map(|f| dir.join(f)));
                owned.extend([runtime.clone(), runtime.join("cgroup.procs")]);
            }
            for path in owned {
                chown(&path, Some(uid), Some(gid)).unwrap();
            }
        }
        DelegatedCgroup { name, dirs }
    }

    /// The container's cgroup `c` in the hierarchy that has `file` (pids.max: the v1 pids one,
    /// or the cgroup2 one on a pure v2 host).
    fn container_dir_with(&self, file: &str) -> PathBuf {
        let dirs = self.dirs.iter().map(|d| d.join("c"));
        let mut found = dirs.filter(|d| d.join(file).exists());
        found
            .next()
            .unwrap_or_else(|| panic!("no container cgroup has {file}"))
    }

    /// The runtime as the user, placed first (by root, as a delegating manager does) in the
    /// delegated cgroup2 `runtime` child: moving a process needs write access to the cgroup
    /// that holds both where it is and where it goes.
    #[track_caller]
    fn run_inside(&self, r: &RootlessContainer, args: &[&str]) -> Output {
        let (uid, gid) = (r.user.uid, r.user.gid);
        let root = r.c.root.display();
        let mut script = format!(
            "exec setpriv --reuid {uid} --regid {gid} --clear-groups -- {} --root {root}",
            runtime().display()
        );
        for arg in args {
            script.push_str(&format!(" '{arg}'"));
        }
        let cgroup2_runtime = self.dirs.iter().find(|d| d.ends_with("runtime"));
        if let Some(dir) = cgroup2_runtime {
            script = format!("echo $$ > {}/cgroup.procs && {script}", dir.display());
        }
        r.c.spawn_program(Path::new("sh"), &["-c", &script], |_| {})
            .wait(COMMAND_TIMEOUT)
    }
}

impl Drop for DelegatedCgroup {
    fn drop(&mut self) {
        for dir in &self.dirs {
            let _ = fs::remove_dir(dir);
        }
    }
}
