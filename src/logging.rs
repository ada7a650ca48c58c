//! runc-compatible logging: `--log FILE` (default stderr) in `text` or `json`
//! format. containerd shows users the last `"level":"error"` line of the JSON
//! log, so every failure of a command must end up there.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::{Mutex, OnceLock};
use std::time::SystemTime;

use anyhow::{Context, Result};
use clap::ValueEnum;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Debug,
    Warning,
    Error,
}

impl Level {
    fn name(self) -> &'static str {
        match self {
            Level::Debug => "debug",
            Level::Warning => "warning",
            Level::Error => "error",
        }
    }
}

struct Logger {
    /// `None` logs to stderr.
    file: Option<Mutex<File>>,
    format: LogFormat,
    min_level: Level,
}

static LOGGER: OnceLock<Logger> = OnceLock::new();

/// Sets up the process-wide logger from the global flags; call once, early.
pub fn init(path: Option<&Path>, format: LogFormat, debug: bool) -> Result<()> {
    let file = match path {
        Some(path) => Some(Mutex::new(
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("opening log file {}", path.display()))?,
        )),
        None => None,
    };
    let min_level = if debug { Level::Debug } else { Level::Warning };
    // A second init (there is none) would keep the first configuration.
    let _ = LOGGER.set(Logger {
        file,
        format,
        min_level,
    });
    Ok(())
}

pub fn log(level: Level, msg: &str) {
    let Some(logger) = LOGGER.get() else {
        eprintln!("{}: {msg}", level.name());
        return;
    };
    if level < logger.min_level {
        return;
    }
    let line = format_line(logger.format, level, msg, SystemTime::now());
    match &logger.file {
        Some(file) => {
            let mut file = file.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            // Nothing sensible remains to be done if the log itself fails.
            let _ = file.write_all(line.as_bytes());
        }
        None => eprint!("{line}"),
    }
}

/// True when log lines go to a file, so errors must also reach stderr.
pub fn logs_to_file() -> bool {
    LOGGER.get().is_some_and(|l| l.file.is_some())
}

fn format_line(format: LogFormat, level: Level, msg: &str, at: SystemTime) -> String {
    let time = humantime::format_rfc3339_seconds(at).to_string();
    match format {
        LogFormat::Json => {
            let entry = serde_json::json!({ "level": level.name(), "msg": msg, "time": time });
            format!("{entry}\n")
        }
        LogFormat::Text => format!(
            "time=\"{time}\" level={} msg={}\n",
            level.name(),
            serde_json::Value::from(msg)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn json_lines_carry_level_msg_and_rfc3339_time() {
        let at = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let line = format_line(LogFormat::Json, Level::Error, "no such \"thing\"", at);
        let entry: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(entry["level"], "error");
        assert_eq!(entry["msg"], "no such \"thing\"");
        assert_eq!(entry["time"], "2023-11-14T22:13:20Z");
        assert!(line.ends_with('\n'));
    }

    #[test]
    fn text_lines_quote_the_message() {
        let line = format_line(LogFormat::Text, Level::Warning, "a b", UNIX_EPOCH);
        assert_eq!(
            line,
            "time=\"1970-01-01T00:00:00Z\" level=warning msg=\"a b\"\n"
        );
    }
}
