//! A signal as kill(2) takes it: a number. nix's `Signal` names only the classic signals; a
//! container is also sent 0 (is it alive?) and realtime signals (systemd stops on SIGRTMIN+3,
//! which `docker run --stop-signal` and `podman run --systemd` set).

use std::fmt;
use std::str::FromStr;

use anyhow::{Result, bail};
use nix::sys::signal::Signal;

/// Zero or a signal the kernel knows, 1..=SIGRTMAX.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SignalNumber(libc::c_int);

impl SignalNumber {
    pub const KILL: SignalNumber = SignalNumber(libc::SIGKILL);

    /// `None` outside 0..=SIGRTMAX.
    pub fn new(number: libc::c_int) -> Option<SignalNumber> {
        (0..=libc::SIGRTMAX())
            .contains(&number)
            .then_some(SignalNumber(number))
    }

    pub fn as_raw(self) -> libc::c_int {
        self.0
    }

    /// `n` past SIGRTMIN (with `+`) or before SIGRTMAX (with `-`), the C library's realtime
    /// range (the kernel's first two belong to its threads).
    fn realtime(base: libc::c_int, offset: libc::c_int) -> Option<SignalNumber> {
        let number = base.checked_add(offset)?;
        (libc::SIGRTMIN()..=libc::SIGRTMAX())
            .contains(&number)
            .then_some(SignalNumber(number))
    }
}

impl From<Signal> for SignalNumber {
    fn from(signal: Signal) -> SignalNumber {
        SignalNumber(signal as libc::c_int)
    }
}

/// runc's forms, `9`, `KILL`, `SIGKILL` in any case, and the realtime names of kill(1) and
/// Docker: `SIGRTMIN`, `RTMIN+3`, `SIGRTMAX-2` (runc 1.1 takes realtime signals by number only).
impl FromStr for SignalNumber {
    type Err = anyhow::Error;

    fn from_str(text: &str) -> Result<SignalNumber> {
        let parsed = match text.parse::<libc::c_int>() {
            Ok(number) => SignalNumber::new(number),
            Err(_) => from_name(&text.to_ascii_uppercase()),
        };
        match parsed {
            Some(signal) => Ok(signal),
            None => bail!("unknown signal {text:?}"),
        }
    }
}

fn from_name(upper: &str) -> Option<SignalNumber> {
    let name = upper.strip_prefix("SIG").unwrap_or(upper);
    let offset = |rest: &str, sign: char| match rest {
        "" => Some(0),
        _ => rest
            .strip_prefix(sign)?
            .parse::<u8>()
            .ok()
            .map(libc::c_int::from),
    };
    if let Some(rest) = name.strip_prefix("RTMIN") {
        return SignalNumber::realtime(libc::SIGRTMIN(), offset(rest, '+')?);
    }
    if let Some(rest) = name.strip_prefix("RTMAX") {
        return SignalNumber::realtime(libc::SIGRTMAX(), -offset(rest, '-')?);
    }
    Signal::from_str(&format!("SIG{name}")).ok().map(Into::into)
}

/// `SIGTERM`, `SIGRTMIN+3`, or the number for 0 and the threads' own two.
impl fmt::Display for SignalNumber {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let (min, max) = (libc::SIGRTMIN(), libc::SIGRTMAX());
        match Signal::try_from(self.0) {
            Ok(signal) => write!(f, "{signal}"),
            Err(_) if self.0 == max => write!(f, "SIGRTMAX"),
            Err(_) if (min..max).contains(&self.0) => write!(f, "SIGRTMIN+{}", self.0 - min),
            Err(_) => write!(f, "signal {}", self.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Option<libc::c_int> {
        text.parse::<SignalNumber>().ok().map(SignalNumber::as_raw)
    }

    #[test]
    fn classic_signals_parse_in_every_runc_form() {
        for text in ["9", "KILL", "kill", "SIGKILL", "sigkill", "SigKill"] {
            assert_eq!(parse(text), Some(libc::SIGKILL), "{text}");
        }
        assert_eq!(parse("15"), Some(libc::SIGTERM));
        assert_eq!(parse("usr1"), Some(libc::SIGUSR1));
    }

    #[test]
    fn zero_asks_whether_the_process_is_alive() {
        assert_eq!(parse("0"), Some(0));
    }

    #[test]
    fn realtime_signals_parse_by_number_and_by_name() {
        // glibc's SIGRTMIN is 34: SIGRTMIN+3, systemd's stop signal, is 37.
        for text in ["37", "SIGRTMIN+3", "RTMIN+3", "rtmin+3", "SIGRTMAX-27"] {
            assert_eq!(parse(text), Some(37), "{text}");
        }
        assert_eq!(parse("SIGRTMIN"), Some(34));
        assert_eq!(parse("RTMAX"), Some(64));
        assert_eq!(parse("SIGRTMAX-2"), Some(62));
        assert_eq!(parse("32"), Some(32));
        assert_eq!(parse("64"), Some(64));
    }

    #[test]
    fn anything_else_is_an_unknown_signal() {
        let refused = [
            "65", "-1", "", "SIGNOPE", "RTMIN+31", "RTMAX-31", "RTMIN-1", "RTMAX+1", "RTMIN+",
            "RTMIN3", "RTMIN+ 3", "RTMIN+-3",
        ];
        for text in refused {
            assert_eq!(parse(text), None, "{text:?}");
        }
        let error = "SIGNOPE".parse::<SignalNumber>().unwrap_err();
        assert_eq!(error.to_string(), "unknown signal \"SIGNOPE\"");
    }

    #[test]
    fn signals_are_named_as_kill_l_names_them() {
        let name = |number| SignalNumber::new(number).unwrap().to_string();
        assert_eq!(name(libc::SIGTERM), "SIGTERM");
        assert_eq!(name(37), "SIGRTMIN+3");
        assert_eq!(name(64), "SIGRTMAX");
        assert_eq!(name(0), "signal 0");
        assert_eq!(name(32), "signal 32");
    }
}
