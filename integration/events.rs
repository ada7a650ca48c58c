//! `events`: every line is runc's JSON (types.Event and types.Stats of runc's types/events.go),
//! so that what parses runc's stream parses berth's. The names say "cgroups" so that
//! `tools/vm/test-v2` runs them on cgroup v2 too, where the OOM watch differs.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::{COMMAND_TIMEOUT, Container};

const MIB: u64 = 1024 * 1024;

/// runc's types.Stats, field names only: every key of an event's `data` must be one of these.
/// "*" stands for any key (maps), a one-element array for the type of every element.
fn runc_stats_fields() -> Value {
    let psi_data = json!({"avg10": 0, "avg60": 0, "avg300": 0, "total": 0});
    let psi = json!({"some": psi_data, "full": psi_data});
    let memory_entry = json!({"limit": 0, "usage": 0, "max": 0, "failcnt": 0});
    let blkio_entry = json!([{"major": 0, "minor": 0, "op": "", "value": 0}]);
    let blkio_lists = [
        "ioServiceBytesRecursive",
        "ioServicedRecursive",
        "ioQueueRecursive",
        "ioServiceTimeRecursive",
        "ioWaitTimeRecursive",
        "ioMergedRecursive",
        "ioTimeRecursive",
        "sectorsRecursive",
    ];
    let mut blkio: serde_json::Map<String, Value> = blkio_lists
        .iter()
        .map(|name| (name.to_string(), blkio_entry.clone()))
        .collect();
    blkio.insert("psi".into(), psi.clone());
    json!({
        "cpu": {
            "usage": {"total": 0, "percpu": [0], "percpu_kernel": [0], "percpu_user": [0],
                      "kernel": 0, "user": 0},
            "throttling": {"periods": 0, "throttledPeriods": 0, "throttledTime": 0},
            "psi": psi,
        },
        "cpuset": {
            "cpus": [0], "cpu_exclusive": 0, "mems": [0], "mem_hardwall": 0, "mem_exclusive": 0,
            "memory_migrate": 0, "memory_spread_page": 0, "memory_spread_slab": 0,
            "memory_pressure": 0, "sched_load_balance": 0, "sched_relax_domain_level": 0,
        },
        "memory": {
            "cache": 0, "usage": memory_entry, "swap": memory_entry, "kernel": memory_entry,
            "kernelTCP": memory_entry, "raw": {"*": 0}, "psi": psi,
        },
        "pids": {"current": 0, "limit": 0},
        "blkio": blkio,
        "hugetlb": {"*": {"usage": 0, "max": 0, "failcnt": 0}},
        "intel_rdt": {
            "l3_cache_info": {"cbm_mask": "", "min_cbm_bits": 0, "num_closids": 0},
            "mem_bw_info": {"bandwidth_gran": 0, "delay_linear": 0, "min_bandwidth": 0,
                            "num_closids": 0},
            "l3_cache_schema_root": "", "l3_cache_schema": "", "mem_bw_schema_root": "",
            "mem_bw_schema": "", "schemata": [""],
        },
        "network_interfaces": [{"*": 0}],
    })
}

/// Panics naming the first key of `value` that `fields` (see [`runc_stats_fields`]) lacks.
#[track_caller]
fn assert_fields_within(value: &Value, fields: &Value, path: &str) {
    match (value, fields) {
        (Value::Object(object), Value::Object(known)) => {
            for (key, field) in object {
                let Some(expected) = known.get(key).or_else(|| known.get("*")) else {
                    panic!("{path}.{key} is not a field of runc's types");
                };
                assert_fields_within(field, expected, &format!("{path}.{key}"));
            }
        }
        (Value::Array(items), Value::Array(element)) => {
            for item in items {
                assert_fields_within(item, &element[0], &format!("{path}[]"));
            }
        }
        _ => {}
    }
}

/// A running container whose memory (and memory+swap) is limited to 16 MiB.
fn memory_limited_sleeper() -> Container {
    let mut c = Container::new();
    c.configure(|spec| {
        let limit = serde_json::from_value(json!({"limit": 16 * MIB, "swap": 16 * MIB}));
        let linux = spec.linux_mut().as_mut().expect("default config has linux");
        let mut resources = linux.resources().clone().unwrap_or_default();
        resources.set_memory(Some(limit.expect("memory limits")));
        linux.set_resources(Some(resources));
    });
    c.start_sleeper();
    c
}

#[test]
fn stats_events_have_runcs_fields_on_both_cgroups_versions() {
    let c = memory_limited_sleeper();
    let out = c.cmd(&["events", "--stats", &c.id]).success();
    let event: Value = serde_json::from_str(out.stdout.trim()).expect("one JSON event");
    assert_eq!(event["type"], "stats", "{out}");
    assert_eq!(event["id"], c.id.as_str(), "{out}");
    assert_fields_within(&event["data"], &runc_stats_fields(), "data");
}

#[test]
fn an_oom_is_runcs_line_on_both_cgroups_versions() {
    let c = memory_limited_sleeper();
    let events = c.spawn(&["events", "--interval", "100ms", &c.id]);
    // The first stats line: the OOM watch is in place.
    let deadline = Instant::now() + COMMAND_TIMEOUT;
    while events.stdout_so_far().is_empty() {
        assert!(Instant::now() < deadline, "events printed nothing");
        std::thread::sleep(Duration::from_millis(20));
    }
    // The shell keeps a command substitution's output in its own memory: 32 MiB > 16 MiB.
    let allocate = format!("x=$(head -c {} /dev/zero | tr '\\0' a)", 32 * MIB);
    c.exec(&[], &["sh", "-c", &allocate]).failure();
    let oom = json!({"type": "oom", "id": c.id}).to_string();
    while !events.stdout_so_far().lines().any(|line| line == oom) {
        assert!(
            Instant::now() < deadline,
            "no {oom} line in:\n{}",
            events.stdout_so_far()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // Stopped and deleted, the container's cgroup is gone: events ends (runc's ends only then).
    c.delete_force().success();
    let out = events.wait(COMMAND_TIMEOUT);
    for line in out.stdout.lines() {
        let event: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        match event["type"].as_str() {
            Some("oom") => assert_eq!(line, oom),
            Some("stats") => assert_fields_within(&event["data"], &runc_stats_fields(), "data"),
            _ => panic!("not a runc event: {line}"),
        }
    }
}
