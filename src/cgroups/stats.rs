//! `berth events` output: the same JSON as runc's `types.Event` / `types.Stats`, so tools that
//! parse runc's stream (containerd, podman) read berth's unchanged.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One line of `events`: `{"type":"stats","id":…,"data":{…}}` or `{"type":"oom","id":…}`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Event {
    #[serde(rename = "type")]
    pub kind: String,
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<Stats>,
}

impl Event {
    pub fn stats(id: &str, stats: Stats) -> Event {
        Event {
            kind: "stats".into(),
            id: id.into(),
            data: Some(stats),
        }
    }

    pub fn oom(id: &str) -> Event {
        Event {
            kind: "oom".into(),
            id: id.into(),
            data: None,
        }
    }
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct Stats {
    pub cpu: Cpu,
    pub cpuset: CpuSet,
    pub memory: Memory,
    pub pids: Pids,
    pub blkio: Blkio,
    pub hugetlb: BTreeMap<String, Hugetlb>,
    /// Intel RDT is not a cgroup; berth reports it empty, as runc does on hosts without it.
    pub intel_rdt: IntelRdt,
    pub network_interfaces: Option<Vec<serde_json::Value>>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct IntelRdt {}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct Hugetlb {
    #[serde(default, skip_serializing_if = "is_zero")]
    pub usage: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub max: u64,
    pub failcnt: u64,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct BlkioEntry {
    #[serde(default, skip_serializing_if = "is_zero")]
    pub major: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub minor: u64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub op: String,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub value: u64,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Blkio {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub io_service_bytes_recursive: Vec<BlkioEntry>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub io_serviced_recursive: Vec<BlkioEntry>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub psi: Option<PsiStats>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct Pids {
    #[serde(default, skip_serializing_if = "is_zero")]
    pub current: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub limit: u64,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Throttling {
    #[serde(default, skip_serializing_if = "is_zero")]
    pub periods: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub throttled_periods: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub throttled_time: u64,
}

/// CPU time in nanoseconds.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct CpuUsage {
    #[serde(default, skip_serializing_if = "is_zero")]
    pub total: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub percpu: Vec<u64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub percpu_kernel: Vec<u64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub percpu_user: Vec<u64>,
    pub kernel: u64,
    pub user: u64,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct Cpu {
    pub usage: CpuUsage,
    pub throttling: Throttling,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub psi: Option<PsiStats>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct CpuSet {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cpus: Vec<u16>,
    pub cpu_exclusive: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mems: Vec<u16>,
    pub mem_hardwall: u64,
    pub mem_exclusive: u64,
    pub memory_migrate: u64,
    pub memory_spread_page: u64,
    pub memory_spread_slab: u64,
    pub memory_pressure: u64,
    pub sched_load_balance: u64,
    pub sched_relax_domain_level: i64,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct MemoryEntry {
    pub limit: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub usage: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub max: u64,
    pub failcnt: u64,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct MemoryEventCount {
    pub low: u64,
    pub high: u64,
    pub max: u64,
    pub oom: u64,
    pub oom_kill: u64,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct Memory {
    #[serde(default, skip_serializing_if = "is_zero")]
    pub cache: u64,
    pub usage: MemoryEntry,
    pub swap: MemoryEntry,
    pub kernel: MemoryEntry,
    #[serde(rename = "kernelTCP")]
    pub kernel_tcp: MemoryEntry,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub raw: BTreeMap<String, u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub psi: Option<PsiStats>,
    /// Not in runc's types: kept out of `events`, whose lines are runc's JSON.
    #[serde(default, skip_serializing)]
    pub event_count: MemoryEventCount,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct PsiData {
    pub avg10: f64,
    pub avg60: f64,
    pub avg300: f64,
    pub total: u64,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct PsiStats {
    pub some: PsiData,
    pub full: PsiData,
}

/// `some avg10=0.00 avg60=0.00 avg300=0.00 total=0` / `full …` (cpu.pressure, memory.pressure).
pub fn parse_psi(text: &str) -> Option<PsiStats> {
    let mut stats = PsiStats::default();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        let data = match words.next()? {
            "some" => &mut stats.some,
            "full" => &mut stats.full,
            _ => continue,
        };
        for word in words {
            let (key, value) = word.split_once('=')?;
            match key {
                "avg10" => data.avg10 = value.parse().ok()?,
                "avg60" => data.avg60 = value.parse().ok()?,
                "avg300" => data.avg300 = value.parse().ok()?,
                "total" => data.total = value.parse().ok()?,
                _ => {}
            }
        }
    }
    Some(stats)
}

/// A cpuset list such as `0-3,8` into the single numbers.
pub fn parse_cpuset_list(text: &str) -> Vec<u16> {
    let mut out = Vec::new();
    for part in text.trim().split(',').filter(|p| !p.is_empty()) {
        let (lo, hi) = part.split_once('-').unwrap_or((part, part));
        if let (Ok(lo), Ok(hi)) = (lo.parse::<u16>(), hi.parse::<u16>()) {
            out.extend(lo..=hi);
        }
    }
    out
}

/// v1 blkio `8:0 Read 4096` lines (the `Total` lines are dropped, as runc does).
pub fn parse_blkio_v1(text: &str) -> Vec<BlkioEntry> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            let (major, minor) = words.next()?.split_once(':')?;
            let op = words.next()?;
            let value = words.next()?.parse().ok()?;
            Some(BlkioEntry {
                major: major.parse().ok()?,
                minor: minor.parse().ok()?,
                op: op.to_string(),
                value,
            })
        })
        .collect()
}

/// v2 io.stat `8:0 rbytes=1 wbytes=2 rios=3 wios=4 dbytes=0 dios=0` into runc's v1-shaped
/// entries (bytes, then operations).
pub fn parse_io_stat(text: &str) -> (Vec<BlkioEntry>, Vec<BlkioEntry>) {
    let (mut bytes, mut ios) = (Vec::new(), Vec::new());
    for line in text.lines() {
        let mut words = line.split_whitespace();
        let Some((major, minor)) = words.next().and_then(|d| d.split_once(':')) else {
            continue;
        };
        let (Ok(major), Ok(minor)) = (major.parse(), minor.parse()) else {
            continue;
        };
        for word in words {
            let Some((key, value)) = word.split_once('=') else {
                continue;
            };
            let Ok(value) = value.parse() else { continue };
            let (list, op) = match key {
                "rbytes" => (&mut bytes, "Read"),
                "wbytes" => (&mut bytes, "Write"),
                "rios" => (&mut ios, "Read"),
                "wios" => (&mut ios, "Write"),
                _ => continue,
            };
            list.push(BlkioEntry {
                major,
                minor,
                op: op.into(),
                value,
            });
        }
    }
    (bytes, ios)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_json_matches_runc_shape() {
        let oom = serde_json::to_string(&Event::oom("c1")).unwrap();
        assert_eq!(oom, r#"{"type":"oom","id":"c1"}"#);
        let json = serde_json::to_value(Event::stats("c1", Stats::default())).unwrap();
        let data = &json["data"];
        assert_eq!(json["type"], "stats");
        assert_eq!(
            data["cpu"]["usage"],
            serde_json::json!({"kernel": 0, "user": 0})
        );
        assert_eq!(
            data["memory"]["usage"],
            serde_json::json!({"limit": 0, "failcnt": 0})
        );
        assert!(data["memory"]["kernelTCP"].is_object());
        assert!(
            data["memory"].get("event_count").is_none(),
            "not runc's: {data}"
        );
        assert_eq!(data["pids"], serde_json::json!({}));
        assert_eq!(data["intel_rdt"], serde_json::json!({}));
        assert!(data["network_interfaces"].is_null());
        assert_eq!(data["cpuset"]["sched_relax_domain_level"], 0);
    }

    #[test]
    fn parses_psi_cpuset_and_blkio() {
        let psi = parse_psi(
            "some avg10=1.50 avg60=0.00 avg300=0.00 total=42\n\
             full avg10=0.00 avg60=0.00 avg300=0.00 total=7\n",
        )
        .unwrap();
        assert_eq!(
            (psi.some.avg10, psi.some.total, psi.full.total),
            (1.5, 42, 7)
        );
        assert_eq!(parse_cpuset_list("0-2,5\n"), [0, 1, 2, 5]);
        assert!(parse_cpuset_list("\n").is_empty());
        let v1 = parse_blkio_v1("8:0 Read 4096\n8:0 Write 0\nTotal 4096\n");
        assert_eq!(v1.len(), 2);
        assert_eq!(
            (v1[0].major, v1[0].op.as_str(), v1[0].value),
            (8, "Read", 4096)
        );
        let (bytes, ios) = parse_io_stat("253:1 rbytes=10 wbytes=20 rios=1 wios=2 dbytes=0\n");
        assert_eq!(bytes.iter().map(|e| e.value).collect::<Vec<_>>(), [10, 20]);
        assert_eq!(ios[1].op, "Write");
    }
}
