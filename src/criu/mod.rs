//! CRIU (checkpoint/restore in userspace), driven as runc drives it: `criu swrk` gets one end of
//! a SOCK_SEQPACKET socketpair and serves one RPC request (see [`rpc`]), one message per packet,
//! pausing at each notification (`notify_scripts`) until the caller answers it.
//!
//! What berth asks for (dump, pre-dump, restore) and how it maps a container onto CRIU's options
//! lives in `container::{checkpoint, restore}`; this module only speaks the protocol.

mod options;
mod rpc;

use std::fs;
use std::io::{BufRead, BufReader};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use anyhow::{Context, Result, bail};
use nix::fcntl::{FcntlArg, FdFlag, fcntl};
use nix::sys::socket::{AddressFamily, MsgFlags, Shutdown, SockFlag, SockType, send, shutdown};
use nix::unistd::Pid;
use prost::Message;

pub use options::CriuOptions;
pub use rpc::*;

use crate::sys;

/// Versions as CRIU numbers them in its RPC answer: major * 10000 + minor * 100 + sublevel.
pub const MIN_VERSION: i32 = 30000;

/// A CRIU installation that answered, and its version.
pub struct Criu {
    pub version: i32,
}

impl Criu {
    /// Finds `criu` in PATH and asks its version (the RPC call exists since CRIU 3.0, which
    /// berth requires, as runc does).
    pub fn find() -> Result<Criu> {
        let request = Req {
            r#type: ReqType::Version as i32,
            ..Default::default()
        };
        let answer = Session::start()?.run(&request, |_| Ok(()))?;
        let version = answer
            .version
            .context("criu answered the VERSION request without a version")?;
        let version = version.major_number * 10000
            + version.minor_number * 100
            + version.sublevel.unwrap_or(0);
        if version < MIN_VERSION {
            bail!("CRIU version {version} must be {MIN_VERSION} or higher");
        }
        Ok(Criu { version })
    }

    /// Fails naming every feature of `wanted` (those set to true) this CRIU and kernel lack.
    pub fn require(&self, wanted: Features) -> Result<()> {
        let request = Req {
            r#type: ReqType::FeatureCheck as i32,
            features: Some(wanted.clone()),
            ..Default::default()
        };
        let answer = Session::start()?.run(&request, |_| Ok(()))?;
        let have = answer.features.unwrap_or_default();
        let mut missing = Vec::new();
        if wanted.mem_track == Some(true) && have.mem_track != Some(true) {
            missing.push("memory tracking (needed by --pre-dump and --parent-path)");
        }
        if wanted.lazy_pages == Some(true) && have.lazy_pages != Some(true) {
            missing.push("lazy pages (userfaultfd, needed by --lazy-pages)");
        }
        if !missing.is_empty() {
            bail!(
                "criu is missing features on this host: {}",
                missing.join(", ")
            );
        }
        Ok(())
    }
}

/// A notification CRIU sends while it works (`criu_notify`), with the fd some carry.
pub struct Notification {
    pub script: String,
    pub pid: Option<i32>,
    pub fd: Option<OwnedFd>,
}

/// One `criu swrk` process and our end of its socket. Dropping it closes the socket, which ends
/// CRIU's work, and reaps CRIU.
pub struct Session {
    socket: OwnedFd,
    criu: Child,
}

impl Session {
    /// Starts `criu swrk` for a dump or a query, its stdio /dev/null: it writes what matters to
    /// its log, and after a pre-dump it complains on stderr when the socket closes.
    pub fn start() -> Result<Session> {
        Self::spawn(&[], false)
    }

    /// Starts `criu swrk` for a restore, with our stdio and `inherited` open in it under their
    /// own numbers: what `inherit_fd` entries hand to the restored processes.
    pub fn start_restore(inherited: &[BorrowedFd]) -> Result<Session> {
        Self::spawn(inherited, true)
    }

    /// Every fd of ours but `inherited` and criu's end of the socketpair is close-on-exec.
    fn spawn(inherited: &[BorrowedFd], with_our_stdio: bool) -> Result<Session> {
        let (ours, theirs) = nix::sys::socket::socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .context("socketpair for criu")?;
        for fd in inherited.iter().copied().chain([theirs.as_fd()]) {
            fcntl(fd, FcntlArg::F_SETFD(FdFlag::empty()))
                .context("passing an fd to criu (F_SETFD)")?;
        }
        let mut command = Command::new("criu");
        command.arg("swrk").arg(theirs.as_raw_fd().to_string());
        if !with_our_stdio {
            command
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
        }
        let criu = command.spawn();
        let criu = match criu {
            Ok(criu) => criu,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
                "criu not found in PATH: checkpoint and restore need CRIU (Debian: apt-get install \
                 criu)"
            ),
            Err(e) => return Err(e).context("starting criu swrk"),
        };
        // Only criu holds its end now: if it dies, our reads see EOF instead of hanging.
        drop(theirs);
        Ok(Session { socket: ours, criu })
    }

    pub fn pid(&self) -> Pid {
        Pid::from_raw(self.criu.id() as i32)
    }

    /// Sends `request`, answers each notification after `on_notify` handled it, and returns
    /// CRIU's final answer once CRIU has exited.
    pub fn run(
        mut self,
        request: &Req,
        mut on_notify: impl FnMut(Notification) -> Result<()>,
    ) -> Result<Resp> {
        let kind = request.r#type();
        self.send(request)?;
        loop {
            let (answer, fd) = self.receive(kind)?;
            if !answer.success {
                bail!("{}", failure(kind, &answer));
            }
            if answer.r#type() == ReqType::Notify {
                let notify = answer.notify.unwrap_or_default();
                on_notify(Notification {
                    script: notify.script.unwrap_or_default(),
                    pid: notify.pid,
                    fd,
                })?;
                self.send(&Req {
                    r#type: ReqType::Notify as i32,
                    notify_success: Some(true),
                    ..Default::default()
                })?;
                continue;
            }
            if answer.r#type != request.r#type {
                bail!(
                    "criu answered a {:?} request with {:?}",
                    kind,
                    answer.r#type()
                );
            }
            self.finish(kind)?;
            return Ok(answer);
        }
    }

    fn send(&self, request: &Req) -> Result<()> {
        send(
            self.socket.as_raw_fd(),
            &request.encode_to_vec(),
            MsgFlags::MSG_NOSIGNAL,
        )
        .context("sending a request to criu")?;
        Ok(())
    }

    fn receive(&self, kind: ReqType) -> Result<(Resp, Option<OwnedFd>)> {
        let (payload, fd) = sys::receive_fd(self.socket.as_fd())
            .with_context(|| format!("reading criu's answer to {kind:?}"))?;
        if payload.is_empty() {
            bail!("criu exited without answering the {kind:?} request");
        }
        let answer = Resp::decode(payload.as_slice())
            .with_context(|| format!("decoding criu's answer to {kind:?}"))?;
        Ok((answer, fd))
    }

    /// Closes the socket and waits for CRIU. After a pre-dump CRIU waits for a next request
    /// that never comes and exits non-zero when the socket closes (runc ignores that too).
    fn finish(&mut self, kind: ReqType) -> Result<()> {
        let _ = shutdown(self.socket.as_raw_fd(), Shutdown::Both);
        let status = self.criu.wait().context("waiting for criu")?;
        if !status.success() && kind != ReqType::PreDump {
            bail!("criu {kind:?} answered success but exited with {status}");
        }
        Ok(())
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = shutdown(self.socket.as_raw_fd(), Shutdown::Both);
        let _ = self.criu.wait();
    }
}

fn failure(kind: ReqType, answer: &Resp) -> String {
    let mut message = format!("criu failed: type {kind:?}");
    if let Some(errno) = answer.cr_errno.filter(|&e| e != 0) {
        message += &format!(": {}", nix::errno::Errno::from_raw(errno).desc());
    }
    if let Some(text) = answer.cr_errmsg.as_deref().filter(|t| !t.is_empty()) {
        message += &format!(": {text}");
    }
    message
}

/// `err` with where CRIU's log is and what it says went wrong.
pub fn with_log(err: anyhow::Error, log: &Path) -> anyhow::Error {
    let mut message = format!("{err:#} (log: {})", log.display());
    let quoted = log_errors(log);
    if !quoted.is_empty() {
        message = format!("{message}:\n{quoted}");
    }
    anyhow::anyhow!(message)
}

/// The lines of a CRIU log that say what failed (those with `Error`, each after the line before
/// it), for an error message; empty when the log cannot be read.
fn log_errors(log: &Path) -> String {
    let Ok(file) = fs::File::open(log) else {
        return String::new();
    };
    let mut previous = String::new();
    let mut quoted = Vec::new();
    for line in BufReader::new(file).lines().map_while(Result::ok) {
        if line.contains("Error") {
            if !previous.is_empty() {
                quoted.push(std::mem::take(&mut previous));
            }
            quoted.push(line);
        } else {
            previous = line;
        }
    }
    // The last errors are the ones that ended the run.
    let skip = quoted.len().saturating_sub(8);
    quoted[skip..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_errors_quotes_each_error_after_its_context() {
        let dir = std::env::temp_dir().join(format!("berth-criu-log-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let log = dir.join("dump.log");
        fs::write(
            &log,
            "(00.1) start\n(00.2) Dumping task 5\n(00.3) Error (criu/files.c:1): bad fd\n\
             (00.4) Unfreezing\n(00.5) Error (criu/cr-dump.c:2): Dumping FAILED.\n",
        )
        .unwrap();
        assert_eq!(
            log_errors(&log),
            "(00.2) Dumping task 5\n(00.3) Error (criu/files.c:1): bad fd\n\
             (00.4) Unfreezing\n(00.5) Error (criu/cr-dump.c:2): Dumping FAILED."
        );
        assert_eq!(log_errors(&dir.join("missing.log")), "");
        fs::remove_dir_all(&dir).unwrap();
    }
}
