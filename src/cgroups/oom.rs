//! OOM notifications for `events`: a descriptor the caller polls (next to its stats interval)
//! that becomes readable when the container hits its memory limit. v1 registers an eventfd
//! through cgroup.event_control; v2 watches memory.events with inotify, as runc does.

use std::io::ErrorKind;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::fs;

pub struct OomWatch {
    fd: OwnedFd,
    kind: Kind,
}

enum Kind {
    /// memory.oom_control stays open: the kernel ties the registration to it.
    V1 {
        dir: PathBuf,
        _oom_control: OwnedFd,
    },
    V2 {
        dir: PathBuf,
        oom_kills: u64,
    },
}

impl AsFd for OomWatch {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

fn check(ret: libc::c_int, what: &str) -> Result<libc::c_int> {
    if ret < 0 {
        return Err(std::io::Error::last_os_error()).with_context(|| what.to_string());
    }
    Ok(ret)
}

fn owned(fd: libc::c_int) -> OwnedFd {
    // SAFETY: fd was just returned by a successful syscall and is owned by nobody else.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

impl OomWatch {
    pub fn v1(dir: &Path) -> Result<OomWatch> {
        // SAFETY: eventfd takes no pointers.
        let efd = owned(check(
            unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) },
            "eventfd",
        )?);
        let control: OwnedFd = std::fs::File::open(dir.join("memory.oom_control"))
            .with_context(|| format!("opening {}/memory.oom_control", dir.display()))?
            .into();
        let registration = format!("{} {}", efd.as_raw_fd(), control.as_raw_fd());
        fs::write(dir, "cgroup.event_control", &registration)?;
        Ok(OomWatch {
            fd: efd,
            kind: Kind::V1 {
                dir: dir.to_path_buf(),
                _oom_control: control,
            },
        })
    }

    pub fn v2(dir: &Path) -> Result<OomWatch> {
        // SAFETY: inotify_init1 takes no pointers.
        let ifd = owned(check(
            unsafe { libc::inotify_init1(libc::IN_CLOEXEC | libc::IN_NONBLOCK) },
            "inotify_init1",
        )?);
        let events = dir.join("memory.events");
        let path = std::ffi::CString::new(events.as_os_str().as_encoded_bytes())
            .context("memory.events path contains a NUL byte")?;
        // SAFETY: path is a valid NUL-terminated string that outlives the call.
        let watch =
            unsafe { libc::inotify_add_watch(ifd.as_raw_fd(), path.as_ptr(), libc::IN_MODIFY) };
        check(watch, &format!("inotify_add_watch {}", events.display()))?;
        Ok(OomWatch {
            fd: ifd,
            kind: Kind::V2 {
                dir: dir.to_path_buf(),
                oom_kills: super::v2::oom_kills(dir)?,
            },
        })
    }

    /// Call when the descriptor is readable. Returns the number of new OOM events (0 after a
    /// wakeup for something else), or None once the cgroup is gone and watching should stop.
    pub fn read(&mut self) -> Result<Option<u64>> {
        let mut buf = [0u8; 4096];
        let drained = loop {
            // SAFETY: buf is a writable buffer of the given length for the duration of the call.
            let n = unsafe { libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if n >= 0 {
                break Ok(n as usize);
            }
            let err = std::io::Error::last_os_error();
            match err.kind() {
                ErrorKind::Interrupted => continue,
                ErrorKind::WouldBlock => break Ok(0),
                _ => break Err(err),
            }
        };
        let drained = drained.context("reading the OOM notification descriptor")?;
        match &mut self.kind {
            // The kernel also signals the eventfd when the cgroup is removed.
            Kind::V1 { dir, .. } if !dir.exists() => Ok(None),
            Kind::V1 { .. } if drained >= 8 => Ok(Some(u64::from_ne_bytes(
                buf[..8].try_into().context("short eventfd read")?,
            ))),
            Kind::V1 { .. } => Ok(Some(0)),
            Kind::V2 { dir, .. } if !dir.exists() => Ok(None),
            Kind::V2 { dir, oom_kills } => {
                let now = super::v2::oom_kills(dir)?;
                let new = now.saturating_sub(*oom_kills);
                *oom_kills = now;
                Ok(Some(new))
            }
        }
    }
}
