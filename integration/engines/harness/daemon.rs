//! A daemon this test process started (containerd, dockerd): its output goes to a log file,
//! it is stopped by its PID and nothing else.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::common;

/// How long a daemon may take to come up, and to go down after SIGTERM.
const DAEMON_TIMEOUT: Duration = Duration::from_secs(60);

pub struct Daemon {
    name: String,
    child: Mutex<Child>,
    pid: Pid,
    log: PathBuf,
}

impl Daemon {
    /// Starts `command` (stdin /dev/null, stdout and stderr to `log`) and waits until `ready`
    /// says it serves; panics with the log's end if it exits or times out first.
    #[track_caller]
    pub fn start(name: &str, mut command: Command, log: &Path, ready: impl Fn() -> bool) -> Self {
        let log_file =
            File::create(log).unwrap_or_else(|e| panic!("create {}: {e}", log.display()));
        command
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("dup the log fd"))
            .stderr(log_file);
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        let daemon = Daemon {
            name: name.to_string(),
            pid: Pid::from_raw(child.id() as i32),
            child: Mutex::new(child),
            log: log.to_path_buf(),
        };
        let deadline = Instant::now() + DAEMON_TIMEOUT;
        while !ready() {
            if let Some(status) = daemon.lock().try_wait().expect("waitpid") {
                panic!(
                    "{name} exited ({status}) before it served:\n{}",
                    daemon.log_tail()
                );
            }
            if Instant::now() >= deadline {
                daemon.stop();
                panic!(
                    "{name} did not serve within {DAEMON_TIMEOUT:?}:\n{}",
                    daemon.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        daemon
    }

    pub fn pid(&self) -> Pid {
        self.pid
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Child> {
        self.child.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The last lines of its log, for failure messages.
    pub fn log_tail(&self) -> String {
        let log = fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        let start = lines.len().saturating_sub(30);
        format!(
            "--- {} ({}):\n{}",
            self.name,
            self.log.display(),
            lines[start..].join("\n")
        )
    }

    /// SIGTERM to its PID, up to [`DAEMON_TIMEOUT`] to exit, then SIGKILL; reaps it. Returns a
    /// note if it had to be killed. Idempotent.
    pub fn stop(&self) -> Option<String> {
        let mut child = self.lock();
        if child.try_wait().expect("waitpid").is_some() {
            return None;
        }
        let _ = kill(self.pid, Signal::SIGTERM);
        if common::wait_timeout(&mut child, DAEMON_TIMEOUT).is_some() {
            return None;
        }
        let _ = child.kill();
        let _ = child.wait();
        Some(format!(
            "{} (pid {}) ignored SIGTERM for {DAEMON_TIMEOUT:?} and was killed",
            self.name, self.pid
        ))
    }
}

/// A daemon is never left running: not when its fixture panics half-way either.
impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
    }
}
