//! `berth update`: runc's flags, merged over the resources read from `--resources`.

use std::io::Read;

use anyhow::{Context, Result, bail};
use clap::Args;
use oci_spec::runtime::{LinuxBlockIo, LinuxMemory, LinuxPids, LinuxResources};

// The resource flags of `runc update`; flatten into the `update` subcommand. (Not a doc
// comment: clap would make it the help text of `update`.)
#[derive(Args, Debug, Default, Clone, PartialEq, Eq)]
pub struct UpdateArgs {
    /// File with a LinuxResources JSON object to apply, or `-` for stdin.
    #[arg(short = 'r', long, value_name = "FILE")]
    pub resources: Option<String>,
    /// Per cgroup block IO weight, 10 to 1000.
    #[arg(long)]
    pub blkio_weight: Option<u16>,
    /// CPU CFS period in microseconds.
    #[arg(long)]
    pub cpu_period: Option<u64>,
    /// CPU CFS quota in microseconds per period (-1: no limit).
    #[arg(long, allow_negative_numbers = true)]
    pub cpu_quota: Option<i64>,
    /// CPU shares (relative weight vs. other containers).
    #[arg(long)]
    pub cpu_share: Option<u64>,
    /// CPU CFS burst in microseconds.
    #[arg(long)]
    pub cpu_burst: Option<u64>,
    /// CPU realtime period in microseconds.
    #[arg(long)]
    pub cpu_rt_period: Option<u64>,
    /// CPU realtime runtime in microseconds.
    #[arg(long, allow_negative_numbers = true)]
    pub cpu_rt_runtime: Option<i64>,
    /// 1 to run the cgroup's tasks as SCHED_IDLE, 0 for normal.
    #[arg(long, allow_negative_numbers = true)]
    pub cpu_idle: Option<i64>,
    /// CPUs to use, e.g. 0-3,7.
    #[arg(long)]
    pub cpuset_cpus: Option<String>,
    /// Memory nodes to use, e.g. 0-1.
    #[arg(long)]
    pub cpuset_mems: Option<String>,
    /// Memory limit, e.g. 512m (-1: no limit).
    #[arg(long, allow_hyphen_values = true)]
    pub memory: Option<String>,
    /// Memory soft limit, e.g. 256m.
    #[arg(long, allow_hyphen_values = true)]
    pub memory_reservation: Option<String>,
    /// Memory plus swap limit, e.g. 1g (-1: unlimited swap).
    #[arg(long, allow_hyphen_values = true)]
    pub memory_swap: Option<String>,
    /// Maximum number of pids (-1: no limit).
    #[arg(long, allow_negative_numbers = true)]
    pub pids_limit: Option<i64>,
}

impl UpdateArgs {
    /// The resources to apply: `--resources` (file or stdin) if given, with the flags on top.
    pub fn resources(&self, stdin: &mut dyn Read) -> Result<LinuxResources> {
        let base = match self.resources.as_deref() {
            None => LinuxResources::default(),
            Some("-") => {
                let mut text = String::new();
                stdin
                    .read_to_string(&mut text)
                    .context("reading --resources from stdin")?;
                parse_resources(&text, "stdin")?
            }
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading --resources {path}"))?;
                parse_resources(&text, path)?
            }
        };
        apply_update_flags(base, self)
    }
}

fn parse_resources(text: &str, source: &str) -> Result<LinuxResources> {
    let de = &mut serde_json::Deserializer::from_str(text);
    serde_path_to_error::deserialize(de)
        .with_context(|| format!("parsing the resources in {source}"))
}

/// Overrides the fields of `base` that flags were given for, as runc's update does.
pub fn apply_update_flags(mut base: LinuxResources, args: &UpdateArgs) -> Result<LinuxResources> {
    let mut memory = base.memory().unwrap_or_default();
    let memory_flags = [
        ("--memory", &args.memory),
        ("--memory-reservation", &args.memory_reservation),
        ("--memory-swap", &args.memory_swap),
    ];
    for (flag, value) in memory_flags {
        let Some(value) = value else { continue };
        let bytes =
            parse_memory_size(value).with_context(|| format!("invalid value for {flag}"))?;
        match flag {
            "--memory" => memory.set_limit(Some(bytes)),
            "--memory-reservation" => memory.set_reservation(Some(bytes)),
            _ => memory.set_swap(Some(bytes)),
        };
    }
    if memory != LinuxMemory::default() {
        base.set_memory(Some(memory));
    }

    let mut cpu = base.cpu().clone().unwrap_or_default();
    let cpu_flags_given = [
        args.cpu_share.is_some(),
        args.cpu_quota.is_some(),
        args.cpu_period.is_some(),
        args.cpu_burst.is_some(),
        args.cpu_rt_period.is_some(),
        args.cpu_rt_runtime.is_some(),
        args.cpu_idle.is_some(),
        args.cpuset_cpus.is_some(),
        args.cpuset_mems.is_some(),
    ];
    if args.cpu_share.is_some() {
        cpu.set_shares(args.cpu_share);
    }
    if args.cpu_quota.is_some() {
        cpu.set_quota(args.cpu_quota);
    }
    if args.cpu_period.is_some() {
        cpu.set_period(args.cpu_period);
    }
    if args.cpu_burst.is_some() {
        cpu.set_burst(args.cpu_burst);
    }
    if args.cpu_rt_period.is_some() {
        cpu.set_realtime_period(args.cpu_rt_period);
    }
    if args.cpu_rt_runtime.is_some() {
        cpu.set_realtime_runtime(args.cpu_rt_runtime);
    }
    if args.cpu_idle.is_some() {
        cpu.set_idle(args.cpu_idle);
    }
    if args.cpuset_cpus.is_some() {
        cpu.set_cpus(args.cpuset_cpus.clone());
    }
    if args.cpuset_mems.is_some() {
        cpu.set_mems(args.cpuset_mems.clone());
    }
    if cpu_flags_given.contains(&true) {
        base.set_cpu(Some(cpu));
    }

    if let Some(limit) = args.pids_limit {
        let mut pids = LinuxPids::default();
        pids.set_limit(limit);
        base.set_pids(Some(pids));
    }
    if let Some(weight) = args.blkio_weight {
        let mut block_io: LinuxBlockIo = base.block_io().clone().unwrap_or_default();
        block_io.set_weight(Some(weight));
        base.set_block_io(Some(block_io));
    }
    Ok(base)
}

/// A size as runc's update flags take it (go-units RAMInBytes): `-1`, or a number with an
/// optional binary unit: `1024`, `512m`, `1.5G`, `64KiB`, `10 MB`.
pub fn parse_memory_size(text: &str) -> Result<i64> {
    if text == "-1" {
        return Ok(-1);
    }
    let digits_end = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(digits_end);
    let unit = unit.strip_prefix(' ').unwrap_or(unit).to_ascii_lowercase();
    let unit = unit.strip_suffix('b').unwrap_or(&unit);
    let unit = unit.strip_suffix('i').unwrap_or(unit);
    let shift = match unit {
        "" => 0,
        "k" => 10,
        "m" => 20,
        "g" => 30,
        "t" => 40,
        "p" => 50,
        _ => bail!("invalid size {text:?}"),
    };
    let valid_number = !number.is_empty()
        && !number.starts_with('.')
        && !number.ends_with('.')
        && !number.contains("..");
    let value: f64 = number
        .parse()
        .ok()
        .filter(|_| valid_number)
        .with_context(|| format!("invalid size {text:?}"))?;
    Ok((value * (1u64 << shift) as f64) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        update: UpdateArgs,
    }

    fn parse(args: &[&str]) -> UpdateArgs {
        let argv = std::iter::once("update").chain(args.iter().copied());
        Cli::try_parse_from(argv).unwrap().update
    }

    #[test]
    fn sizes_like_go_units() {
        assert_eq!(parse_memory_size("-1").unwrap(), -1);
        assert_eq!(parse_memory_size("1024").unwrap(), 1024);
        assert_eq!(parse_memory_size("512m").unwrap(), 512 << 20);
        assert_eq!(parse_memory_size("1.5G").unwrap(), 3 << 29);
        assert_eq!(parse_memory_size("64KiB").unwrap(), 64 << 10);
        assert_eq!(parse_memory_size("10 MB").unwrap(), 10 << 20);
        for bad in ["", "m", "1x", "-2", "1..5m", "1.m"] {
            assert!(parse_memory_size(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn flags_override_the_resources_file() {
        let args = parse(&[
            "--memory",
            "-1",
            "--cpu-quota",
            "-1",
            "--pids-limit",
            "10",
            "--cpuset-cpus",
            "0",
            "--blkio-weight",
            "300",
        ]);
        let base: LinuxResources =
            serde_json::from_str(r#"{"memory":{"limit":1000,"swap":2000},"cpu":{"shares":512}}"#)
                .unwrap();
        let merged = apply_update_flags(base, &args).unwrap();
        let memory = merged.memory().unwrap();
        assert_eq!((memory.limit(), memory.swap()), (Some(-1), Some(2000)));
        let cpu = merged.cpu().as_ref().unwrap();
        assert_eq!((cpu.shares(), cpu.quota()), (Some(512), Some(-1)));
        assert_eq!(cpu.cpus().as_deref(), Some("0"));
        assert_eq!(merged.pids().unwrap().limit(), 10);
        assert_eq!(merged.block_io().as_ref().unwrap().weight(), Some(300));
    }

    #[test]
    fn no_flags_change_nothing_and_stdin_is_read() {
        let args = parse(&["-r", "-"]);
        let mut stdin = r#"{"pids":{"limit":5}}"#.as_bytes();
        let r = args.resources(&mut stdin).unwrap();
        assert_eq!(r.pids().unwrap().limit(), 5);
        assert!(r.memory().is_none() && r.cpu().is_none());
        let mut bad = r#"{"pids":{"limit":"x"}}"#.as_bytes();
        let err = format!("{:#}", args.resources(&mut bad).unwrap_err());
        assert!(err.contains("pids.limit"), "{err}");
        assert!(
            parse(&["--memory", "12q"])
                .resources(&mut "".as_bytes())
                .is_err()
        );
    }
}
