//! Read-only commands: `state`, `list`, `ps`. They take no lock: state.json
//! is only ever replaced atomically.

use std::io::Write;
use std::process::Command;

use anyhow::{Context, Result, bail};

use super::NotFound;
use super::state::{ConfigSummary, State, StateRoot};
use crate::cli::OutputFormat;

/// The state without the config's body: these commands only report.
fn load(root: &StateRoot, id: &str) -> Result<(State<ConfigSummary>, std::path::PathBuf)> {
    let dir = root.container_dir(id)?;
    if !dir.exists() {
        return Err(NotFound(id.to_string()).into());
    }
    Ok((State::load_summary(&dir)?, dir))
}

pub fn state(root: &StateRoot, id: &str) -> Result<()> {
    let (state, dir) = load(root, id)?;
    let json = state.to_oci_json(state.status(&dir));
    writeln!(
        std::io::stdout(),
        "{}",
        serde_json::to_string_pretty(&json)?
    )?;
    Ok(())
}

pub fn list(root: &StateRoot, format: OutputFormat, quiet: bool) -> Result<()> {
    let mut entries = Vec::new();
    for id in root.ids()? {
        // A directory without a readable state is a create in progress or a
        // leftover; runc skips those too.
        if let Ok((state, dir)) = load(root, &id) {
            entries.push(state.to_oci_json(state.status(&dir)));
        }
    }
    let mut out = std::io::stdout().lock();
    if quiet {
        for entry in &entries {
            writeln!(out, "{}", entry["id"].as_str().unwrap_or_default())?;
        }
        return Ok(());
    }
    match format {
        OutputFormat::Json => writeln!(out, "{}", serde_json::to_string(&entries)?)?,
        OutputFormat::Table => {
            let header = ["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"];
            let rows = entries.iter().map(|e| {
                ["id", "pid", "status", "bundle", "created", "owner"].map(|key| match &e[key] {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
            });
            write_table(&mut out, header.map(String::from), rows)?;
        }
    }
    Ok(())
}

/// Columns padded like runc's tabwriter: at least 12 wide, one space apart.
fn write_table(
    out: &mut impl Write,
    header: [String; 6],
    rows: impl Iterator<Item = [String; 6]>,
) -> Result<()> {
    let rows: Vec<[String; 6]> = std::iter::once(header).chain(rows).collect();
    let widths: Vec<usize> = (0..6)
        .map(|col| {
            rows.iter()
                .map(|r| r[col].len() + 1)
                .max()
                .unwrap_or(0)
                .max(12)
        })
        .collect();
    for row in &rows {
        let line: String = row
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(col, (cell, width))| {
                if col == 5 {
                    cell.clone()
                } else {
                    format!("{cell:width$}")
                }
            })
            .collect();
        writeln!(out, "{}", line.trim_end())?;
    }
    Ok(())
}

/// Any status, as runc: a stopped container lists what its cgroup still holds, usually nothing.
pub fn ps(root: &StateRoot, id: &str, format: OutputFormat, ps_args: &[String]) -> Result<()> {
    let (state, _) = load(root, id)?;
    let pids = container_pids(&state)?;
    match format {
        OutputFormat::Json => writeln!(std::io::stdout(), "{}", pids_json(&pids)?)?,
        OutputFormat::Table => print_ps_table(&pids, ps_args)?,
    }
    Ok(())
}

/// The pids as JSON, as runc prints them: `null` for none (Go's nil slice).
fn pids_json(pids: &[i32]) -> Result<String> {
    let pids = (!pids.is_empty()).then_some(pids);
    Ok(serde_json::to_string(&pids)?)
}

/// Every process of the container, from its cgroup.
fn container_pids(state: &State<ConfigSummary>) -> Result<Vec<i32>> {
    let cgroup = state
        .cgroup_manager()?
        .context("the container has no cgroup")?;
    cgroup.pids()
}

/// runc runs `ps` with the given arguments (default `-ef`) and keeps the
/// header plus the lines whose PID column is one of the container's.
fn print_ps_table(pids: &[i32], ps_args: &[String]) -> Result<()> {
    let args: Vec<String> = if ps_args.is_empty() {
        vec!["-ef".into()]
    } else {
        ps_args.to_vec()
    };
    let output = Command::new("ps")
        .args(&args)
        .output()
        .context("running ps")?;
    if !output.status.success() {
        bail!(
            "ps {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let text = String::from_utf8_lossy(&output.stdout);
    let mut lines = text.lines();
    let header = lines.next().unwrap_or_default();
    let pid_column = header
        .split_whitespace()
        .position(|name| name == "PID")
        .context("ps output has no PID column")?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{header}")?;
    for line in lines {
        let pid = line
            .split_whitespace()
            .nth(pid_column)
            .and_then(|p| p.parse().ok());
        if pid.is_some_and(|pid| pids.contains(&pid)) {
            writeln!(out, "{line}")?;
        }
    }
    Ok(())
}
