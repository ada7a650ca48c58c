//! `linux.seccomp`: compile the config into a BPF program with libseccomp and load it with
//! seccomp(2), plus runc's seccomp-notify hand-off and the `features` report.
//!
//! The filter is loaded with the raw syscall rather than `seccomp_load()` so that every
//! kernel filter flag is available whatever the libseccomp version (Debian 12 ships 2.5.4,
//! which knows no WAIT_KILLABLE_RECV), and so the notify fd comes straight back from the
//! kernel (SECCOMP_FILTER_FLAG_NEW_LISTENER) as runc does.
//!
//! A `Filter` is plain memory: compile it (or take it from the on-disk cache with
//! `compile_cached`) in the runtime before cloning the init, so config errors surface before
//! any namespace work, and load it in the init just before it execs.

mod cache;
mod compile;
mod enosys;
mod features;
mod notify;
mod stages;
mod sys;

pub use cache::compile_cached;
pub use compile::Filter;
#[cfg(test)]
use compile::compile;
pub use features::features;
pub use notify::send_notify_fd;
pub use stages::{PendingFilter, forward_notify_fd};

#[cfg(test)]
mod tests;
