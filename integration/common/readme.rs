//! README examples, run as a user would run them by hand, so that every snippet stays true.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::time::Duration;

use nix::sys::signal::Signal;
use nix::unistd::Pid;

use super::{COMMAND_TIMEOUT, Container, Output, runtime};

const README: &str = include_str!("../../README.md");

/// The fenced code block of README.md that contains `marker`, without its fence lines. The
/// README's snippets are what the suites use, so a snippet that breaks fails a test.
pub fn readme_block(marker: &str) -> String {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in README.lines() {
        match (&mut current, line.trim_start().starts_with("```")) {
            (None, true) => current = Some(String::new()),
            (Some(_), true) => blocks.extend(current.take()),
            (Some(block), false) => {
                block.push_str(line);
                block.push('\n');
            }
            (None, false) => {}
        }
    }
    let mut matching = blocks.into_iter().filter(|b| b.contains(marker));
    let block = matching
        .next()
        .unwrap_or_else(|| panic!("README.md has no code block containing {marker:?}"));
    assert!(
        matching.next().is_none(),
        "README.md has more than one code block containing {marker:?}"
    );
    block
}

impl Container {
    /// Runs the README example for container `readme_id` with bash (`-euo pipefail`) in
    /// this test's bundle (the rootfs and this harness's config, standing in for a fresh
    /// `berth spec`). `berth` there is the runtime under test with this test's `--root`, and
    /// the argument `readme_id` becomes this test's unique id, so that the guard cleans up.
    #[track_caller]
    pub fn run_readme_example(&self, readme_id: &str) -> Output {
        self.run_readme_example_renaming(readme_id, &[])
    }

    /// Like [`run_readme_example`](Self::run_readme_example), with each `(name, unique)`
    /// replacing the example's host-wide names (network interfaces, say) by this test's own.
    #[track_caller]
    pub fn run_readme_example_renaming(&self, readme_id: &str, names: &[(&str, &str)]) -> Output {
        self.run_readme_example_within(readme_id, names, COMMAND_TIMEOUT)
    }

    /// Like [`run_readme_example_renaming`](Self::run_readme_example_renaming), for an example
    /// that may take up to `timeout`.
    #[track_caller]
    pub fn run_readme_example_within(
        &self,
        readme_id: &str,
        names: &[(&str, &str)],
        timeout: Duration,
    ) -> Output {
        let script = names.iter().fold(
            readme_block(&format!(" {readme_id}")),
            |script, (name, unique)| script.replace(name, unique),
        );
        let bin = self.dir.join("readme-bin");
        fs::create_dir_all(&bin).expect("create the shim's dir");
        write_berth_shim(&bin.join("berth"), readme_id, self);
        let path = format!(
            "{}:{}",
            bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let bundle = self.bundle.clone();
        let spawned = self.spawn_program(
            Path::new("/bin/bash"),
            &["-euo", "pipefail", "-c", &script],
            |command| {
                command
                    .current_dir(bundle)
                    .env("PATH", path)
                    .process_group(0);
            },
        );
        let _group = KillOnDrop(Pid::from_raw(spawned.child.id() as i32));
        spawned.wait(timeout)
    }
}

fn write_berth_shim(path: &Path, readme_id: &str, container: &Container) {
    let shim = format!(
        "#!/bin/sh\n\
         for arg; do shift; [ \"$arg\" = '{readme_id}' ] && arg='{id}'; set -- \"$@\" \"$arg\"; done\n\
         exec '{bin}' --root '{root}' \"$@\"\n",
        id = container.id,
        bin = runtime().display(),
        root = container.root.display(),
    );
    fs::write(path, shim).expect("write the berth shim");
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).expect("chmod the berth shim");
}

/// A process group that ends with this value: whatever an example started in the background
/// (even after it failed or hung) must not outlive its test.
struct KillOnDrop(Pid);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = nix::sys::signal::killpg(self.0, Signal::SIGKILL);
    }
}
