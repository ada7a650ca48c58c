//! `--console-socket`: runc's protocol. The pty is created inside the container (its devpts),
//! the master goes to the socket's owner with one sendmsg (payload: the pty name, SCM_RIGHTS:
//! exactly the master), the slave becomes the process's stdio and controlling terminal.

use std::io::IoSlice;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::Path;

use anyhow::{Context, Result, anyhow, ensure};
use nix::fcntl::OFlag;
use nix::sys::socket::{ControlMessage, MsgFlags, sendmsg};
use nix::sys::stat::{SFlag, fstat};
use nix::sys::statfs::{DEVPTS_SUPER_MAGIC, fstatfs};
use oci_spec::runtime::Box as ConsoleSize;

use super::sys;

/// A pty master opened from the container's /dev/ptmx.
#[derive(Debug)]
pub struct Pty {
    pub master: OwnedFd,
    /// The slave's path inside the container, e.g. `/dev/pts/0`.
    pub slave: String,
}

/// Opens the container's /dev/ptmx, unlocks the new pty and applies `process.consoleSize`.
pub fn open_pty(size: Option<&ConsoleSize>) -> Result<Pty> {
    let master = sys::open_in_root(Path::new("/dev/ptmx"), OFlag::O_RDWR | OFlag::O_NOCTTY)
        .map_err(|e| anyhow!("open /dev/ptmx: {}", e.desc()))?;
    let unlock = 0;
    sys::ioctl_write_int(master.as_fd(), libc::TIOCSPTLCK, unlock)
        .map_err(|e| anyhow!("/dev/ptmx: unlockpt: {}", e.desc()))?;
    let number = sys::ioctl_read_int(master.as_fd(), libc::TIOCGPTN)
        .map_err(|e| anyhow!("/dev/ptmx: TIOCGPTN: {}", e.desc()))?;
    if let Some(size) = size {
        let winsize = libc::winsize {
            ws_row: clamp(size.height()),
            ws_col: clamp(size.width()),
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        sys::set_window_size(master.as_fd(), &winsize)
            .map_err(|e| anyhow!("process.consoleSize: TIOCSWINSZ: {}", e.desc()))?;
    }
    Ok(Pty {
        master,
        slave: format!("/dev/pts/{number}"),
    })
}

/// Terminal sizes are 16-bit; a bigger configured value means "as large as possible".
fn clamp(value: u64) -> u16 {
    u16::try_from(value).unwrap_or(u16::MAX)
}

/// Sends the master over the connected console socket (one sendmsg, no reply expected).
pub fn send_master(socket: BorrowedFd, pty: &Pty) -> Result<()> {
    let fds = [pty.master.as_raw_fd()];
    let payload = [IoSlice::new(pty.slave.as_bytes())];
    let sent = sendmsg::<()>(
        socket.as_raw_fd(),
        &payload,
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::MSG_NOSIGNAL,
        None,
    )
    .context("console socket: sendmsg")?;
    ensure!(
        sent == pty.slave.len(),
        "console socket: sendmsg sent {sent} of {} bytes",
        pty.slave.len()
    );
    Ok(())
}

/// In the process to be: a new session with the slave as controlling terminal and stdio. The
/// slave is opened inside the container root and must be a pty slave.
pub fn attach_slave(slave: &Path) -> Result<()> {
    nix::unistd::setsid().context("setsid")?;
    let tty = open_slave(slave)?;
    sys::ioctl_int(tty.as_fd(), libc::TIOCSCTTY, 0)
        .map_err(|e| anyhow!("{}: TIOCSCTTY: {}", slave.display(), e.desc()))?;
    let dups = [
        ("stdin", nix::unistd::dup2_stdin(&tty)),
        ("stdout", nix::unistd::dup2_stdout(&tty)),
        ("stderr", nix::unistd::dup2_stderr(&tty)),
    ];
    for (stream, result) in dups {
        result.map_err(|e| anyhow!("{}: dup2 onto {stream}: {}", slave.display(), e.desc()))?;
    }
    Ok(())
}

fn open_slave(slave: &Path) -> Result<OwnedFd> {
    let tty = sys::open_in_root(slave, OFlag::O_RDWR | OFlag::O_NOCTTY)
        .map_err(|e| anyhow!("open {}: {}", slave.display(), e.desc()))?;
    let stat = fstat(&tty).with_context(|| format!("fstat {}", slave.display()))?;
    let is_char_device = stat.st_mode & SFlag::S_IFMT.bits() == SFlag::S_IFCHR.bits();
    let on_devpts = fstatfs(&tty).is_ok_and(|fs| fs.filesystem_type() == DEVPTS_SUPER_MAGIC);
    ensure!(
        is_char_device && on_devpts,
        "{} is not a pty slave",
        slave.display()
    );
    Ok(tty)
}
