//! What the engine suites share: the runtimes under test, this process's run directory and its
//! teardown, the test image, private daemons and the checks that a container left nothing behind.

pub mod cgroup;
pub mod containerd;
pub mod daemon;
pub mod engine;
pub mod traces;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, Once, OnceLock};

use crate::common;
pub use crate::common::readme::readme_block;

/// Name every engine knows the test image by: fully qualified, so that no engine tries a
/// registry or asks which one it meant.
pub const IMAGE: &str = "localhost/berth-busybox:latest";

/// Who makes the containers' cgroups, as the engine is configured: itself (cgroup dirs below its
/// cgroup parent) or systemd (a transient scope per container in a slice, the runtime called
/// with `--systemd-cgroup`; needs systemd as PID 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CgroupDriver {
    Cgroupfs,
    Systemd,
}

/// Stops slice `slice` (and what is left in it), so that systemd forgets it; a note if that
/// failed.
pub fn stop_slice(slice: &str) -> Option<String> {
    let stop = Command::new("systemctl").args(["stop", slice]).output();
    match stop {
        Ok(out) if out.status.success() => None,
        other => Some(format!("systemctl stop {slice}: {other:?}")),
    }
}

/// The runtime an engine is told to use for one scenario.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Runtime {
    /// The binary under test: `$BERTH_BIN`, default the berth cargo built.
    Berth,
    /// The control: Debian's runc, /usr/sbin/runc (Docker's built-in `runc` finds it in PATH).
    Runc,
}

impl Runtime {
    /// The name the engines register it under (`docker run --runtime <name>`).
    pub fn name(self) -> &'static str {
        match self {
            Runtime::Berth => "berth",
            Runtime::Runc => "runc",
        }
    }

    pub fn binary(self) -> PathBuf {
        match self {
            Runtime::Berth => common::runtime().to_path_buf(),
            Runtime::Runc => PathBuf::from("/usr/sbin/runc"),
        }
    }
}

/// The berth the engines are given: the binary under test or, with
/// `$BERTH_ENGINES_CAPTURE=DIR`, a wrapper that first records each call in DIR
/// (`tools/capture-runtime`: argv, cwd, env, config.json, process and resources files).
pub fn registered_berth() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let Some(capture_dir) = std::env::var_os("BERTH_ENGINES_CAPTURE") else {
            return Runtime::Berth.binary();
        };
        let capture_dir = std::path::absolute(capture_dir).expect("a usable capture dir");
        fs::create_dir_all(&capture_dir).expect("create the capture dir");
        let wrapper = run_dir().join("berth-captured");
        let script = format!(
            "#!/bin/sh\nexec {} '{}' '{}' \"$@\"\n",
            concat!(env!("CARGO_MANIFEST_DIR"), "/tools/capture-runtime"),
            capture_dir.display(),
            Runtime::Berth.binary().display()
        );
        fs::write(&wrapper, script).expect("write the capture wrapper");
        fs::set_permissions(&wrapper, fs::Permissions::from_mode(0o755))
            .expect("make the capture wrapper executable");
        wrapper
    })
}

/// Generates one `#[test]` per scenario and runtime: `berth::<scenario>` and `runc::<scenario>`,
/// each calling `$scenarios::<scenario>(&Session::new(&$engine, runtime))`. Attributes before
/// `engine:` go on every test (`#[ignore = "…"]` for a suite that needs another host).
///
/// A scenario that berth fails because of a known, open bug is marked
/// `#[known_bug("issue N.M: what")]`: its berth test is then `#[ignore]`d (run it with
/// `-- --ignored`), its runc control still runs. Remove the mark when the fix lands.
macro_rules! engine_scenarios {
    (
        @every $every:tt
        engine: $engine:expr, session: $session:path, scenarios: $scenarios:path;
        $( $(#[known_bug($why:literal)])? $name:ident, )*
    ) => {
        pub mod berth {
            #[allow(unused_imports)]
            use super::*;
            $(
                $crate::harness::with_attributes! { $every
                    #[test]
                    $(#[ignore = $why])?
                    fn $name() {
                        use $scenarios as scenarios;
                        scenarios::$name(&<$session>::new(&$engine, $crate::harness::Runtime::Berth));
                    }
                }
            )*
        }
        pub mod runc {
            #[allow(unused_imports)]
            use super::*;
            $(
                $crate::harness::with_attributes! { $every
                    #[test]
                    fn $name() {
                        use $scenarios as scenarios;
                        scenarios::$name(&<$session>::new(&$engine, $crate::harness::Runtime::Runc));
                    }
                }
            )*
        }
    };
    (
        $(#[$every:meta])*
        engine: $engine:expr, session: $session:path, scenarios: $scenarios:path;
        $( $(#[known_bug($why:literal)])? $name:ident, )*
    ) => {
        $crate::harness::engine_scenarios! {
            @every [$(#[$every])*]
            engine: $engine, session: $session, scenarios: $scenarios;
            $( $(#[known_bug($why)])? $name, )*
        }
    };
}
pub(crate) use engine_scenarios;

/// `item` with the attributes in brackets before it (a macro may not repeat a list of
/// attributes inside another repetition; it can pass them on as one bracketed group).
macro_rules! with_attributes {
    ([$(#[$attribute:meta])*] $item:item) => {
        $(#[$attribute])* $item
    };
}
pub(crate) use with_attributes;

/// This test process's directory for daemons, the image and test files:
/// `/tmp/berth-engines-<pid>`, short because unix socket paths inside must stay < 108 bytes.
/// Removed at exit (see [`at_exit`]).
pub fn run_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        assert!(
            nix::unistd::geteuid().is_root(),
            "the engine tests must run as root"
        );
        let dir = std::env::temp_dir().join(format!("berth-engines-{}", std::process::id()));
        fs::create_dir_all(&dir).expect("create the run dir");
        // Registered first, so it runs last: after every daemon's own teardown.
        at_exit(|| traces::scrub_dir(run_dir()));
        dir
    })
}

/// A directory of its own under the run dir (`name` must be unique in this process).
pub fn private_dir(name: &str) -> PathBuf {
    let dir = run_dir().join(name);
    fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
    dir
}

type Teardown = Box<dyn FnOnce() -> Vec<String> + Send>;

static TEARDOWNS: Mutex<Vec<Teardown>> = Mutex::new(Vec::new());

/// Runs `teardown` when this test process exits, also after failed tests (libtest exits through
/// `exit`, which runs `atexit` handlers), last registered first. A teardown returns what it
/// found left behind; if any did, the process exits 1 after listing them, so the run fails even
/// though every test passed.
pub fn at_exit(teardown: impl FnOnce() -> Vec<String> + Send + 'static) {
    static REGISTER: Once = Once::new();
    REGISTER.call_once(|| {
        // SAFETY: registers a plain `extern "C"` function without arguments; it runs once, at
        // exit, on the exiting thread.
        let rc = unsafe { libc::atexit(run_teardowns) };
        assert_eq!(rc, 0, "atexit failed");
    });
    TEARDOWNS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(Box::new(teardown));
}

extern "C" fn run_teardowns() {
    let mut leftovers = Vec::new();
    loop {
        let next = TEARDOWNS.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let Some(teardown) = next else { break };
        // A panic must not unwind out of an `extern "C"` function; report it as a leftover.
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(teardown)) {
            Ok(found) => leftovers.extend(found),
            Err(_) => leftovers.push("a teardown panicked (see above)".to_string()),
        }
    }
    if !leftovers.is_empty() {
        eprintln!(
            "engine teardown: left behind (now removed where possible):\n  {}",
            leftovers.join("\n  ")
        );
        // SAFETY: ends the process without running the remaining exit handlers, which is what
        // exit would do next anyway; only the exit status differs.
        unsafe { libc::_exit(1) };
    }
}

/// True when overlayfs mounts work in the run dir (not so when it is itself on overlayfs, as in
/// some CI containers): the engines then use their overlay storage driver, else vfs (slower,
/// same behaviour).
pub fn overlay_works() -> bool {
    static WORKS: OnceLock<bool> = OnceLock::new();
    *WORKS.get_or_init(|| {
        let probe = private_dir("overlay-probe");
        for dir in ["lower", "upper", "work", "merged"] {
            fs::create_dir_all(probe.join(dir)).expect("create overlay probe dirs");
        }
        let options = format!(
            "lowerdir={0}/lower,upperdir={0}/upper,workdir={0}/work",
            probe.display()
        );
        let merged = probe.join("merged");
        let mounted = nix::mount::mount(
            Some("overlay"),
            &merged,
            Some("overlay"),
            nix::mount::MsFlags::empty(),
            Some(options.as_str()),
        );
        if mounted.is_ok() {
            nix::mount::umount(&merged).expect("unmount the overlay probe");
        }
        fs::remove_dir_all(&probe).expect("remove the overlay probe");
        mounted.is_ok()
    })
}

/// The test image as a tar every engine loads (`tools/mkimage` of the test rootfs), built once
/// per test process.
pub fn image_tar() -> &'static Path {
    static TAR: OnceLock<PathBuf> = OnceLock::new();
    TAR.get_or_init(|| {
        let tar = run_dir().join("busybox.tar");
        let status = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tools/mkimage"))
            .arg(common::rootfs_template())
            .arg(IMAGE)
            .arg(&tar)
            .status()
            .expect("cannot run tools/mkimage");
        assert!(status.success(), "tools/mkimage failed");
        tar
    })
}

/// Where the README's snippets have berth installed (`make install`).
pub const README_BERTH: &str = "/usr/local/sbin/berth";

/// The README snippet containing `marker` (see [`readme_block`]), with berth's installed path
/// replaced by the binary under test (see [`registered_berth`]).
pub fn readme_snippet(marker: &str) -> String {
    let block = readme_block(marker);
    assert!(
        block.contains(README_BERTH),
        "README.md's snippet with {marker:?} does not name {README_BERTH}:\n{block}"
    );
    let berth = registered_berth().to_str().expect("utf-8 berth path");
    block.replace(README_BERTH, berth)
}
