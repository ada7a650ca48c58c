//! Docker and podman share a command line (`run`, `exec`, `inspect`, `rm -f` …): an [`Engine`]
//! is one of them set up privately, and a [`Session`] is one test's use of it with one runtime.

use std::cell::RefCell;
use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use super::{IMAGE, Runtime, private_dir, traces};
use crate::common::{self, Output};

/// Longest one engine command may take (a `stop` alone may wait 10 s for its signal to work).
pub const ENGINE_TIMEOUT: Duration = Duration::from_secs(120);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Docker,
    Podman,
}

/// A private Docker or podman: the CLI and the arguments and environment that point it at
/// this test process's daemon and state only.
#[derive(Clone)]
pub struct Engine {
    pub kind: Kind,
    pub program: PathBuf,
    pub global_args: Vec<String>,
    pub env: Vec<(String, OsString)>,
    /// Given to every `run`.
    pub run_args: Vec<String>,
    /// The cgroup (absolute, the same in every hierarchy) that containers are created under.
    pub cgroup_parent: String,
    /// Where each runtime keeps a container's state, as `<root>/<id>`.
    pub runtime_roots: Vec<(Runtime, PathBuf)>,
    /// The uid and gid the engine runs as when not root (rootless podman): each session's
    /// directory is theirs, for the cid files.
    pub runs_as: Option<(u32, u32)>,
}

impl Engine {
    /// `<cli> <global args> args…` with the engine's environment, in `io_dir` (conmon writes
    /// files into the directory podman ran in); output in files of `io_dir`.
    pub fn spawn(
        &self,
        args: &[&str],
        io_dir: &Path,
        name: &str,
        adjust: impl FnOnce(&mut Command),
    ) -> common::Spawned {
        let mut full: Vec<&str> = self.global_args.iter().map(String::as_str).collect();
        full.extend_from_slice(args);
        common::spawn_captured(&self.program, &full, io_dir, name, |command| {
            command
                .current_dir(io_dir)
                .envs(self.env.iter().map(|(k, v)| (k, v)));
            adjust(command);
        })
    }

    /// `rm --force <name>`, killing at once: podman would first try SIGTERM for 10 s.
    pub fn rm_args<'a>(&self, name: &'a str) -> Vec<&'a str> {
        match self.kind {
            Kind::Docker => vec!["rm", "--force", name],
            Kind::Podman => vec!["rm", "--force", "--time", "0", name],
        }
    }

    /// The `--root` the engine gives `runtime`.
    pub fn runtime_root(&self, runtime: Runtime) -> &Path {
        let (_, root) = self
            .runtime_roots
            .iter()
            .find(|(r, _)| *r == runtime)
            .expect("every runtime has a root");
        root
    }

    /// After the engine's own cleanup: kills the processes still in its cgroup parent, removes
    /// that cgroup and scrubs `dir`; returns what should not have been there (the `expected`
    /// cgroups below the parent are the engine's own).
    pub fn leftovers(&self, expected: &[&str], dir: &Path) -> Vec<String> {
        let mut found = traces::kill_processes_mentioning(&self.cgroup_parent);
        found.extend(traces::remove_cgroup_parent(&self.cgroup_parent, expected));
        found.extend(traces::scrub_dir(dir));
        found
    }

    /// Everything still on the host that names container `id`.
    pub fn traces_of(&self, id: &str) -> Vec<String> {
        let state_dirs: Vec<PathBuf> = self
            .runtime_roots
            .iter()
            .map(|(_, root)| root.join(id))
            .collect();
        traces::settled_traces_of(id, &self.cgroup_parent, &state_dirs)
    }
}

/// One test's containers on one engine with one runtime. Every container it runs gets a name
/// of its own; dropping the session removes them (`rm -f`) and fails the test if anything of
/// theirs is left on the host.
pub struct Session {
    pub engine: &'static Engine,
    pub runtime: Runtime,
    /// This test's files: command output, cid files, bind-mount sources.
    pub dir: PathBuf,
    prefix: String,
    names: RefCell<Vec<String>>,
    commands: AtomicUsize,
}

impl Session {
    pub fn new(engine: &'static Engine, runtime: Runtime) -> Self {
        static SESSIONS: AtomicUsize = AtomicUsize::new(0);
        let n = SESSIONS.fetch_add(1, Ordering::Relaxed);
        // libtest names the thread after the test: `docker::berth::run_exit_code`.
        let test = std::thread::current()
            .name()
            .and_then(|name| name.rsplit("::").next().map(str::to_string))
            .unwrap_or_else(|| "test".to_string());
        let engine_name = match engine.kind {
            Kind::Docker => "docker",
            Kind::Podman => "podman",
        };
        let prefix = format!(
            "{engine_name}-{}-{}-{n}",
            runtime.name(),
            test.replace('_', "-")
        );
        let dir = private_dir(&format!("tests/{prefix}"));
        if let Some((uid, gid)) = engine.runs_as {
            std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).expect("chown the session dir");
        }
        Session {
            engine,
            runtime,
            dir,
            prefix,
            names: RefCell::new(Vec::new()),
            commands: AtomicUsize::new(0),
        }
    }

    /// The engine's command, waited for (at most [`ENGINE_TIMEOUT`]).
    #[track_caller]
    pub fn cli(&self, args: &[&str]) -> Output {
        self.cli_with(args, |_| {})
    }

    /// Like [`cli`](Self::cli), with a hook to adjust the command (stdin…).
    #[track_caller]
    pub fn cli_with(&self, args: &[&str], adjust: impl FnOnce(&mut Command)) -> Output {
        let n = self.commands.fetch_add(1, Ordering::Relaxed);
        self.engine
            .spawn(args, &self.dir.join("io"), &n.to_string(), adjust)
            .wait(ENGINE_TIMEOUT)
    }

    /// A new container name, removed with the session.
    fn new_name(&self) -> String {
        let mut names = self.names.borrow_mut();
        let name = format!("{}-{}", self.prefix, names.len());
        names.push(name.clone());
        name
    }

    /// The name of the container this session made last.
    pub fn last_name(&self) -> String {
        let names = self.names.borrow();
        names.last().expect("no container made yet").clone()
    }

    fn cid_file(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.cid"))
    }

    /// The full arguments of `run`: this session's runtime, a name and a cid file, no network
    /// unless `opts` choose one (or a pod),
    /// the engine's own, then `opts`, `image` and `cmd`.
    fn run_args(&self, name: &str, opts: &[&str], image: &str, cmd: &[&str]) -> Vec<String> {
        let cid_file = self.cid_file(name);
        let mut args: Vec<String> = [
            "run",
            "--runtime",
            self.runtime.name(),
            "--name",
            name,
            "--cidfile",
            cid_file.to_str().expect("utf-8 run dir"),
        ]
        .map(String::from)
        .into();
        // A pod's containers share the pod's network.
        if !opts.contains(&"--network") && !opts.contains(&"--pod") {
            args.extend(["--network", "none"].map(String::from));
        }
        args.extend(self.engine.run_args.iter().cloned());
        args.extend(opts.iter().map(|o| o.to_string()));
        args.push(image.to_string());
        args.extend(cmd.iter().map(|c| c.to_string()));
        args
    }

    /// `run [opts…] IMAGE cmd…` in the foreground, in a new container.
    #[track_caller]
    pub fn run(&self, opts: &[&str], cmd: &[&str]) -> Output {
        self.run_with(opts, cmd, |_| {})
    }

    /// `run [opts…] <image> cmd…`: like [`run`](Self::run), of another image.
    #[track_caller]
    pub fn run_image(&self, image: &str, opts: &[&str], cmd: &[&str]) -> Output {
        let name = self.new_name();
        let args = self.run_args(&name, opts, image, cmd);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.cli(&args)
    }

    /// Like [`run`](Self::run), with a hook to adjust the command (stdin…).
    #[track_caller]
    pub fn run_with(
        &self,
        opts: &[&str],
        cmd: &[&str],
        adjust: impl FnOnce(&mut Command),
    ) -> Output {
        let name = self.new_name();
        let args = self.run_args(&name, opts, IMAGE, cmd);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.cli_with(&args, adjust)
    }

    /// `run --detach [opts…] IMAGE cmd…`: a new container, started; returns its name.
    #[track_caller]
    pub fn start(&self, opts: &[&str], cmd: &[&str]) -> String {
        let name = self.new_name();
        let mut all_opts = vec!["--detach"];
        all_opts.extend_from_slice(opts);
        let args = self.run_args(&name, &all_opts, IMAGE, cmd);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.cli(&args).success();
        name
    }

    /// A container that sleeps until stopped, with `opts`.
    #[track_caller]
    pub fn sleeper(&self, opts: &[&str]) -> String {
        self.start(opts, &["sleep", "1000"])
    }

    /// `inspect --format <format> <name>`, trimmed.
    #[track_caller]
    pub fn inspect(&self, name: &str, format: &str) -> String {
        let out = self.cli(&["inspect", "--format", format, name]).success();
        out.stdout.trim().to_string()
    }

    /// `pod inspect --format <format> <pod>`, trimmed (podman).
    #[track_caller]
    pub fn inspect_pod(&self, pod: &str, format: &str) -> String {
        let out = self
            .cli(&["pod", "inspect", "--format", format, pod])
            .success();
        out.stdout.trim().to_string()
    }

    /// The host pid of the container's process.
    #[track_caller]
    pub fn pid(&self, name: &str) -> i32 {
        let pid = self.inspect(name, "{{.State.Pid}}");
        pid.parse()
            .unwrap_or_else(|e| panic!("pid of {name} is {pid:?}: {e}"))
    }

    /// The container's full id (from its cid file), once it was created.
    pub fn id(&self, name: &str) -> Option<String> {
        let id = fs::read_to_string(self.cid_file(name)).ok()?;
        Some(id.trim().to_string()).filter(|id| !id.is_empty())
    }

    /// `exec [opts…] <name> cmd…`.
    #[track_caller]
    pub fn exec(&self, opts: &[&str], name: &str, cmd: &[&str]) -> Output {
        let mut args = vec!["exec"];
        args.extend_from_slice(opts);
        args.push(name);
        args.extend_from_slice(cmd);
        self.cli(&args)
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let mut leftovers = Vec::new();
        // Newest first: a later container may depend on an earlier one (joined namespaces),
        // and podman refuses to remove a container others depend on.
        for name in self.names.borrow().iter().rev() {
            let mut rm = self
                .engine
                .spawn(&self.engine.rm_args(name), &self.dir, "rm", |_| {});
            if common::wait_timeout(&mut rm.child, ENGINE_TIMEOUT).is_none() {
                let _ = rm.child.kill();
                let _ = rm.child.wait();
                leftovers.push(format!("`rm --force {name}` hung"));
            }
            if let Some(id) = self.id(name) {
                leftovers.extend(
                    self.engine
                        .traces_of(&id)
                        .into_iter()
                        .map(|t| format!("{name}: {t}")),
                );
            }
        }
        if !leftovers.is_empty() && !std::thread::panicking() {
            panic!(
                "after `rm --force`, {} left behind:\n  {}",
                self.prefix,
                leftovers.join("\n  ")
            );
        }
    }
}
