//! Unprivileged users of the host, made for a test with useradd and removed with userdel.

use std::fs;
use std::process::{Command, ExitStatus};
use std::time::Duration;

/// An unprivileged user of the host, with /etc/subuid and /etc/subgid ranges (useradd gives
/// them when Debian's uidmap is installed); removed with everything of it on drop.
pub struct HostUser {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

impl HostUser {
    /// A new user, named after `id` (a test's unique container id or another unique word).
    pub fn new(id: &str) -> HostUser {
        // Names are at most 32 characters: keep the id's end, its pid and counter, which make
        // it unique on the host (ids are ASCII).
        let compact = id.replace('-', "");
        let name = format!("bt{}", &compact[compact.len().saturating_sub(30)..]);
        let added = retry_while_locked(|| {
            Command::new("useradd")
                .args([
                    "--no-create-home",
                    "--user-group",
                    "--shell",
                    "/usr/sbin/nologin",
                ])
                .arg(&name)
                .status()
                .expect("run useradd")
        });
        assert!(added, "useradd {name} failed");
        let id_of = |flag: &str| -> u32 {
            let out = Command::new("id")
                .args([flag, &name])
                .output()
                .expect("run id");
            String::from_utf8_lossy(&out.stdout)
                .trim()
                .parse()
                .expect("numeric id")
        };
        HostUser {
            uid: id_of("-u"),
            gid: id_of("-g"),
            name,
        }
    }

    /// The user's first range in /etc/subuid or /etc/subgid: (start, count).
    pub fn subordinate_range(&self, file: &str) -> (u32, u32) {
        let text = fs::read_to_string(file).expect("read the subordinate id file");
        let line = text
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{}:", self.name)))
            .unwrap_or_else(|| panic!("{file} has no range for {}", self.name));
        let (start, count) = line.split_once(':').expect("name:start:count");
        (start.parse().unwrap(), count.parse().unwrap())
    }
}

impl Drop for HostUser {
    fn drop(&mut self) {
        let removed = retry_while_locked(|| {
            Command::new("userdel")
                .arg(&self.name)
                .status()
                .expect("run userdel")
        });
        if !removed && !std::thread::panicking() {
            panic!("userdel {} failed", self.name);
        }
    }
}

/// useradd and userdel fail with 10 while another test holds the lock on /etc/passwd.
fn retry_while_locked(mut run: impl FnMut() -> ExitStatus) -> bool {
    for _ in 0..50 {
        match run().code() {
            Some(0) => return true,
            Some(10) => std::thread::sleep(Duration::from_millis(100)),
            _ => return false,
        }
    }
    false
}
