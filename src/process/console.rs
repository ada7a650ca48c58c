//! `--console-socket`: runc's protocol. The pty is created inside the container (its devpts),
//! the master goes to the socket's owner with one sendmsg (payload: the pty name, SCM_RIGHTS:
//! exactly the master), the slave becomes the process's stdio and controlling terminal, and
//! like any stdio it is given to the process's user ([`give_stdio_to`]).

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use anyhow::{Context, Result, anyhow};
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::stat::{SFlag, fstat};
use nix::unistd::{Uid, fchown};
use oci_spec::runtime::Box as ConsoleSize;

use super::sys;

/// A pty pair opened from the container's /dev/ptmx.
#[derive(Debug)]
pub struct Pty {
    pub master: OwnedFd,
    slave: OwnedFd,
    /// The slave's path inside the container, e.g. `/dev/pts/0`.
    pub name: String,
}

/// Opens the container's /dev/ptmx, unlocks it, opens the slave through the master
/// (TIOCGPTPEER: no path lookup that could be raced) and applies `process.consoleSize`.
pub fn open_pty(size: Option<ConsoleSize>) -> Result<Pty> {
    let master = sys::open_in_root(Path::new("/dev/ptmx"), OFlag::O_RDWR | OFlag::O_NOCTTY)
        .map_err(|e| anyhow!("open /dev/ptmx: {}", e.desc()))?;
    let unlock = 0;
    sys::ioctl_write_int(master.as_fd(), libc::TIOCSPTLCK, unlock)
        .map_err(|e| anyhow!("/dev/ptmx: unlockpt: {}", e.desc()))?;
    let number = sys::ioctl_read_int(master.as_fd(), libc::TIOCGPTN)
        .map_err(|e| anyhow!("/dev/ptmx: TIOCGPTN: {}", e.desc()))?;
    let slave_flags = libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC;
    let slave = sys::ioctl_int(master.as_fd(), libc::TIOCGPTPEER, slave_flags)
        .map(sys::own_fd)
        .map_err(|e| anyhow!("/dev/ptmx: open the pty slave (TIOCGPTPEER): {}", e.desc()))?;
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
        slave,
        name: format!("/dev/pts/{number}"),
    })
}

/// Terminal sizes are 16-bit; a bigger configured value means "as large as possible".
fn clamp(value: u64) -> u16 {
    u16::try_from(value).unwrap_or(u16::MAX)
}

/// Opens the container's pty and sends its master to the console socket; the caller then
/// attaches the slave (after binding it at /dev/console, for the init).
pub fn open_and_send(socket: BorrowedFd, size: Option<ConsoleSize>) -> Result<Pty> {
    let pty = open_pty(size)?;
    send_master(socket, &pty)?;
    Ok(pty)
}

/// Sends the master over the connected console socket (one sendmsg, no reply expected).
pub fn send_master(socket: BorrowedFd, pty: &Pty) -> Result<()> {
    crate::sys::send_fd(socket, pty.name.as_bytes(), pty.master.as_fd())
        .context("console socket: sendmsg")
}

/// In the process to be: a new session with the slave as controlling terminal and stdio. The
/// master is closed here; the receiver of the console socket holds its copy.
pub fn attach_slave(pty: Pty) -> Result<()> {
    nix::unistd::setsid().context("setsid")?;
    sys::ioctl_int(pty.slave.as_fd(), libc::TIOCSCTTY, 0)
        .map_err(|e| anyhow!("{}: TIOCSCTTY: {}", pty.name, e.desc()))?;
    let dups = [
        ("stdin", nix::unistd::dup2_stdin(&pty.slave)),
        ("stdout", nix::unistd::dup2_stdout(&pty.slave)),
        ("stderr", nix::unistd::dup2_stderr(&pty.slave)),
    ];
    for (stream, result) in dups {
        result.map_err(|e| anyhow!("{}: dup2 onto {stream}: {}", pty.name, e.desc()))?;
    }
    drop(pty.master);
    Ok(())
}

/// Gives the process's stdio to its user before berth switches to that user, as runc does: the
/// pty slave (which root opened; its group is devpts's `gid=` option, tty in every usual
/// config, and stays) or whatever the caller passed, so that the process owns its terminal and
/// may reopen `/dev/stdout`, `/dev/tty` and the like. Only the owner changes. /dev/null is left
/// alone, and so are files the user namespace may not chown (EPERM) or that sit on a read-only
/// filesystem (EROFS).
pub fn give_stdio_to(uid: u32) -> Result<()> {
    let (stdin, stdout, stderr) = (std::io::stdin(), std::io::stdout(), std::io::stderr());
    let streams = [
        ("stdin", stdin.as_fd()),
        ("stdout", stdout.as_fd()),
        ("stderr", stderr.as_fd()),
    ];
    for (name, fd) in streams {
        let st = match fstat(fd) {
            Ok(st) => st,
            // A closed stdio stream has no owner to change.
            Err(Errno::EBADF) => continue,
            Err(e) => return Err(e).with_context(|| format!("fstat {name}")),
        };
        if st.st_uid == uid || is_dev_null(&st) {
            continue;
        }
        match fchown(fd, Some(Uid::from_raw(uid)), None) {
            Ok(()) | Err(Errno::EPERM | Errno::EROFS) => {}
            Err(e) => return Err(e).with_context(|| format!("chown {name} to uid {uid}")),
        }
    }
    Ok(())
}

fn is_dev_null(st: &nix::sys::stat::FileStat) -> bool {
    let is_char = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFCHR;
    is_char && st.st_rdev == nix::sys::stat::makedev(1, 3)
}
