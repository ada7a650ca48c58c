//! The start trace: with `--debug`, berth logs every phase of the command it ran — and of the
//! container's init and of an exec'd process, which send theirs back — with when it began and
//! how long it took, as one timeline once the command is done.
//!
//! Off (the default) a phase costs one relaxed atomic load: no clock is read, nothing is
//! allocated, and no process sends anything more than it would.
//!
//! The init records its phases in its own copy of the timeline and sends them to `create` with
//! `Ready` and to `start` on the start connection; an exec'd process sends its phases before it
//! loads its seccomp filter. Nothing else crosses: no fd is opened for the trace.
//!
//! Times are CLOCK_REALTIME, read through the vDSO: unlike the monotonic clocks no time
//! namespace offsets it, so an init that joins one still shares the parent's timeline. A read
//! that fails (a seccomp filter that denies clock_gettime on a host without the vDSO clock)
//! drops the phase rather than failing the container.

use std::borrow::Cow;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use nix::time::{ClockId, clock_gettime};
use serde::{Deserialize, Serialize};

use crate::logging::{self, Level};

/// Nanoseconds since the epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Instant(u64);

impl Instant {
    /// `None` when the clock cannot be read.
    pub fn now() -> Option<Instant> {
        let time = clock_gettime(ClockId::CLOCK_REALTIME).ok()?;
        let nanos = time.tv_sec() as u64 * 1_000_000_000 + time.tv_nsec() as u64;
        Some(Instant(nanos))
    }

    fn millis_since(self, earlier: Instant) -> f64 {
        self.0.saturating_sub(earlier.0) as f64 / 1e6
    }
}

/// One finished phase.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// Which process ran it: the command (`create`, `run` …), `init` or `exec`.
    pub process: Cow<'static, str>,
    pub what: Cow<'static, str>,
    /// How many phases of the same process it is nested in.
    pub depth: u32,
    pub start: Instant,
    pub end: Instant,
}

struct Timeline {
    process: &'static str,
    /// Where the timeline starts: when the command's `main` began.
    origin: Option<Instant>,
    depth: u32,
    records: Vec<Record>,
}

impl Timeline {
    fn push(&mut self, what: Cow<'static, str>, depth: u32, start: Instant, end: Instant) {
        let process = Cow::Borrowed(self.process);
        self.records.push(Record {
            process,
            what,
            depth,
            start,
            end,
        });
    }
}

static ENABLED: AtomicBool = AtomicBool::new(false);
static TIMELINE: Mutex<Timeline> = Mutex::new(Timeline {
    process: "",
    origin: None,
    depth: 0,
    records: Vec::new(),
});

fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

fn timeline() -> std::sync::MutexGuard<'static, Timeline> {
    // berth is single-threaded; a poisoned lock would only mean a panic, which aborts.
    TIMELINE
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Turns the trace on for this process (`command` names it in the timeline), which began at
/// `origin`.
pub fn enable(command: &'static str, origin: Option<Instant>) {
    let mut timeline = timeline();
    timeline.process = command;
    timeline.origin = origin;
    ENABLED.store(true, Ordering::Relaxed);
}

/// In a freshly cloned child: forget the parent's phases (the parent reports those) and name
/// the child's own.
pub fn in_child(process: &'static str) {
    if !enabled() {
        return;
    }
    let mut timeline = timeline();
    timeline.process = process;
    timeline.depth = 0;
    timeline.records.clear();
}

/// A phase, recorded when the returned guard is dropped (an error path included).
pub fn span(what: &'static str) -> Span {
    Span::open(|| Cow::Borrowed(what))
}

/// Like [`span`] for a name that must be formatted: `what` runs only when the trace is on.
pub fn span_with(what: impl FnOnce() -> String) -> Span {
    Span::open(|| Cow::Owned(what()))
}

/// Records the phase `what` that began at `start` and ends now.
pub fn record_since(what: &'static str, start: Option<Instant>) {
    if !enabled() {
        return;
    }
    let (Some(start), Some(end)) = (start, Instant::now()) else {
        return;
    };
    let mut timeline = timeline();
    let depth = timeline.depth;
    timeline.push(Cow::Borrowed(what), depth, start, end);
}

/// Runs `f` as the phase `what`.
pub fn timed<T>(what: &'static str, f: impl FnOnce() -> T) -> T {
    let _span = span(what);
    f()
}

#[must_use = "the phase ends when the guard is dropped"]
pub struct Span(Option<OpenSpan>);

struct OpenSpan {
    what: Cow<'static, str>,
    depth: u32,
    start: Instant,
}

impl Span {
    fn open(what: impl FnOnce() -> Cow<'static, str>) -> Span {
        if !enabled() {
            return Span(None);
        }
        let Some(start) = Instant::now() else {
            return Span(None);
        };
        let mut timeline = timeline();
        let depth = timeline.depth;
        timeline.depth += 1;
        Span(Some(OpenSpan {
            what: what(),
            depth,
            start,
        }))
    }
}

impl Drop for Span {
    fn drop(&mut self) {
        let Some(open) = self.0.take() else { return };
        let end = Instant::now();
        let mut timeline = timeline();
        timeline.depth = open.depth;
        if let Some(end) = end {
            timeline.push(open.what, open.depth, open.start, end);
        }
    }
}

/// This process's phases so far, for its parent; `None` when the trace is off.
pub fn take() -> Option<Vec<Record>> {
    enabled().then(|| std::mem::take(&mut timeline().records))
}

/// Adds a child's phases to this process's timeline.
pub fn absorb(records: Vec<Record>) {
    if enabled() {
        timeline().records.extend(records);
    }
}

/// Logs the timeline (debug level), one line per phase in the order they began.
pub fn report() {
    if !enabled() {
        return;
    }
    let mut timeline = timeline();
    let mut records = std::mem::take(&mut timeline.records);
    records.sort_by_key(|record| (record.start, record.depth));
    let Some(origin) = timeline.origin.or(records.first().map(|r| r.start)) else {
        return;
    };
    drop(timeline);
    for record in &records {
        logging::log(Level::Debug, &format_record(record, origin));
    }
}

fn format_record(record: &Record, origin: Instant) -> String {
    format!(
        "trace {:>9.3} ms {:>8.3} ms  {:<7}{:indent$}{}",
        record.start.millis_since(origin),
        record.end.millis_since(record.start),
        record.process,
        "",
        record.what,
        indent = 2 * record.depth as usize,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_shows_offset_duration_process_and_nesting() {
        let record = Record {
            process: "init".into(),
            what: "mount /proc".into(),
            depth: 1,
            start: Instant(1_002_500_000),
            end: Instant(1_003_000_000),
        };
        assert_eq!(
            format_record(&record, Instant(1_000_000_000)),
            "trace     2.500 ms    0.500 ms  init     mount /proc"
        );
    }
}
