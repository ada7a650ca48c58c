//! The unit properties systemd owns, from `linux.resources` (runc's conversions). systemd
//! writes them to the unit's cgroup and writes them again whenever it reloads; berth writes
//! every resource to the cgroup files as well, so a field systemd has no property for still
//! applies.

use anyhow::{Context, Result};
use oci_spec::runtime::{LinuxDeviceCgroup, LinuxResources};

use super::super::Version;
use super::super::convert::{self, DeviceClass};
use crate::logging;

/// A property value, in the D-Bus type systemd expects for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    /// `b`
    Bool(bool),
    /// `t`
    U64(u64),
    /// `s`
    Str(String),
    /// `as`
    Strs(Vec<String>),
    /// `au`
    Pids(Vec<u32>),
    /// `ay`: a CPU or NUMA node bitmask, lowest number in the first byte's lowest bit.
    Bits(Vec<u8>),
    /// `a(ss)`: `DeviceAllow` entries, device and access.
    DeviceRules(Vec<(String, String)>),
}

pub type Property = (&'static str, Value);

/// systemd's "infinity" for limits.
const INFINITY: u64 = u64::MAX;

/// A spec limit (-1: unlimited) as systemd takes it.
fn limit(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(INFINITY)
}

/// The properties for the set fields of `r` (see `convert::without_unset`), in the names of
/// the hierarchy version the unit's cgroup follows.
pub fn of_resources(r: &LinuxResources, version: Version) -> Result<Vec<Property>> {
    let v2 = version == Version::V2;
    let mut props = Vec::new();
    if let Some(m) = r.memory() {
        if let Some(l) = m.limit() {
            props.push((
                if v2 { "MemoryMax" } else { "MemoryLimit" },
                Value::U64(limit(l)),
            ));
        }
        if v2 {
            if let Some(low) = m.reservation() {
                props.push(("MemoryLow", Value::U64(limit(low))));
            }
            if let Some(swap) = convert::memory_swap_to_v2(m.swap(), m.limit())? {
                let swap = swap.parse().unwrap_or(INFINITY);
                props.push(("MemorySwapMax", Value::U64(swap)));
            }
        }
    }
    if let Some(c) = r.cpu() {
        if let Some(shares) = c.shares() {
            props.push(if v2 {
                (
                    "CPUWeight",
                    Value::U64(convert::cpu_shares_to_weight(shares)),
                )
            } else {
                ("CPUShares", Value::U64(shares))
            });
        }
        cpu_quota(&mut props, c.quota(), c.period());
        if v2 {
            if let Some(cpus) = c.cpus() {
                props.push(("AllowedCPUs", Value::Bits(bitmask(cpus, "cpu.cpus")?)));
            }
            if let Some(mems) = c.mems() {
                props.push((
                    "AllowedMemoryNodes",
                    Value::Bits(bitmask(mems, "cpu.mems")?),
                ));
            }
        }
    }
    if let Some(p) = r.pids() {
        props.push(("TasksMax", Value::U64(limit(p.limit()))));
    }
    if let Some(weight) = r.block_io().as_ref().and_then(|b| b.weight()) {
        props.push(if v2 {
            let weight = convert::blkio_weight_to_io_weight(weight);
            ("IOWeight", Value::U64(weight))
        } else {
            ("BlockIOWeight", Value::U64(weight.into()))
        });
    }
    if v2 {
        unified(&mut props, r)?;
    }
    if let Some(rules) = r.devices() {
        props.extend(devices(rules)?);
    }
    Ok(props)
}

/// CPUQuotaPerSecUSec (quota per second of time, "infinity" for none) and CPUQuotaPeriodUSec.
fn cpu_quota(props: &mut Vec<Property>, quota: Option<i64>, period: Option<u64>) {
    if quota.is_none() && period.is_none() {
        return;
    }
    let period = period.filter(|p| *p != 0);
    if let Some(period) = period {
        props.push(("CPUQuotaPeriodUSec", Value::U64(period)));
    }
    let per_sec = match quota.and_then(|q| u64::try_from(q).ok()).filter(|q| *q > 0) {
        Some(quota) => {
            // systemd keeps a whole percent of a CPU: round up to 10ms per second, as runc.
            let per_sec = quota * 1_000_000 / period.unwrap_or(100_000);
            per_sec.div_ceil(10_000) * 10_000
        }
        None => INFINITY,
    };
    props.push(("CPUQuotaPerSecUSec", Value::U64(per_sec)));
}

/// The `unified` keys systemd has a property for (runc's list).
fn unified(props: &mut Vec<Property>, r: &LinuxResources) -> Result<()> {
    for (key, value) in r.unified().iter().flatten() {
        let value = value.trim();
        let number = || -> Result<u64> {
            if value == "max" {
                return Ok(INFINITY);
            }
            value
                .parse()
                .with_context(|| format!("linux.resources.unified: {key}: {value:?}"))
        };
        let property = match key.as_str() {
            "memory.high" => "MemoryHigh",
            "memory.low" => "MemoryLow",
            "memory.min" => "MemoryMin",
            "memory.max" => "MemoryMax",
            "memory.swap.max" => "MemorySwapMax",
            "pids.max" => "TasksMax",
            "cpu.weight" => "CPUWeight",
            _ => continue,
        };
        props.push((property, Value::U64(number()?)));
    }
    Ok(())
}

/// "0-2,7" as a bitmask.
fn bitmask(list: &str, field: &str) -> Result<Vec<u8>> {
    let bad = || format!("linux.resources.{field}: {list:?} is not a list like 0-3,7");
    let mut bits = Vec::new();
    for range in list.split(',').map(str::trim).filter(|r| !r.is_empty()) {
        let (first, last) = range.split_once('-').unwrap_or((range, range));
        let first: usize = first.trim().parse().with_context(bad)?;
        let last: usize = last.trim().parse().with_context(bad)?;
        if first > last || last >= 1 << 16 {
            return Err(anyhow::anyhow!(bad()));
        }
        for n in first..=last {
            if bits.len() <= n / 8 {
                bits.resize(n / 8 + 1, 0);
            }
            bits[n / 8] |= 1 << (n % 8);
        }
    }
    Ok(bits)
}

/// DevicePolicy and DeviceAllow for the container's device rules: the composed list starts by
/// denying everything and then allows, which is `strict` plus the allows. A rule list that
/// allows everything and then denies some cannot be said in systemd's terms: it gets `auto`
/// and the cgroup files (or eBPF program) berth writes alone enforce it, as runc does.
fn devices(rules: &[LinuxDeviceCgroup]) -> Result<Vec<Property>> {
    let mut allow_all = false;
    let mut allowed: Vec<(String, String)> = Vec::new();
    for rule in rules {
        let class = convert::device_class(rule)?;
        let access = convert::device_access(rule.access().as_deref())?;
        let any = |n: Option<i64>| n.is_none_or(|n| n < 0);
        let everything = class == DeviceClass::All && any(rule.major()) && any(rule.minor());
        match (rule.allow(), everything) {
            (false, true) => {
                allow_all = false;
                allowed.clear();
            }
            (true, true) => {
                allow_all = true;
                allowed.clear();
            }
            (true, false) if !allow_all => {
                allowed.extend(device_name(rule, class).map(|d| (d, access.to_string())));
            }
            (true, false) => {}
            (false, false) if allow_all => {
                logging::log(
                    logging::Level::Debug,
                    "systemd: a deny rule after allowing every device has no DeviceAllow form",
                );
                return Ok(vec![("DevicePolicy", Value::Str("auto".into()))]);
            }
            (false, false) => {
                let denied = device_name(rule, class);
                allowed.retain(|(device, _)| Some(device) != denied.as_ref());
            }
        }
    }
    let policy = if allow_all { "auto" } else { "strict" };
    Ok(vec![
        ("DevicePolicy", Value::Str(policy.into())),
        ("DeviceAllow", Value::DeviceRules(allowed)),
    ])
}

/// A rule's devices as DeviceAllow names them: `/dev/char/1:3`, `char-pts` (a major by its
/// name in /proc/devices), `char-*`. None when the major has no name (nothing to allow).
fn device_name(rule: &LinuxDeviceCgroup, class: DeviceClass) -> Option<String> {
    let kind = match class {
        DeviceClass::Char => "char",
        DeviceClass::Block => "block",
        DeviceClass::All => return None,
    };
    match (
        rule.major().filter(|m| *m >= 0),
        rule.minor().filter(|m| *m >= 0),
    ) {
        (None, _) => Some(format!("{kind}-*")),
        (Some(major), Some(minor)) => Some(format!("/dev/{kind}/{major}:{minor}")),
        (Some(major), None) => {
            let devices = std::fs::read_to_string("/proc/devices").ok()?;
            major_name(&devices, class, major).map(|name| format!("{kind}-{name}"))
        }
    }
}

/// The name of a major number in /proc/devices' section for `class`.
fn major_name(devices: &str, class: DeviceClass, major: i64) -> Option<String> {
    let section = match class {
        DeviceClass::Char => "Character devices:",
        _ => "Block devices:",
    };
    let mut lines = devices.lines().skip_while(|l| *l != section).skip(1);
    lines
        .by_ref()
        .take_while(|l| !l.is_empty())
        .find_map(|line| {
            let (number, name) = line.trim().split_once(' ')?;
            (number.parse() == Ok(major)).then(|| name.to_string())
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resources(json: &str) -> LinuxResources {
        convert::without_unset(&serde_json::from_str(json).unwrap())
    }

    fn find<'a>(props: &'a [Property], name: &str) -> Option<&'a Value> {
        props.iter().find(|(n, _)| *n == name).map(|(_, v)| v)
    }

    #[test]
    fn v2_resources_become_systemds_properties() {
        let r = resources(
            r#"{"memory":{"limit":67108864,"reservation":1048576,"swap":134217728},
                "cpu":{"shares":1024,"quota":50000,"period":100000,"cpus":"0-2,9"},
                "pids":{"limit":-1},"blockIO":{"weight":500},
                "unified":{"memory.high":"33554432","io.max":"8:0 rbps=1"}}"#,
        );
        let props = of_resources(&r, Version::V2).unwrap();
        let u64_of = |name| match find(&props, name) {
            Some(Value::U64(v)) => *v,
            other => panic!("{name}: {other:?}"),
        };
        assert_eq!(u64_of("MemoryMax"), 67108864);
        assert_eq!(u64_of("MemoryLow"), 1048576);
        assert_eq!(u64_of("MemorySwapMax"), 67108864);
        assert_eq!(u64_of("MemoryHigh"), 33554432);
        assert_eq!(u64_of("CPUWeight"), 100);
        assert_eq!(u64_of("CPUQuotaPerSecUSec"), 500_000);
        assert_eq!(u64_of("CPUQuotaPeriodUSec"), 100_000);
        assert_eq!(u64_of("TasksMax"), u64::MAX);
        assert_eq!(u64_of("IOWeight"), 4950);
        assert_eq!(
            find(&props, "AllowedCPUs"),
            Some(&Value::Bits(vec![0b111, 0b10]))
        );
    }

    #[test]
    fn v1_uses_the_v1_property_names() {
        let r =
            resources(r#"{"memory":{"limit":-1},"cpu":{"shares":512},"blockIO":{"weight":10}}"#);
        let props = of_resources(&r, Version::V1).unwrap();
        let names: Vec<_> = props.iter().map(|(n, _)| *n).collect();
        assert_eq!(names, ["MemoryLimit", "CPUShares", "BlockIOWeight"]);
        assert_eq!(find(&props, "MemoryLimit"), Some(&Value::U64(u64::MAX)));
    }

    #[test]
    fn a_fractional_percent_quota_rounds_up_to_a_whole_percent() {
        let r = resources(r#"{"cpu":{"quota":12345,"period":100000}}"#);
        let props = of_resources(&r, Version::V2).unwrap();
        assert_eq!(
            find(&props, "CPUQuotaPerSecUSec"),
            Some(&Value::U64(130_000))
        );
    }

    #[test]
    fn deny_all_then_allows_is_a_strict_policy() {
        let r = resources(
            r#"{"devices":[{"allow":false,"access":"rwm"},
                {"allow":true,"type":"c","major":1,"minor":3,"access":"rwm"},
                {"allow":true,"type":"b","access":"m"},
                {"allow":true,"type":"c","major":10,"minor":200,"access":"rw"},
                {"allow":false,"type":"c","major":10,"minor":200}]}"#,
        );
        let props = of_resources(&r, Version::V2).unwrap();
        assert_eq!(
            find(&props, "DevicePolicy"),
            Some(&Value::Str("strict".into()))
        );
        let allowed = vec![
            ("/dev/char/1:3".to_string(), "rwm".to_string()),
            ("block-*".to_string(), "m".to_string()),
        ];
        assert_eq!(
            find(&props, "DeviceAllow"),
            Some(&Value::DeviceRules(allowed))
        );
    }

    #[test]
    fn allow_all_is_the_auto_policy() {
        let r = resources(r#"{"devices":[{"allow":true,"access":"rwm"}]}"#);
        let props = of_resources(&r, Version::V2).unwrap();
        assert_eq!(
            find(&props, "DevicePolicy"),
            Some(&Value::Str("auto".into()))
        );
        assert_eq!(
            find(&props, "DeviceAllow"),
            Some(&Value::DeviceRules(vec![]))
        );
    }

    #[test]
    fn a_major_alone_is_named_from_proc_devices() {
        let devices = "Character devices:\n  1 mem\n136 pts\n\nBlock devices:\n  7 loop\n";
        assert_eq!(
            major_name(devices, DeviceClass::Char, 136).as_deref(),
            Some("pts")
        );
        assert_eq!(
            major_name(devices, DeviceClass::Block, 7).as_deref(),
            Some("loop")
        );
        assert_eq!(major_name(devices, DeviceClass::Block, 136), None);
    }

    #[test]
    fn a_bad_cpu_list_names_the_field() {
        let r = resources(r#"{"cpu":{"cpus":"3-1"}}"#);
        let err = of_resources(&r, Version::V2).unwrap_err().to_string();
        assert!(err.contains("cpu.cpus"), "{err}");
    }
}
