//! Cgroups: every `linux.resources` controller checked from outside (the container's cgroup
//! files on the host) and from inside (a fork past pids.max fails, an allocation past the memory
//! limit is OOM-killed, a denied device cannot be opened), and the cgroup-backed commands:
//! pause/resume, update, events, ps, kill --all, delete.
//!
//! The same tests run on the v1 hybrid development host (v1 controllers under
//! /sys/fs/cgroup/<controller>, cgroup2 at /sys/fs/cgroup/unified) and in the pure v2 VM
//! (`tools/vm/test-v2`); they branch on the detected layout only where file names differ.
//! Each container's cgroupsPath is the harness's absolute `/berth-it-<test>-<pid>-<n>`, or with
//! `--systemd-cgroup` (`tools/vm/test-systemd`) its scope in system.slice.

use std::collections::BTreeSet;
use std::fs;
use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value, json};

use crate::common::{
    COMMAND_TIMEOUT, Container, Output, cgroup_hierarchies, remove_namespace, set_args,
    systemd_cgroup, v1_cgroup_mount,
};

const MIB: i64 = 1024 * 1024;
const CGROUP_ROOT: &str = "/sys/fs/cgroup";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Layout {
    /// v1 controllers, possibly with a cgroup2 mount beside them (hybrid).
    V1,
    /// One cgroup2 hierarchy at /sys/fs/cgroup.
    V2,
}

fn layout() -> Layout {
    if Path::new(CGROUP_ROOT).join("cgroup.controllers").exists() {
        Layout::V2
    } else {
        Layout::V1
    }
}

/// The container's cgroup dir in every hierarchy.
fn cgroup_dirs(c: &Container) -> Vec<PathBuf> {
    let relative = c.cgroup_relative();
    cgroup_hierarchies()
        .iter()
        .map(|h| h.join(&relative))
        .collect()
}

/// The container's cgroup dir on the cgroup2 mount (the only one on v2 hosts).
fn unified_dir(c: &Container) -> PathBuf {
    let root = Path::new(CGROUP_ROOT);
    match layout() {
        Layout::V1 => root.join("unified").join(c.cgroup_relative()),
        Layout::V2 => root.join(c.cgroup_relative()),
    }
}

/// Whether a test of berth's own placement of the cgroup can run: with `--systemd-cgroup`,
/// systemd places it.
fn cgroupfs_driver() -> bool {
    if systemd_cgroup() {
        println!("skipped: the cgroupfs driver only");
    }
    !systemd_cgroup()
}

/// Whether `controller`'s files are in cgroup v2 format: on v2, and on hybrid hosts for the
/// controllers that exist only on the cgroup2 mount (hugetlb on the development host).
fn is_v2_controller(controller: &str) -> bool {
    v1_cgroup_mount(controller).is_none()
}

/// The container's cgroup dir holding `controller`'s files.
fn controller_dir(c: &Container, controller: &str) -> PathBuf {
    match v1_cgroup_mount(controller) {
        Some(hierarchy) => hierarchy.join(c.cgroup_relative()),
        None => unified_dir(c),
    }
}

#[track_caller]
fn read_cgroup(c: &Container, controller: &str, file: &str) -> String {
    let path = controller_dir(c, controller).join(file);
    fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
        .trim()
        .to_string()
}

/// The value of `key` in a flat-keyed cgroup file (`memory.events`, `memory.oom_control`).
fn keyed_value(content: &str, key: &str) -> Option<u64> {
    content.lines().find_map(|line| {
        let (k, v) = line.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok())?
    })
}

/// Whether the host mounts `controller` at all (v1: its own hierarchy or on the cgroup2 mount;
/// v2: listed at the root).
fn host_has_controller(controller: &str) -> bool {
    if v1_cgroup_mount(controller).is_some() {
        return true;
    }
    let v2_name = if controller == "blkio" {
        "io"
    } else {
        controller
    };
    let unified = match layout() {
        Layout::V1 => Path::new(CGROUP_ROOT).join("unified"),
        Layout::V2 => PathBuf::from(CGROUP_ROOT),
    };
    fs::read_to_string(unified.join("cgroup.controllers"))
        .is_ok_and(|c| c.split_whitespace().any(|c| c == v2_name))
}

/// Removes a cgroup dir whatever is in it: thaws, kills its processes, removes it leaf first.
fn remove_cgroup(dir: &Path) {
    if !dir.is_dir() {
        return;
    }
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                remove_cgroup(&entry.path());
            }
        }
    }
    let _ = fs::write(dir.join("freezer.state"), "THAWED");
    let _ = fs::write(dir.join("cgroup.freeze"), "0");
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let procs = fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
        let pids: Vec<i32> = procs.lines().filter_map(|p| p.parse().ok()).collect();
        if pids.is_empty() || Instant::now() >= deadline {
            break;
        }
        for pid in pids {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    if let Err(e) = fs::remove_dir(dir) {
        eprintln!("warning: cannot remove {}: {e}", dir.display());
    }
}

/// A test container whose cgroup dirs are removed from every hierarchy after the harness's own
/// cleanup has run (fields drop in order: the container first).
struct CgContainer {
    c: Container,
    cleanup: CgroupCleanup,
}

struct CgroupCleanup(Vec<PathBuf>);

impl CgroupCleanup {
    fn remove_now(&self) {
        for dir in &self.0 {
            remove_cgroup(dir);
        }
    }
}

impl Drop for CgroupCleanup {
    fn drop(&mut self) {
        self.remove_now();
    }
}

impl Deref for CgContainer {
    type Target = Container;
    fn deref(&self) -> &Container {
        &self.c
    }
}

impl DerefMut for CgContainer {
    fn deref_mut(&mut self) -> &mut Container {
        &mut self.c
    }
}

/// A container (not created yet) whose `linux.resources` has `resources`' fields merged over
/// the default config's (which denies every device).
fn container(resources: Value) -> CgContainer {
    let mut c = Container::new();
    c.configure(|spec| {
        let linux = spec.linux_mut().as_mut().expect("default config has linux");
        let mut merged = serde_json::to_value(linux.resources()).expect("serialize resources");
        for (key, value) in resources.as_object().expect("resources is an object") {
            merged[key] = value.clone();
        }
        let merged = serde_json::from_value(merged).expect("resources parse");
        linux.set_resources(Some(merged));
    });
    let cleanup = CgroupCleanup(cgroup_dirs(&c));
    CgContainer { c, cleanup }
}

/// A running container with `resources` whose process sleeps.
fn sleeper(resources: Value) -> CgContainer {
    let mut c = container(resources);
    c.start_sleeper();
    c
}

/// Runs `sh -c script` inside the running container.
#[track_caller]
fn exec_sh(c: &Container, script: &str) -> Output {
    c.exec(&[], &["sh", "-c", script])
}

/// Checks a create that must fail: its error names `field`, and it left no state dir and no
/// cgroup dir in any hierarchy.
#[track_caller]
fn assert_create_fails_naming(c: &Container, field: &str) {
    let out = c.create().failure();
    assert!(
        out.stderr.contains(field),
        "the error should name {field}:\n{out}"
    );
    c.state().failure();
    assert!(
        !c.state_dir().exists(),
        "a failed create left {}",
        c.state_dir().display()
    );
    let left: Vec<_> = cgroup_dirs(c).into_iter().filter(|d| d.exists()).collect();
    assert!(left.is_empty(), "a failed create left cgroup dirs {left:?}");
}

#[test]
fn memory_limit_is_written_and_an_allocation_past_it_is_oom_killed() {
    // Small sizes: under QEMU's TCG every byte through `tr` is slow.
    let limit = 16 * MIB;
    // swap = limit: no swap on top (memory+swap on v1, swap.max 0 on v2), so nothing escapes.
    let c = sleeper(json!({"memory": {"limit": limit, "swap": limit}}));
    if is_v2_controller("memory") {
        assert_eq!(read_cgroup(&c, "memory", "memory.max"), limit.to_string());
        assert_eq!(read_cgroup(&c, "memory", "memory.swap.max"), "0");
    } else {
        let read = |file| read_cgroup(&c, "memory", file);
        assert_eq!(read("memory.limit_in_bytes"), limit.to_string());
        assert_eq!(read("memory.memsw.limit_in_bytes"), limit.to_string());
    }

    // The shell keeps a command substitution's output in its own (anonymous) memory.
    let allocate = |bytes: i64| {
        exec_sh(
            &c,
            &format!("x=$(head -c {bytes} /dev/zero | tr '\\0' a); echo ${{#x}}"),
        )
    };
    let small = allocate(MIB).success();
    assert_eq!(small.stdout, format!("{MIB}\n"));

    let big = allocate(2 * limit);
    assert!(
        !big.stdout.contains(&(2 * limit).to_string()),
        "{} bytes were allocated under a limit of {limit}:\n{big}",
        2 * limit
    );
    let (file, key) = if is_v2_controller("memory") {
        ("memory.events", "oom_kill")
    } else {
        ("memory.oom_control", "oom_kill")
    };
    let events = read_cgroup(&c, "memory", file);
    assert!(
        keyed_value(&events, key).is_some_and(|n| n >= 1),
        "no OOM kill counted in {file}:\n{events}\n{big}"
    );
}

#[test]
fn pids_limit_is_written_and_a_fork_past_it_fails() {
    let c = sleeper(json!({"pids": {"limit": 4}}));
    assert_eq!(read_cgroup(&c, "pids", "pids.max"), "4");
    // The sleeping init and the exec'd shell count: two more processes fit, the third fork fails.
    let out = exec_sh(
        &c,
        "i=0; while [ $i -lt 10 ]; do sleep 100 & i=$((i+1)); echo $i; done",
    );
    assert_eq!(out.stdout, "1\n2\n", "{out}");
    assert!(out.stderr.contains("fork"), "{out}");
}

#[test]
fn cpu_shares_quota_and_period_are_written() {
    let c = container(json!({"cpu": {"shares": 512, "quota": 50000, "period": 100000}}));
    c.create().success();
    if is_v2_controller("cpu") {
        // runc's shares→weight conversion: 512 → 59.
        assert_eq!(read_cgroup(&c, "cpu", "cpu.weight"), "59");
        assert_eq!(read_cgroup(&c, "cpu", "cpu.max"), "50000 100000");
    } else {
        assert_eq!(read_cgroup(&c, "cpu", "cpu.shares"), "512");
        assert_eq!(read_cgroup(&c, "cpu", "cpu.cfs_quota_us"), "50000");
        assert_eq!(read_cgroup(&c, "cpu", "cpu.cfs_period_us"), "100000");
    }
}

#[test]
fn cpuset_is_written_and_pins_the_container() {
    let last_cpu = std::thread::available_parallelism().map_or(1, |n| n.get()) - 1;
    let cpus = last_cpu.to_string();
    let c = sleeper(json!({"cpu": {"cpus": cpus, "mems": "0"}}));
    assert_eq!(read_cgroup(&c, "cpuset", "cpuset.cpus"), cpus);
    assert_eq!(read_cgroup(&c, "cpuset", "cpuset.mems"), "0");
    let out = exec_sh(&c, "grep Cpus_allowed_list /proc/self/status").success();
    assert_eq!(out.stdout, format!("Cpus_allowed_list:\t{cpus}\n"));
}

/// The first whole disk of the host, as `major:minor`, for the throttle files.
fn first_disk() -> Option<String> {
    let partitions = fs::read_to_string("/proc/partitions").ok()?;
    partitions.lines().skip(2).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let name = fields.get(3)?;
        let is_disk = Path::new("/sys/block").join(name).exists();
        is_disk.then(|| format!("{}:{}", fields[0], fields[1]))
    })
}

/// A weight file holds `500` (v1) or `default 500` (v2, BFQ's v1 weight_device).
fn default_weight(content: &str) -> &str {
    content
        .lines()
        .find_map(|l| l.strip_prefix("default "))
        .unwrap_or(content)
        .trim()
}

/// Whether a new cgroup in the v1 blkio hierarchy gets a weight file: CFQ's `blkio.weight` or
/// BFQ's `blkio.bfq.weight` (BFQ's is not on the root, hence a probe). Without either, berth
/// rightly refuses `blockIO.weight`.
fn v1_blkio_has_weight_file(hierarchy: &Path) -> bool {
    let probe = hierarchy.join(format!("berth-it-blkio-probe-{}", std::process::id()));
    fs::create_dir(&probe).unwrap_or_else(|e| panic!("mkdir {}: {e}", probe.display()));
    let found = ["blkio.weight", "blkio.bfq.weight"]
        .iter()
        .any(|file| probe.join(file).exists());
    fs::remove_dir(&probe).unwrap_or_else(|e| panic!("rmdir {}: {e}", probe.display()));
    found
}

#[test]
fn block_io_weight_and_throttle_are_written() {
    if !host_has_controller("blkio") {
        println!("skipped: this host has no blkio/io controller");
        return;
    }
    let weighted = match v1_cgroup_mount("blkio") {
        Some(hierarchy) => v1_blkio_has_weight_file(&hierarchy),
        None => true,
    };
    let disk = first_disk();
    let mut block_io = json!({});
    if weighted {
        block_io["weight"] = json!(500);
    } else {
        println!("weight part skipped: no blkio.weight nor blkio.bfq.weight (no CFQ, no BFQ)");
    }
    if let Some(disk) = &disk {
        let (major, minor) = disk.split_once(':').expect("major:minor");
        block_io["throttleReadBpsDevice"] = json!([{
            "major": major.parse::<i64>().unwrap(),
            "minor": minor.parse::<i64>().unwrap(),
            "rate": MIB,
        }]);
    } else {
        println!("throttle part skipped: this host has no block device");
    }
    let c = container(json!({"blockIO": block_io}));
    c.create().success();
    let dir = controller_dir(&c, "blkio");
    let read = |file: &str| read_cgroup(&c, "blkio", file);
    if is_v2_controller("blkio") {
        if dir.join("io.bfq.weight").exists() {
            assert_eq!(default_weight(&read("io.bfq.weight")), "500");
        } else {
            // runc's blkio→io weight conversion: 1 + (500 - 10) * 9999 / 990.
            assert_eq!(default_weight(&read("io.weight")), "4950");
        }
        if let Some(disk) = &disk {
            let io_max = read("io.max");
            assert!(
                io_max.starts_with(&format!("{disk} rbps={MIB} ")),
                "io.max: {io_max}"
            );
        }
    } else {
        if weighted {
            let file = if dir.join("blkio.weight").exists() {
                "blkio.weight"
            } else {
                "blkio.bfq.weight"
            };
            assert_eq!(default_weight(&read(file)), "500");
        }
        if let Some(disk) = &disk {
            assert_eq!(
                read("blkio.throttle.read_bps_device"),
                format!("{disk} {MIB}")
            );
        }
    }
}

/// Hugepage sizes of this host as cgroup file names spell them ("2MB", "1GB").
fn hugepage_sizes() -> Vec<String> {
    let Ok(entries) = fs::read_dir("/sys/kernel/mm/hugepages") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let kb: u64 = name
                .strip_prefix("hugepages-")?
                .strip_suffix("kB")?
                .parse()
                .ok()?;
            Some(match kb {
                kb if kb >= 1024 * 1024 => format!("{}GB", kb / 1024 / 1024),
                kb if kb >= 1024 => format!("{}MB", kb / 1024),
                kb => format!("{kb}KB"),
            })
        })
        .collect()
}

#[test]
fn hugepage_limit_is_written() {
    let Some(size) = hugepage_sizes().into_iter().next() else {
        println!("skipped: this host has no hugepage sizes");
        return;
    };
    if !host_has_controller("hugetlb") {
        println!("skipped: this host has no hugetlb controller");
        return;
    }
    let limit = 4 * MIB;
    let c = container(json!({"hugepageLimits": [{"pageSize": size, "limit": limit}]}));
    c.create().success();
    let file = if is_v2_controller("hugetlb") {
        format!("hugetlb.{size}.max")
    } else {
        format!("hugetlb.{size}.limit_in_bytes")
    };
    assert_eq!(read_cgroup(&c, "hugetlb", &file), limit.to_string());
}

#[test]
fn invalid_hugepage_size_is_an_error_naming_the_field() {
    let c = container(json!({"hugepageLimits": [{"pageSize": "3MB", "limit": MIB}]}));
    assert_create_fails_naming(&c, "hugepageLimits");
}

/// A container whose rootfs holds `/testdev`, a node of /dev/kmsg (1:11): not among the
/// devices every container may use, and openable write-only without any capability.
fn container_with_kmsg_node(resources: Value) -> CgContainer {
    let c = container(resources);
    let node = c.bundle.join("rootfs/testdev");
    let status = std::process::Command::new("mknod")
        .arg(&node)
        .args(["c", "1", "11"])
        .status()
        .expect("run mknod");
    assert!(status.success(), "mknod {} failed", node.display());
    c
}

const OPEN_TESTDEV: &str = ": > /testdev && echo opened";

#[test]
fn a_denied_device_cannot_be_opened() {
    let mut c = container_with_kmsg_node(json!({}));
    c.start_sleeper();
    if !is_v2_controller("devices") {
        let list = read_cgroup(&c, "devices", "devices.list");
        assert!(!list.contains("1:11"), "devices.list: {list}");
    }
    let out = exec_sh(&c, OPEN_TESTDEV).failure();
    assert!(out.stderr.contains("Operation not permitted"), "{out}");
    // The always-allowed devices stay usable.
    exec_sh(&c, ": > /dev/null").success();
}

#[test]
fn an_allowed_device_can_be_opened() {
    let rule = json!({"allow": true, "type": "c", "major": 1, "minor": 11, "access": "w"});
    let deny_all = json!({"allow": false, "access": "rwm"});
    let mut c = container_with_kmsg_node(json!({"devices": [deny_all, rule]}));
    c.start_sleeper();
    if !is_v2_controller("devices") {
        let list = read_cgroup(&c, "devices", "devices.list");
        assert!(
            list.lines().any(|l| l == "c 1:11 w"),
            "devices.list: {list}"
        );
    }
    let out = exec_sh(&c, OPEN_TESTDEV).success();
    assert_eq!(out.stdout, "opened\n");
}

/// A container whose `linux.devices` lists `devices` (JSON entries), with `resources`.
fn container_with_devices(devices: Value, resources: Value) -> CgContainer {
    let mut c = container(resources);
    c.configure(|spec| {
        let linux = spec.linux_mut().as_mut().expect("default config has linux");
        linux.set_devices(Some(
            serde_json::from_value(devices).expect("linux.devices parse"),
        ));
    });
    c
}

/// Opens /dev/kmsg for writing without writing anything to the host's kernel log.
const OPEN_KMSG: &str = ": > /dev/kmsg && echo opened";

#[test]
fn a_node_in_linux_devices_gets_only_what_the_device_rules_grant() {
    let kmsg = json!([{"path": "/dev/kmsg", "type": "c", "major": 1, "minor": 11}]);
    let deny_all = json!({"allow": false, "access": "rwm"});
    let mut denied = container_with_devices(kmsg.clone(), json!({"devices": [deny_all]}));
    denied.start_sleeper();
    if !is_v2_controller("devices") {
        let list = read_cgroup(&denied, "devices", "devices.list");
        assert!(!list.contains("1:11"), "devices.list: {list}");
    }
    let out = exec_sh(&denied, OPEN_KMSG).failure();
    assert!(out.stderr.contains("Operation not permitted"), "{out}");

    let allow_kmsg = json!({"allow": true, "type": "c", "major": 1, "minor": 11, "access": "w"});
    let mut allowed = container_with_devices(kmsg, json!({"devices": [deny_all, allow_kmsg]}));
    allowed.start_sleeper();
    assert_eq!(exec_sh(&allowed, OPEN_KMSG).success().stdout, "opened\n");
}

#[test]
fn a_listed_default_device_stays_usable() {
    // runc deviates: runc 1.1 drops the default rule of a device linux.devices lists, so its
    // init cannot reopen /dev/null under a deny-all rule and the create fails.
    let null = json!([{"path": "/dev/null", "type": "c", "major": 1, "minor": 3}]);
    let deny_all = json!({"allow": false, "access": "rwm"});
    let mut c = container_with_devices(null, json!({"devices": [deny_all]}));
    c.start_sleeper();
    exec_sh(&c, ": > /dev/null").success();
}

#[test]
fn a_fifo_in_linux_devices_is_made_and_left_out_of_the_device_cgroup() {
    let fifo = json!([{"path": "/dev/myfifo", "type": "p", "fileMode": 420}]);
    let mut c = container_with_devices(fifo, json!({}));
    c.start_sleeper();
    if !is_v2_controller("devices") {
        let list = read_cgroup(&c, "devices", "devices.list");
        assert!(
            !list.lines().any(|l| l.starts_with('p')),
            "devices.list: {list}"
        );
    }
    let script = "test -p /dev/myfifo && stat -c %a /dev/myfifo && \
                  (echo through > /dev/myfifo &) && cat /dev/myfifo";
    assert_eq!(exec_sh(&c, script).success().stdout, "644\nthrough\n");
}

#[test]
fn unified_keys_are_written() {
    // cgroup.* keys need no controller: they work on the hybrid host's cgroup2 mount too.
    let mut unified = json!({"cgroup.max.descendants": "5"});
    if layout() == Layout::V2 {
        unified["memory.high"] = json!((48 * MIB).to_string());
        unified["pids.max"] = json!("9");
    }
    let c = container(json!({ "unified": unified }));
    c.create().success();
    for (key, value) in unified.as_object().unwrap() {
        let path = unified_dir(&c).join(key);
        let content = fs::read_to_string(&path).expect("read the unified key's file");
        assert_eq!(
            content.trim(),
            value.as_str().unwrap(),
            "{}",
            path.display()
        );
    }
}

#[test]
fn unknown_unified_key_is_an_error_naming_it() {
    let c = container(json!({"unified": {"cgroup.no_such_key": "1"}}));
    assert_create_fails_naming(&c, "cgroup.no_such_key");
}

#[test]
fn missing_controller_is_an_error_naming_the_field() {
    if host_has_controller("net_cls") {
        println!("skipped: this host has net_cls, the controller this test needs missing");
        return;
    }
    let c = container(json!({"network": {"classID": 1048577}}));
    assert_create_fails_naming(&c, "network.classID");
}

/// The counter the pause test's container writes, read through the init's root.
fn counter(c: &Container) -> u64 {
    let pid = c.state_json()["pid"].as_i64().expect("pid");
    let path = format!("/proc/{pid}/root/dev/shm/count");
    let deadline = Instant::now() + COMMAND_TIMEOUT;
    loop {
        // The shell truncates before it writes: an empty read is a write in progress.
        if let Some(n) = fs::read_to_string(&path)
            .ok()
            .and_then(|s| s.trim().parse().ok())
        {
            return n;
        }
        assert!(Instant::now() < deadline, "no counter in {path}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[track_caller]
fn wait_for_counter_above(c: &Container, value: u64) {
    let deadline = Instant::now() + COMMAND_TIMEOUT;
    while counter(c) <= value {
        assert!(Instant::now() < deadline, "the counter stayed at {value}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[track_caller]
fn list_status(c: &Container) -> String {
    let out = c.cmd(&["list", "--format", "json"]).success();
    let list: Value = serde_json::from_str(&out.stdout).expect("list output is JSON");
    let entry = list
        .as_array()
        .and_then(|l| l.iter().find(|e| e["id"] == c.id.as_str()))
        .unwrap_or_else(|| panic!("{} not listed:\n{out}", c.id));
    entry["status"].as_str().expect("status").to_string()
}

/// Whether the container's cgroup is frozen, read from the freezer's own file.
fn frozen_on_host(c: &Container) -> bool {
    if is_v2_controller("freezer") {
        let events = read_cgroup(c, "freezer", "cgroup.events");
        keyed_value(&events, "frozen") == Some(1)
    } else {
        read_cgroup(c, "freezer", "freezer.state") == "FROZEN"
    }
}

#[test]
fn a_paused_container_makes_no_progress_until_resumed() {
    let mut c = container(json!({}));
    c.configure(|spec| {
        let script = "i=0; while :; do i=$((i+1)); echo $i > /dev/shm/count; sleep 0.02; done";
        set_args(spec, &["sh", "-c", script]);
    });
    c.create().success();
    c.start().success();
    wait_for_counter_above(&c, 1);

    c.cmd(&["pause", &c.id]).success();
    assert_eq!(c.status().as_deref(), Some("paused"));
    assert_eq!(list_status(&c), "paused");
    assert!(frozen_on_host(&c), "pause did not freeze the cgroup");
    let paused_at = counter(&c);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(counter(&c), paused_at, "the counter advanced while paused");

    c.cmd(&["resume", &c.id]).success();
    assert_eq!(c.status().as_deref(), Some("running"));
    assert_eq!(list_status(&c), "running");
    assert!(!frozen_on_host(&c), "resume did not thaw the cgroup");
    wait_for_counter_above(&c, paused_at);
}

/// The memory limit, pids limit and cpu quota as the host's files show them.
fn limits_on_host(c: &Container) -> (String, String, String) {
    let memory = if is_v2_controller("memory") {
        read_cgroup(c, "memory", "memory.max")
    } else {
        read_cgroup(c, "memory", "memory.limit_in_bytes")
    };
    let quota = if is_v2_controller("cpu") {
        read_cgroup(c, "cpu", "cpu.max")
    } else {
        read_cgroup(c, "cpu", "cpu.cfs_quota_us")
    };
    (memory, read_cgroup(c, "pids", "pids.max"), quota)
}

fn cpu_shares_on_host(c: &Container) -> String {
    if is_v2_controller("cpu") {
        read_cgroup(c, "cpu", "cpu.weight")
    } else {
        read_cgroup(c, "cpu", "cpu.shares")
    }
}

#[test]
fn update_applies_flags_and_resources_from_stdin_and_file() {
    let c = sleeper(json!({"memory": {"limit": 64 * MIB}, "pids": {"limit": 20}}));

    c.cmd(&[
        "update",
        "--memory",
        "100m",
        "--pids-limit",
        "30",
        "--cpu-quota",
        "20000",
        &c.id,
    ])
    .success();
    let quota = if is_v2_controller("cpu") {
        "20000 100000"
    } else {
        "20000"
    };
    let expected = ((100 * MIB).to_string(), "30".to_string(), quota.to_string());
    assert_eq!(limits_on_host(&c), expected, "after update flags");

    let stdin_json = c.dir.join("stdin.json");
    fs::write(
        &stdin_json,
        json!({"memory": {"limit": 80 * MIB}, "pids": {"limit": 25}}).to_string(),
    )
    .unwrap();
    let out = c
        .spawn_with(&["update", "--resources", "-", &c.id], |cmd| {
            cmd.stdin(fs::File::open(&stdin_json).expect("open stdin.json"));
        })
        .wait(COMMAND_TIMEOUT);
    out.success();
    let expected = ((80 * MIB).to_string(), "25".to_string(), quota.to_string());
    assert_eq!(limits_on_host(&c), expected, "after --resources -");

    let file = c.dir.join("resources.json");
    fs::write(
        &file,
        json!({"cpu": {"shares": 1024}, "pids": {"limit": 2}}).to_string(),
    )
    .unwrap();
    let flag = format!("--resources={}", file.display());
    c.cmd(&["update", &flag, &c.id]).success();
    let shares = if is_v2_controller("cpu") {
        "100"
    } else {
        "1024"
    };
    assert_eq!(cpu_shares_on_host(&c), shares, "after --resources=FILE");
    assert_eq!(read_cgroup(&c, "pids", "pids.max"), "2");

    // The new pids limit holds inside: the sleeping init and this shell fill it.
    let out = exec_sh(&c, "sleep 1 & echo forked");
    assert!(
        !out.stdout.contains("forked"),
        "a fork past pids.max 2:\n{out}"
    );
}

/// `berth update --resources -` with `resources` on stdin.
fn update_from_stdin(c: &Container, resources: &Value) -> Output {
    let file = c.dir.join("update.json");
    fs::write(&file, resources.to_string()).expect("write the update's resources");
    c.spawn_with(&["update", "--resources", "-", &c.id], |cmd| {
        cmd.stdin(fs::File::open(&file).expect("open the update's resources"));
    })
    .wait(COMMAND_TIMEOUT)
}

/// What every `docker update` sends (Docker 20.10), whatever the user changed: zeros mean unset.
fn docker_update_json() -> Value {
    json!({"memory": {"limit": 0, "reservation": 0, "kernel": 0},
           "cpu": {"shares": 0, "quota": 0, "period": 0},
           "blockIO": {"weight": 0}})
}

/// The host's defaults for limits_on_host() and cpu_shares_on_host() of a new cgroup.
fn default_limits() -> ((String, String, String), String) {
    let memory = if is_v2_controller("memory") {
        "max".to_string()
    } else {
        // LONG_MAX rounded down to the page size: what "-1" (unlimited) reads back as.
        (i64::MAX / 4096 * 4096).to_string()
    };
    let (quota, shares) = if is_v2_controller("cpu") {
        ("max 100000", "100")
    } else {
        ("-1", "1024")
    };
    let limits = (memory, "max".to_string(), quota.to_string());
    (limits, shares.to_string())
}

#[test]
fn zeros_that_mean_unset_change_nothing_at_create() {
    // Every zero Docker and runc's update defaults send, in one config.
    let c = sleeper(json!({
        "memory": {"limit": 0, "reservation": 0, "swap": 0, "kernel": 0, "kernelTCP": 0,
                   "disableOOMKiller": false},
        "cpu": {"shares": 0, "quota": 0, "period": 0, "realtimeRuntime": 0, "realtimePeriod": 0,
                "cpus": "", "mems": ""},
        "blockIO": {"weight": 0, "leafWeight": 0},
        "pids": {"limit": 0},
    }));
    exec_sh(&c, "true").success();
    let (limits, shares) = default_limits();
    assert_eq!(limits_on_host(&c), limits);
    assert_eq!(cpu_shares_on_host(&c), shares);
}

#[test]
fn dockers_update_json_changes_nothing() {
    let c = sleeper(
        json!({"memory": {"limit": 64 * MIB, "reservation": 32 * MIB},
                           "cpu": {"shares": 512, "quota": 50000, "period": 100000},
                           "pids": {"limit": 20}}),
    );
    let limits = limits_on_host(&c);
    let shares = cpu_shares_on_host(&c);
    update_from_stdin(&c, &docker_update_json()).success();
    assert_eq!(limits_on_host(&c), limits);
    assert_eq!(cpu_shares_on_host(&c), shares);
    let reservation = if is_v2_controller("memory") {
        read_cgroup(&c, "memory", "memory.low")
    } else {
        read_cgroup(&c, "memory", "memory.soft_limit_in_bytes")
    };
    assert_eq!(reservation, (32 * MIB).to_string());

    // `docker update --memory 128m`: the same zeros with the one value set.
    let mut update = docker_update_json();
    update["memory"]["limit"] = json!(128 * MIB);
    update_from_stdin(&c, &update).success();
    let (_, pids, quota) = limits;
    assert_eq!(limits_on_host(&c), ((128 * MIB).to_string(), pids, quota));
}

#[test]
fn a_failing_update_changes_nothing() {
    let c = sleeper(
        json!({"memory": {"limit": 64 * MIB}, "cpu": {"quota": 50000},
                           "pids": {"limit": 20}}),
    );
    let before = limits_on_host(&c);
    // Memory and quota are written before the cpuset, which the kernel refuses: no such CPUs.
    let out = c
        .cmd(&[
            "update",
            "--memory",
            "128m",
            "--cpu-quota",
            "30000",
            "--pids-limit",
            "30",
            "--cpuset-cpus",
            "0-4095",
            &c.id,
        ])
        .failure();
    assert!(
        out.stderr.contains("cpuset.cpus"),
        "the error should name cpuset.cpus:\n{out}"
    );
    assert_eq!(
        limits_on_host(&c),
        before,
        "a failed update changed the cgroup"
    );
    // A value checked before anything is written fails the same way. runc deviates: runc
    // 1.1.5 writes the new memory limit, then finds the shares out of range and keeps it.
    c.cmd(&["update", "--memory", "128m", "--cpu-share", "1", &c.id])
        .failure();
    assert_eq!(
        limits_on_host(&c),
        before,
        "a refused update changed the cgroup"
    );
    // The container is still updatable.
    c.cmd(&["update", "--memory", "128m", &c.id]).success();
    assert_eq!(limits_on_host(&c).0, (128 * MIB).to_string());
}

#[test]
fn events_stats_prints_one_runc_shaped_stats_event() {
    let c = sleeper(json!({"memory": {"limit": 64 * MIB}, "pids": {"limit": 10}}));
    let out = c.cmd(&["events", "--stats", &c.id]).success();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 1, "one event expected:\n{out}");
    let event: Value = serde_json::from_str(lines[0]).expect("the event is JSON");
    assert_eq!(event["type"], "stats", "{event}");
    assert_eq!(event["id"], c.id.as_str(), "{event}");
    let data = &event["data"];
    assert_eq!(data["memory"]["usage"]["limit"], 64 * MIB, "{event}");
    assert!(
        data["memory"]["usage"]["usage"].as_u64() > Some(0),
        "{event}"
    );
    assert_eq!(data["pids"]["current"], 1, "{event}");
    assert_eq!(data["pids"]["limit"], 10, "{event}");
    assert!(data["cpu"]["usage"]["total"].as_u64() > Some(0), "{event}");
}

/// The pids `ps --format json` prints.
#[track_caller]
fn ps_pids(c: &Container) -> Vec<i64> {
    let out = c.cmd(&["ps", "--format", "json", &c.id]).success();
    let pids: Vec<i64> = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("ps output is not a JSON array of pids ({e}):\n{out}"));
    pids
}

#[test]
fn ps_json_lists_the_init_and_an_execd_process() {
    let c = sleeper(json!({}));
    let init = c.state_json()["pid"].as_i64().expect("pid");
    let execd = i64::from(c.exec_detached_sleeper());

    let mut pids = ps_pids(&c);
    pids.sort_unstable();
    let mut expected = vec![init, execd];
    expected.sort_unstable();
    assert_eq!(pids, expected);
    let cgroup = format!("/{}", c.cgroup_relative().display());
    for pid in pids {
        let membership = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
        assert!(
            membership.lines().all(|l| l.ends_with(&cgroup)),
            "process {pid} is not in {cgroup} everywhere:\n{membership}"
        );
    }
}

#[test]
fn kill_all_kills_every_process_including_backgrounded_ones() {
    for signal in ["KILL", "TERM"] {
        let mut c = container(json!({}));
        // In the host's pid namespace, killing the init alone would leave its children running.
        c.configure(|spec| {
            remove_namespace(spec, oci_spec::runtime::LinuxNamespaceType::Pid);
            set_args(spec, &["sh", "-c", "sleep 1000 & sleep 1000 & wait"]);
        });
        c.create().success();
        c.start().success();
        c.exec(&["--detach"], &["sleep", "1000"]).success();
        let deadline = Instant::now() + COMMAND_TIMEOUT;
        while ps_pids(&c).len() < 4 {
            assert!(Instant::now() < deadline, "expected 4 processes");
            std::thread::sleep(Duration::from_millis(10));
        }

        c.cmd(&["kill", "--all", &c.id, signal]).success();
        c.wait_for_status("stopped", COMMAND_TIMEOUT);
        let deadline = Instant::now() + COMMAND_TIMEOUT;
        loop {
            let left: Vec<String> = cgroup_dirs(&c)
                .iter()
                .map(|d| fs::read_to_string(d.join("cgroup.procs")).unwrap_or_default())
                .filter(|procs| !procs.trim().is_empty())
                .collect();
            if left.is_empty() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "kill --all {signal} left processes: {left:?}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Runs a container's lifecycle (create, start, delete --force) in a private mount namespace
/// where `view` (sh) has changed the cgroup mounts first; those mounts go with the namespace.
/// Prints the init's /proc/PID/cgroup and fails if anything is left at the container's cgroup
/// path under /sys/fs/cgroup as the namespace sees it.
fn lifecycle_in_a_mount_view(view: &str) -> Output {
    let mut c = container(json!({"pids": {"limit": 10}}));
    c.configure(|spec| set_args(spec, &["sleep", "1000"]));
    let cgroup = c.cgroup_relative();
    let script = format!(
        r#"set -e
{view}
berth() {{ "$BERTH" --root "$ROOT" "$@"; }}
berth create --bundle "$BUNDLE" "$ID"
berth start "$ID"
pid=$(berth state "$ID" | sed -n 's/^  "pid": \([0-9]*\),$/\1/p')
cat /proc/$pid/cgroup
berth delete --force "$ID"
for dir in /sys/fs/cgroup/*/"$CGROUP" /sys/fs/cgroup/"$CGROUP"; do
    if [ -e "$dir" ]; then echo "left behind: $dir" >&2; exit 1; fi
done"#
    );
    let out = c
        .spawn_program(
            Path::new("unshare"),
            &["--mount", "--propagation", "private", "sh", "-c", &script],
            |cmd| {
                cmd.env("BERTH", crate::common::runtime())
                    .env("ROOT", &c.root)
                    .env("BUNDLE", &c.bundle)
                    .env("ID", &c.id)
                    .env("CGROUP", &cgroup);
            },
        )
        .wait(COMMAND_TIMEOUT)
        .success();
    c.assert_no_leaks();
    let memory_line = out
        .stdout
        .lines()
        .find(|l| l.contains(":memory:") || l.starts_with("0::"));
    assert!(
        memory_line.is_some_and(|l| l.ends_with(&format!("/{}", cgroup.display()))),
        "the init is not in its cgroup:\n{out}"
    );
    out
}

#[test]
fn a_pure_cgroup_v1_view_runs_and_deletes_cleanly() {
    if !cgroupfs_driver() {
        return;
    }
    if !Path::new(CGROUP_ROOT).join("unified").is_dir() || layout() != Layout::V1 {
        println!("skipped: this host has no cgroup2 mount beside v1 to take away");
        return;
    }
    lifecycle_in_a_mount_view("umount /sys/fs/cgroup/unified");
}

/// The mount commands that put this host's cgroup hierarchies back on a tmpfs over
/// /sys/fs/cgroup: every v1 hierarchy, not the hybrid host's cgroup2 one; on a v2 host, its
/// cgroup2 hierarchy at /sys/fs/cgroup/unified.
fn remount_hierarchies_on_a_tmpfs() -> String {
    let mut script = String::from("mount -t tmpfs tmpfs /sys/fs/cgroup\n");
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").expect("read mountinfo");
    for line in mountinfo.lines() {
        let Some((before, after)) = line.split_once(" - ") else {
            continue;
        };
        let mount_point = before.split(' ').nth(4).unwrap_or_default();
        let mut after = after.split(' ');
        let (fstype, options) = (after.next(), after.nth(1).unwrap_or_default());
        let remount = match (fstype, layout()) {
            (Some("cgroup"), _) if mount_point.starts_with("/sys/fs/cgroup/") => {
                let controllers: Vec<&str> = (options.split(','))
                    .filter(|o| !matches!(*o, "rw" | "ro" | "xattr" | "clone_children"))
                    .collect();
                let named_only = controllers.iter().all(|c| c.starts_with("name="));
                let none = if named_only { "none," } else { "" };
                format!(
                    "mount -t cgroup -o {none}{} cgroup {mount_point}",
                    controllers.join(",")
                )
            }
            (Some("cgroup2"), Layout::V2) => {
                let mount_point = "/sys/fs/cgroup/unified";
                format!("mount -t cgroup2 cgroup2 {mount_point}")
            }
            _ => continue,
        };
        let mount_point = remount.rsplit(' ').next().unwrap_or_default().to_string();
        script.push_str(&format!("mkdir -p {mount_point}\n{remount}\n"));
    }
    script
}

#[test]
fn cgroup_mounts_hidden_under_a_tmpfs_are_not_used() {
    if !cgroupfs_driver() {
        return;
    }
    // As in nested containers: mountinfo still lists the covered mounts (on a hybrid host the
    // cgroup2 one, which nothing mounts again).
    lifecycle_in_a_mount_view(&remount_hierarchies_on_a_tmpfs());
}

#[test]
fn a_container_runs_in_an_existing_cgroup_that_was_killed_before() {
    if !cgroupfs_driver() {
        return;
    }
    // The kernel SIGKILLs a CLONE_INTO_CGROUP child of a cgroup whose cgroup.kill was written
    // (6.x): as after `kill --all` or a delete that kept a cgroup berth did not create.
    let mut c = container(json!({}));
    let unified = unified_dir(&c);
    if !unified.parent().is_some_and(Path::exists) {
        println!("skipped: no cgroup2 mount here");
        return;
    }
    fs::create_dir(&unified).expect("create the cgroup beforehand");
    let kill = unified.join("cgroup.kill");
    if !kill.exists() {
        println!("skipped: this kernel has no cgroup.kill");
        return;
    }
    fs::write(kill, "1").expect("write cgroup.kill");
    c.run_args(&["/bin/true"]).success();
    c.cleanup.remove_now();
}

/// A new cgroup namespace is rooted at the container's cgroups: the init unshares it only after
/// the runtime moved it there (on v1 it sets up its first mounts while that write waits). The
/// hierarchies mounted in the container show that root too, not the host's tree.
#[test]
fn a_cgroup_namespace_is_rooted_at_the_containers_cgroups() {
    let mut c = Container::new();
    c.configure(|spec| {
        let linux = spec.linux_mut().as_mut().unwrap();
        let mut namespaces = linux.namespaces().clone().unwrap_or_default();
        namespaces.push(
            oci_spec::runtime::LinuxNamespaceBuilder::default()
                .typ(oci_spec::runtime::LinuxNamespaceType::Cgroup)
                .build()
                .unwrap(),
        );
        linux.set_namespaces(Some(namespaces));
    });
    let out = c.sh("cat /proc/self/cgroup");
    assert!(!out.is_empty());
    for line in out.lines() {
        assert!(line.ends_with(":/"), "not the namespace's root:\n{out}");
    }
    let out = c.sh(
        "for procs in /sys/fs/cgroup/cgroup.procs /sys/fs/cgroup/*/cgroup.procs; do \
           [ -f $procs ] || continue; echo \"$procs $(grep -cx $$ $procs)\"; done",
    );
    assert!(!out.is_empty(), "no cgroup.procs under /sys/fs/cgroup");
    for line in out.lines() {
        assert!(
            line.ends_with(" 1"),
            "a root that does not hold the container:\n{out}"
        );
    }
}

#[test]
fn delete_removes_the_cgroup_in_every_hierarchy() {
    let c = sleeper(json!({"pids": {"limit": 10}}));
    for dir in cgroup_dirs(&c) {
        assert!(dir.is_dir(), "no cgroup dir {}", dir.display());
    }
    c.kill("KILL").success();
    c.wait_for_status("stopped", COMMAND_TIMEOUT);
    c.delete().success();
    let left: Vec<_> = cgroup_dirs(&c).into_iter().filter(|d| d.exists()).collect();
    assert!(left.is_empty(), "delete left cgroup dirs {left:?}");
}

#[test]
fn delete_keeps_a_cgroup_that_existed_before_create() {
    if !cgroupfs_driver() {
        return;
    }
    let mut c = container(json!({}));
    for dir in cgroup_dirs(&c) {
        fs::create_dir(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
    }
    c.run_args(&["/bin/true"]).success();
    for dir in cgroup_dirs(&c) {
        assert!(
            dir.is_dir(),
            "berth removed the pre-existing {}",
            dir.display()
        );
    }
    c.cleanup.remove_now();
}

#[test]
fn a_container_takes_its_pods_whole_cpu_quota_over_a_longer_period() {
    if !cgroupfs_driver() || is_v2_controller("cpu") {
        return; // cgroup v2 caps a child at its parent's cpu.max instead of refusing it
    }
    // runc's "update cpu period in a pod cgroup with pod limit set": a pod limited to half a
    // CPU, and in it a container asking for half a CPU over a period ten times as long.
    let mut c = container(json!({"cpu": {"quota": 500000, "period": 1000000}}));
    let pod = controller_dir(&c, "cpu");
    fs::create_dir(&pod).unwrap_or_else(|e| panic!("mkdir {}: {e}", pod.display()));
    fs::write(pod.join("cpu.cfs_quota_us"), "50000").expect("limit the pod");
    let in_pod = Path::new("/").join(c.cgroup_relative()).join("container");
    c.configure(|spec| {
        let linux = spec.linux_mut().as_mut().expect("default config has linux");
        linux.set_cgroups_path(Some(in_pod));
    });
    c.create().success();
    let container = pod.join("container");
    for (file, value) in [
        ("cpu.cfs_period_us", "1000000"),
        ("cpu.cfs_quota_us", "500000"),
    ] {
        let written = fs::read_to_string(container.join(file)).expect("read the container's");
        assert_eq!(written.trim(), value, "{file}");
    }
    c.delete_force().success();
    c.cleanup.remove_now();
}

#[test]
fn create_in_a_frozen_cgroup_fails_and_changes_nothing() {
    if !cgroupfs_driver() {
        return;
    }
    let c = container(json!({}));
    let frozen = controller_dir(&c, "freezer");
    fs::create_dir(&frozen).unwrap_or_else(|e| panic!("mkdir {}: {e}", frozen.display()));
    let (file, state) = match is_v2_controller("freezer") {
        true => ("cgroup.freeze", "1"),
        false => ("freezer.state", "FROZEN"),
    };
    fs::write(frozen.join(file), state).expect("freeze the cgroup");
    // The init would freeze half-way through its setup, and create wait for it.
    let out = c.create().failure();
    assert!(
        out.stderr
            .contains("container's cgroup unexpectedly frozen"),
        "runc's error expected:\n{out}"
    );
    assert!(!c.state_dir().exists(), "a failed create left its state");
    let made: Vec<_> = (cgroup_dirs(&c).into_iter())
        .filter(|dir| *dir != frozen && dir.exists())
        .collect();
    assert!(made.is_empty(), "a failed create left cgroup dirs {made:?}");
    assert!(frozen.is_dir(), "berth removed a cgroup it did not make");
    c.cleanup.remove_now();
}

#[test]
fn create_in_a_cgroup_with_processes_warns_as_runc_does() {
    if !cgroupfs_driver() {
        return;
    }
    let c = container(json!({}));
    for dir in cgroup_dirs(&c) {
        fs::create_dir(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
    }
    let mut neighbour = std::process::Command::new("sleep")
        .arg("1000")
        .spawn()
        .expect("spawn sleep");
    // Where berth counts (the freezer hierarchy, as `ps` and `kill --all` do) and runc does
    // (devices); on cgroup v2 both are the one cgroup2 directory.
    let shared: BTreeSet<PathBuf> = (["freezer", "devices"].into_iter())
        .map(|controller| controller_dir(&c, controller))
        .collect();
    let moved = (shared.iter())
        .try_for_each(|dir| fs::write(dir.join("cgroup.procs"), neighbour.id().to_string()));
    let out = moved.map(|()| c.create());
    let _ = neighbour.kill();
    let _ = neighbour.wait();
    let out = out.expect("move the neighbour into the cgroup").success();
    assert!(
        out.stderr
            .contains("container's cgroup is not empty: 1 process(es) found"),
        "runc's warning expected:\n{out}"
    );
    c.delete_force().success();
    c.cleanup.remove_now();
}

#[test]
fn a_4mib_1pid_container_still_runs() {
    let mut c = container(json!({"memory": {"limit": 4 * MIB}, "pids": {"limit": 1}}));
    c.run_args(&["/bin/true"]).success();
    c.assert_no_leaks();
}

#[test]
fn exec_cgroup_runs_the_process_in_a_sub_cgroup() {
    let c = sleeper(json!({}));
    for dir in cgroup_dirs(&c) {
        let sub = dir.join("sub");
        fs::create_dir(&sub).unwrap_or_else(|e| panic!("mkdir {sub:?}: {e}"));
        // A v1 cpuset cgroup takes no process until it has CPUs and memory nodes.
        for file in ["cpuset.cpus", "cpuset.mems"] {
            if fs::read_to_string(sub.join(file)).is_ok_and(|v| v.trim().is_empty()) {
                let parent = fs::read_to_string(dir.join(file)).expect("the parent's cpuset");
                fs::write(sub.join(file), parent.trim()).expect("write the sub-cgroup's cpuset");
            }
        }
    }
    let cgroups = |flags: &[&str]| -> String {
        c.exec(flags, &["cat", "/proc/self/cgroup"])
            .success()
            .stdout
    };
    let everywhere = cgroups(&["--cgroup", "sub"]);
    assert!(
        everywhere.lines().all(|line| line.ends_with("/sub")),
        "not in the sub-cgroup everywhere:\n{everywhere}"
    );
    if layout() == Layout::V1 && v1_cgroup_mount("memory").is_some() {
        let memory_only = cgroups(&["--cgroup", "memory:sub"]);
        for line in memory_only.lines() {
            let memory = line.split(':').nth(1).is_some_and(|c| c == "memory");
            assert_eq!(line.ends_with("/sub"), memory, "{memory_only}");
        }
    }
    let missing = c.exec(&["--cgroup", "nope"], &["true"]).failure();
    assert!(missing.stderr.contains("does not exist"), "{missing}");
    let escaping = c.exec(&["--cgroup", "../x"], &["true"]).failure();
    assert!(escaping.stderr.contains("--cgroup"), "{escaping}");
}
