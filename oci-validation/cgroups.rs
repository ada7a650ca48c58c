//! Cgroups (config-linux.md "Control groups"): each resource is checked in the container's
//! cgroup, found through /proc/<pid>/cgroup, in whichever hierarchy holds the controller
//! (cgroup v1, or v2; a hybrid host has both), for an absolute `cgroupsPath` and a relative
//! one. These cases also run on a pure cgroup v2 host (`make test-vm`), and delete's duties
//! towards cgroups are checked here too.
//!
//! A relative `cgroupsPath` is relative to a place the runtime chooses (runc: its own cgroup);
//! each relative case runs `create` from a cgroup of its own, so that nothing lands in the
//! cgroup this test process lives in, and checks that the container's cgroup path ends with
//! the relative path below it.

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::common::{COMMAND_TIMEOUT, Container, Output, cgroup_hierarchies, runtime, set_args};
use crate::suite::{self, Checks, reaches};

/// A mounted cgroup hierarchy.
struct Hierarchy {
    mount: PathBuf,
    v2: bool,
    /// Its controllers (and `name=…`) as its mount options list them; none for cgroup v2.
    controllers: Vec<String>,
}

impl Hierarchy {
    /// The directory of process `pid`'s cgroup in it.
    fn dir_of(&self, pid: i64) -> Option<PathBuf> {
        let cgroups = fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
        let path = cgroups.lines().find_map(|line| {
            let mut fields = line.splitn(3, ':');
            let (_, controllers, path) = (fields.next()?, fields.next()?, fields.next()?);
            let ours = match self.v2 {
                true => controllers.is_empty(),
                false => {
                    let listed: Vec<&str> = controllers.split(',').collect();
                    !controllers.is_empty()
                        && listed
                            .iter()
                            .all(|c| self.controllers.iter().any(|o| o == c))
                }
            };
            ours.then(|| path.trim_start_matches('/').to_string())
        })?;
        Some(self.mount.join(path))
    }

    fn has(&self, controller: &str) -> bool {
        if self.v2 {
            let controllers = fs::read_to_string(self.mount.join("cgroup.controllers"));
            controllers.is_ok_and(|c| c.split_whitespace().any(|c| c == controller))
        } else {
            self.controllers.iter().any(|c| c == controller)
        }
    }
}

/// Every cgroup hierarchy mounted (as this process sees them).
fn hierarchies() -> Vec<Hierarchy> {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").expect("read mountinfo");
    mountinfo
        .lines()
        .filter_map(|line| {
            let (before, after) = line.split_once(" - ")?;
            let mount = PathBuf::from(before.split(' ').nth(4)?);
            let fields: Vec<&str> = after.split(' ').collect();
            let options = fields.get(2).copied().unwrap_or_default();
            match fields.first().copied()? {
                "cgroup" => Some(Hierarchy {
                    mount,
                    v2: false,
                    controllers: options.split(',').map(String::from).collect(),
                }),
                "cgroup2" => Some(Hierarchy {
                    mount,
                    v2: true,
                    controllers: Vec::new(),
                }),
                _ => None,
            }
        })
        .collect()
}

/// The hierarchy holding `controller`: a v1 one, else cgroup v2 if it has it.
fn hierarchy(controller: &str) -> Option<Hierarchy> {
    let all = hierarchies();
    let v1 = all.iter().position(|h| !h.v2 && h.has(controller));
    let index = v1.or_else(|| all.iter().position(|h| h.v2 && h.has(controller)))?;
    all.into_iter().nth(index)
}

/// The container's cgroup directory for `controller`.
fn cgroup_dir(pid: i64, controller: &str) -> Option<PathBuf> {
    hierarchy(controller)?.dir_of(pid)
}

fn read(dir: &Path, file: &str) -> String {
    fs::read_to_string(dir.join(file))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|e| format!("unreadable: {e}"))
}

/// A cgroup of the case's own in every hierarchy, `<root>/oci-rel-<id>/runtime`, that `create`
/// runs in for a relative `cgroupsPath`; removed (with whatever is left below it) on drop.
struct RuntimeCgroup {
    name: String,
}

impl RuntimeCgroup {
    fn new(c: &Container) -> RuntimeCgroup {
        let name = format!("oci-rel-{}", c.id);
        for hierarchy in cgroup_hierarchies() {
            let mut dir = hierarchy.clone();
            for part in [name.as_str(), "runtime"] {
                dir.push(part);
                fs::create_dir(&dir).expect("make a cgroup");
                // A v1 cpuset takes no process until it has CPUs and memory nodes.
                for file in ["cpuset.cpus", "cpuset.mems"] {
                    if let Ok(value) = fs::read_to_string(hierarchy.join(file)) {
                        fs::write(dir.join(file), value.trim()).expect("set a cpuset");
                    }
                }
            }
        }
        RuntimeCgroup { name }
    }

    /// `create` run from the cgroup (a shell moves itself there, then execs the runtime).
    /// systemd on a cgroup v1 host may remove empty cgroups at the root of a hierarchy it
    /// does not use (it trims the root slice's when it realizes it), so a cgroup gone before
    /// the shell is in it is made again, cpuset values and all.
    fn create(&self, c: &Container) -> Output {
        let dirs: Vec<String> = cgroup_hierarchies()
            .iter()
            .map(|h| h.join(&self.name).join("runtime").display().to_string())
            .collect();
        let script = format!(
            "for dir in {}; do
                 tries=0
                 until echo $$ 2>/dev/null >\"$dir/cgroup.procs\"; do
                     tries=$((tries + 1)); [ $tries -le 20 ] || exit 1
                     mkdir -p \"$dir\"
                     for file in cpuset.cpus cpuset.mems; do
                         [ -e \"$dir/$file\" ] || continue
                         cat \"$dir/../../$file\" >\"$dir/../$file\"
                         cat \"$dir/../../$file\" >\"$dir/$file\"
                     done
                 done
             done
             exec \"$@\"",
            dirs.join(" ")
        );
        let runtime = runtime().to_str().unwrap();
        let root = c.root.to_str().unwrap();
        let bundle = c.bundle.to_str().unwrap();
        let args = [
            "-c", &script, "sh", runtime, "--root", root, "create", "--bundle", bundle, &c.id,
        ];
        c.spawn_program(Path::new("/bin/sh"), &args, |_| {})
            .wait(COMMAND_TIMEOUT)
    }
}

impl Drop for RuntimeCgroup {
    fn drop(&mut self) {
        for hierarchy in cgroup_hierarchies() {
            remove_tree(&hierarchy.join(&self.name));
        }
    }
}

fn remove_tree(dir: &Path) {
    for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            remove_tree(&entry.path());
        }
    }
    let _ = fs::remove_dir(dir);
}

/// The relative `cgroupsPath` of a relative case: unique, since the runtime may put it
/// anywhere (crun: below each hierarchy's root), where the case removes what delete leaves.
fn relative_path(c: &Container) -> String {
    format!("oci-rel-{}/container", c.id)
}

/// Every cgroup directory the process is in, one per hierarchy.
fn all_cgroup_dirs(pid: i64) -> Vec<PathBuf> {
    hierarchies().iter().filter_map(|h| h.dir_of(pid)).collect()
}

/// One container of a cgroup case: `resources` in its config, created with an absolute
/// `cgroupsPath` (the harness's) or a relative one; `check` gets its pid and the checks; then
/// the container is deleted and its cgroup must be gone.
fn cgroup_case(relative: bool, resources: Value, check: impl FnOnce(i64, &mut Checks)) -> Checks {
    let mut checks = Checks::default();
    let mut case = CaseContainer::new(relative);
    let relative_path = relative.then(|| relative_path(&case.container));
    let c = &mut case.container;
    c.configure(|spec| set_args(spec, &["sleep", "30"]));
    suite::edit(c, |config| {
        config["linux"]["resources"] = resources;
        if let Some(path) = &relative_path {
            config["linux"]["cgroupsPath"] = path.as_str().into();
        }
    });
    let created = match &case.runtime_cgroup {
        Some(cgroup) => cgroup.create(c),
        None => c.create(),
    };
    checks.succeeds("create", &created);
    if created.code != 0 {
        return checks;
    }
    let pid = c.state_json()["pid"].as_i64().unwrap_or(0);
    let dirs = all_cgroup_dirs(pid);
    for dir in dirs.iter().filter(|_| relative) {
        let path = relative_path.as_deref().unwrap_or_default();
        checks.check(
            dir.ends_with(path),
            format!("{}: not at {path}", dir.display()),
        );
    }
    check(pid, &mut checks);
    checks.succeeds("kill", &c.kill("KILL"));
    checks.check(reaches(c, &["stopped"]), "killed, it did not stop");
    checks.succeeds("delete", &c.delete());
    for dir in &dirs {
        checks.check(
            !dir.exists(),
            format!("{} left after delete", dir.display()),
        );
        // A relative path may leave the directory around the container's, named for this
        // case: it goes too.
        if let Some(path) = &relative_path
            && dir.ends_with(path)
            && let Some(parent) = dir.parent()
        {
            remove_tree(parent);
        }
    }
    checks
}

/// A case's container and, for a relative `cgroupsPath`, the cgroup its runtime runs in,
/// which goes after the container (fields drop in order).
struct CaseContainer {
    container: Container,
    runtime_cgroup: Option<RuntimeCgroup>,
}

impl CaseContainer {
    fn new(relative: bool) -> CaseContainer {
        let container = suite::container();
        let runtime_cgroup = relative.then(|| RuntimeCgroup::new(&container));
        CaseContainer {
            container,
            runtime_cgroup,
        }
    }
}

fn pids(relative: bool) {
    let resources = json!({"pids": {"limit": 1000}});
    cgroup_case(relative, resources, |pid, checks| {
        let dir = cgroup_dir(pid, "pids").expect("a pids cgroup");
        checks.equal("pids.max", read(&dir, "pids.max"), "1000".into());
    })
    .done();
}

/// runtime-tools `linux_cgroups_pids`.
#[test]
fn linux_cgroups_pids() {
    pids(false);
}

/// runtime-tools `linux_cgroups_relative_pids`.
#[test]
fn linux_cgroups_relative_pids() {
    pids(true);
}

fn memory(relative: bool, cases: &[(i64, u64)]) {
    let Some(v2) = hierarchy("memory").map(|h| h.v2) else {
        return suite::skip("no memory controller");
    };
    // The spec marks both NOT RECOMMENDED, its authors for runtimes too: runc and berth leave
    // them unset (and this kernel ignores a kernel memory limit anyway).
    suite::note(
        "kernel and kernelTCP: NOT RECOMMENDED by the spec, which runtimes may leave unset",
    );
    if v2 {
        suite::note("disableOOMKiller: no cgroup v2 file");
    }
    let mut all = Checks::default();
    for &(limit, swappiness) in cases {
        let mut memory = json!({
            "limit": limit, "reservation": limit, "swap": limit, "kernel": limit,
            "kernelTCP": limit, "swappiness": swappiness, "disableOOMKiller": true
        });
        if v2 {
            let memory = memory.as_object_mut().unwrap();
            memory.remove("swappiness");
            memory.remove("disableOOMKiller");
        }
        let checks = cgroup_case(relative, json!({"memory": memory}), |pid, checks| {
            let dir = cgroup_dir(pid, "memory").expect("a memory cgroup");
            let expect = |checks: &mut Checks, file: &str, value: String| {
                checks.equal(&format!("{limit}: {file}"), read(&dir, file), value);
            };
            if v2 {
                expect(checks, "memory.max", limit.to_string());
                expect(checks, "memory.low", limit.to_string());
                // v2's swap limit is swap only; the spec's is memory plus swap.
                expect(checks, "memory.swap.max", "0".into());
            } else {
                expect(checks, "memory.limit_in_bytes", limit.to_string());
                expect(checks, "memory.soft_limit_in_bytes", limit.to_string());
                expect(checks, "memory.memsw.limit_in_bytes", limit.to_string());
                expect(checks, "memory.swappiness", swappiness.to_string());
                let oom = read(&dir, "memory.oom_control");
                checks.check(
                    oom.lines().any(|l| l == "oom_kill_disable 1"),
                    format!("{limit}: memory.oom_control: {oom}"),
                );
            }
        });
        all.absorb(checks);
    }
    if v2 && !relative {
        // The spec: a property the runtime cannot apply MUST be an error.
        let mut c = suite::container();
        suite::edit(&mut c, |config| {
            config["linux"]["resources"] = json!({"memory": {"swappiness": 10}});
        });
        all.fails("swappiness on cgroup v2", &c.create());
    }
    all.done();
}

/// runtime-tools `linux_cgroups_memory`: two limits and three swappiness values, each of them
/// at least once (runtime-tools runs all six pairs).
#[test]
fn linux_cgroups_memory() {
    memory(false, &[(50593792, 10), (151781376, 50), (50593792, 100)]);
}

/// runtime-tools `linux_cgroups_relative_memory`.
#[test]
fn linux_cgroups_relative_memory() {
    memory(true, &[(50593792, 50)]);
}

/// cpu.weight for cpu.shares, which the spec leaves to the runtime on cgroup v2: runc 1.1's
/// linear map (1024 → 39), or runc 1.3's, which keeps the default at the default (1024 → 100).
fn cpu_weights(shares: u64) -> [String; 2] {
    let linear = 1 + ((shares - 2) * 9999) / 262142;
    let log2 = (shares as f64).log2();
    let exponent = (log2 * log2 + 125.0 * log2) / 612.0 - 7.0 / 34.0;
    let logarithmic = 10f64.powf(exponent).ceil() as u64;
    [linear.to_string(), logarithmic.to_string()]
}

fn cpus(relative: bool, cases: &[(u64, u64, i64, &str)]) {
    let Some(Hierarchy {
        mount: cpu_root,
        v2,
        ..
    }) = hierarchy("cpu")
    else {
        return suite::skip("no cpu controller");
    };
    // Realtime settings only where the kernel has them; a small budget, so that the host's
    // other cgroups keep theirs.
    let realtime = cpu_root.join("cpu.rt_runtime_us").exists() && !relative;
    let mut all = Checks::default();
    for &(shares, period, quota, cpus) in cases {
        let mut cpu = json!({"shares": shares, "period": period, "quota": quota, "cpus": cpus,
                             "mems": "0"});
        if realtime {
            cpu["realtimePeriod"] = 1000000.into();
            cpu["realtimeRuntime"] = 10000.into();
        }
        let what = format!("{shares}/{period}/{quota}/{cpus}");
        let checks = cgroup_case(relative, json!({"cpu": cpu}), |pid, checks| {
            let cpu = cgroup_dir(pid, "cpu").expect("a cpu cgroup");
            let cpuset = cgroup_dir(pid, "cpuset").expect("a cpuset cgroup");
            if v2 {
                let weight = read(&cpu, "cpu.weight");
                let weights = cpu_weights(shares);
                checks.check(
                    weights.contains(&weight),
                    format!("{what}: cpu.weight {weight}, expected one of {weights:?}"),
                );
            }
            let mut expect = |dir: &Path, file: &str, value: String| {
                checks.equal(&format!("{what}: {file}"), read(dir, file), value);
            };
            if v2 {
                expect(&cpu, "cpu.max", format!("{quota} {period}"));
            } else {
                expect(&cpu, "cpu.shares", shares.to_string());
                expect(&cpu, "cpu.cfs_period_us", period.to_string());
                expect(&cpu, "cpu.cfs_quota_us", quota.to_string());
                if realtime {
                    expect(&cpu, "cpu.rt_period_us", "1000000".into());
                    expect(&cpu, "cpu.rt_runtime_us", "10000".into());
                }
            }
            expect(&cpuset, "cpuset.cpus", cpus.into());
            expect(&cpuset, "cpuset.mems", "0".into());
        });
        all.absorb(checks);
    }
    all.done();
}

/// The host's CPUs as a cpuset list (`0-1`).
fn all_cpus() -> String {
    let count = std::thread::available_parallelism().map_or(1, |n| n.get());
    if count == 1 {
        "0".into()
    } else {
        format!("0-{}", count - 1)
    }
}

/// runtime-tools `linux_cgroups_cpus`: two values of each setting, every pair of them together
/// (runtime-tools runs all 16 combinations; 4 cover every pair), then a config with an empty
/// `cpu` object, which leaves the kernel's defaults.
#[test]
fn linux_cgroups_cpus() {
    let everything = all_cpus();
    let cases = [
        (1024, 100000, 50000, "0"),
        (1024, 500000, 200000, everything.as_str()),
        (2048, 100000, 200000, everything.as_str()),
        (2048, 500000, 50000, "0"),
    ];
    cpus(false, &cases);

    let Some(v2) = hierarchy("cpu").map(|h| h.v2) else {
        return;
    };
    cgroup_case(false, json!({"cpu": {}}), |pid, checks| {
        let cpu = cgroup_dir(pid, "cpu").expect("a cpu cgroup");
        let cpuset = cgroup_dir(pid, "cpuset").expect("a cpuset cgroup");
        if v2 {
            checks.equal("cpu.weight", read(&cpu, "cpu.weight"), "100".into());
            checks.equal("cpu.max", read(&cpu, "cpu.max"), "max 100000".into());
            checks.equal(
                "cpuset.cpus.effective",
                read(&cpuset, "cpuset.cpus.effective"),
                everything.clone(),
            );
        } else {
            checks.equal("cpu.shares", read(&cpu, "cpu.shares"), "1024".into());
            checks.equal(
                "cpu.cfs_period_us",
                read(&cpu, "cpu.cfs_period_us"),
                "100000".into(),
            );
            checks.equal(
                "cpu.cfs_quota_us",
                read(&cpu, "cpu.cfs_quota_us"),
                "-1".into(),
            );
            checks.equal(
                "cpuset.cpus",
                read(&cpuset, "cpuset.cpus"),
                everything.clone(),
            );
        }
    })
    .done();
}

/// runtime-tools `linux_cgroups_relative_cpus`.
#[test]
fn linux_cgroups_relative_cpus() {
    cpus(true, &[(1024, 100000, 50000, &all_cpus())]);
}

/// Device rules of the device cases: allowed after the default deny-all, in order.
fn device_rules() -> Value {
    json!([
        {"allow": false, "access": "rwm"},
        {"allow": true, "type": "c", "major": 10, "minor": 229, "access": "rwm"},
        {"allow": true, "type": "b", "major": 8, "minor": 20, "access": "rw"},
        {"allow": true, "type": "b", "major": 10, "minor": 200, "access": "r"}
    ])
}

fn devices(relative: bool) {
    let Some(v2) = hierarchy("devices")
        .or_else(|| hierarchy("cpu"))
        .map(|h| h.v2)
    else {
        return suite::skip("no cgroups");
    };
    let resources = json!({"devices": device_rules()});
    let mut checks = cgroup_case(relative, resources, |pid, checks| {
        if v2 {
            return; // the eBPF program has no listing: the container is checked below.
        }
        let dir = cgroup_dir(pid, "devices").expect("a devices cgroup");
        let list = read(&dir, "devices.list");
        for rule in ["c 10:229 rwm", "b 8:20 rw", "b 10:200 r"] {
            checks.check(
                list.lines().any(|l| l == rule),
                format!("{rule} not in devices.list:\n{list}"),
            );
        }
    });
    // What the rules do, on v1 and v2 alike: the allowed character device opens (or fails for
    // want of a driver), one no rule allows is refused.
    let mut c = suite::container();
    suite::edit(&mut c, |config| {
        config["linux"]["resources"] = json!({"devices": device_rules()})
    });
    let out = c.sh("for dev in '10 229' '10 231'; do
             mknod /dev/oci-probe c $dev
             (: < /dev/oci-probe) 2>&1 | grep -q 'not permitted' && echo denied || echo allowed
             rm /dev/oci-probe
         done");
    checks.equal("c 10:229, c 10:231", out.as_str(), "allowed\ndenied\n");
    checks.done();
}

/// runtime-tools `linux_cgroups_devices`.
#[test]
fn linux_cgroups_devices() {
    devices(false);
}

/// runtime-tools `linux_cgroups_relative_devices`.
#[test]
fn linux_cgroups_relative_devices() {
    devices(true);
}

/// The huge page sizes the host has, as the spec names them (`2MB`, `1GB`).
fn huge_page_sizes() -> Vec<String> {
    let entries = fs::read_dir("/sys/kernel/mm/hugepages")
        .into_iter()
        .flatten()
        .flatten();
    let mut sizes: Vec<String> = entries
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            let kib: u64 = name
                .strip_prefix("hugepages-")?
                .strip_suffix("kB")?
                .parse()
                .ok()?;
            Some(match kib {
                k if k >= 1 << 20 => format!("{}GB", k >> 20),
                k if k >= 1 << 10 => format!("{}MB", k >> 10),
                k => format!("{k}KB"),
            })
        })
        .collect();
    sizes.sort();
    sizes
}

fn hugetlb(relative: bool) {
    let Some(v2) = hierarchy("hugetlb").map(|h| h.v2) else {
        return suite::skip("no hugetlb controller");
    };
    let limit: u64 = 2 << 30;
    let mut all = Checks::default();
    for size in huge_page_sizes() {
        let resources = json!({"hugepageLimits": [{"pageSize": size, "limit": limit}]});
        let checks = cgroup_case(relative, resources, |pid, checks| {
            let dir = cgroup_dir(pid, "hugetlb").expect("a hugetlb cgroup");
            let file = match v2 {
                true => format!("hugetlb.{size}.max"),
                false => format!("hugetlb.{size}.limit_in_bytes"),
            };
            checks.equal(&file, read(&dir, &file), limit.to_string());
        });
        all.absorb(checks);
    }
    if !relative {
        let mut c = suite::container();
        suite::edit(&mut c, |config| {
            config["linux"]["resources"] =
                json!({"hugepageLimits": [{"pageSize": "3MB", "limit": (100 * 3) << 20}]});
        });
        all.fails("a 3MB page size", &c.create());
    }
    all.done();
}

/// runtime-tools `linux_cgroups_hugetlb`: a limit for each page size; a page size the host has
/// not is an error.
#[test]
fn linux_cgroups_hugetlb() {
    hugetlb(false);
}

/// runtime-tools `linux_cgroups_relative_hugetlb`.
#[test]
fn linux_cgroups_relative_hugetlb() {
    hugetlb(true);
}

fn network(relative: bool) {
    let resources = json!({"network": {"classID": 255, "priorities": [{"name": "lo",
                                                                        "priority": 10}]}});
    if hierarchy("net_cls").is_none() || hierarchy("net_prio").is_none() {
        // The spec: an error "when the configuration refers to a cgroup controller that is not
        // present" (cgroup v2 has neither).
        let mut c = suite::container();
        suite::edit(&mut c, |config| config["linux"]["resources"] = resources);
        let mut checks = Checks::default();
        checks.fails("network limits without net_cls/net_prio", &c.create());
        return checks.done();
    }
    cgroup_case(relative, resources, |pid, checks| {
        let classid = cgroup_dir(pid, "net_cls").expect("a net_cls cgroup");
        checks.equal("classid", read(&classid, "net_cls.classid"), "255".into());
        let prio = cgroup_dir(pid, "net_prio").expect("a net_prio cgroup");
        let map = read(&prio, "net_prio.ifpriomap");
        checks.check(
            map.lines().any(|l| l == "lo 10"),
            format!("ifpriomap: {map}"),
        );
    })
    .done();
}

/// runtime-tools `linux_cgroups_network`: classID and interface priorities, or an error where
/// the controllers are missing.
#[test]
fn linux_cgroups_network() {
    network(false);
}

/// runtime-tools `linux_cgroups_relative_network`.
#[test]
fn linux_cgroups_relative_network() {
    network(true);
}

/// A whole block device of the host, `major:minor` (runtime-tools assumes an 8:0).
fn block_device() -> Option<String> {
    let entries = fs::read_dir("/sys/block").ok()?.flatten();
    let mut names: Vec<String> = entries
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| {
            !["loop", "ram", "zram", "nbd"]
                .iter()
                .any(|p| n.starts_with(p))
        })
        .collect();
    names.sort();
    let name = names.first()?;
    Some(
        fs::read_to_string(format!("/sys/block/{name}/dev"))
            .ok()?
            .trim()
            .to_string(),
    )
}

fn blkio(relative: bool) {
    let io = hierarchy("blkio").or_else(|| hierarchy("io"));
    let Some(v2) = io.map(|h| h.v2) else {
        return suite::skip("no blkio/io controller");
    };
    let controller = if v2 { "io" } else { "blkio" };
    let Some(device) = block_device() else {
        return suite::skip("the host has no whole block device");
    };
    let (major, minor) = device.split_once(':').unwrap();
    let (major, minor): (u64, u64) = (major.parse().unwrap(), minor.parse().unwrap());
    let rate = 102400;
    let throttle = json!([{"major": major, "minor": minor, "rate": rate}]);
    let throttles = json!({
        "throttleReadBpsDevice": throttle, "throttleWriteBpsDevice": throttle,
        "throttleReadIOPSDevice": throttle, "throttleWriteIOPSDevice": throttle
    });
    let mut weight_file = None;
    let mut checks = cgroup_case(relative, json!({"blockIO": throttles}), |pid, checks| {
        let dir = cgroup_dir(pid, controller).expect("a blkio/io cgroup");
        if v2 {
            let expected = format!("{device} rbps={rate} wbps={rate} riops={rate} wiops={rate}");
            checks.equal("io.max", read(&dir, "io.max"), expected);
        } else {
            for file in [
                "read_bps_device",
                "write_bps_device",
                "read_iops_device",
                "write_iops_device",
            ] {
                let file = format!("blkio.throttle.{file}");
                checks.equal(&file, read(&dir, &file), format!("{device} {rate}"));
            }
        }
        let candidates = [
            "io.bfq.weight",
            "io.weight",
            "blkio.bfq.weight",
            "blkio.weight",
        ];
        weight_file = candidates.into_iter().find(|f| dir.join(f).exists());
    });
    suite::note("leafWeight: no kernel since 5.0 has it (CFQ is gone)");
    let Some(weight_file) = weight_file else {
        suite::note("weight: the host's kernel takes no I/O weight");
        return checks.done();
    };
    let mut weights = throttles.clone();
    weights["weight"] = 500.into();
    let per_device = takes_device_weights(&device);
    if per_device {
        weights["weightDevice"] = json!([{"major": major, "minor": minor, "weight": 500}]);
    } else {
        suite::note(&format!(
            "weightDevice: the I/O scheduler of {device} takes no weight"
        ));
    }
    let weighted = cgroup_case(relative, json!({"blockIO": weights}), |pid, checks| {
        let dir = cgroup_dir(pid, controller).expect("a blkio/io cgroup");
        let value = read(&dir, weight_file);
        // io.weight takes 1..10000 (runc and crun convert 500 to 4950), the others 10..1000.
        let expected = if weight_file == "io.weight" {
            "4950"
        } else {
            "500"
        };
        checks.check(
            value
                .lines()
                .all(|l| l.split_whitespace().last() == Some(expected)),
            format!("{weight_file}: {value:?}, expected {expected} (and for {device})"),
        );
        if per_device {
            checks.check(
                value.lines().any(|l| l.starts_with(&device)),
                format!("{weight_file}: no weight for {device}: {value:?}"),
            );
        }
    });
    checks.absorb(weighted);
    checks.done();
}

/// Whether the block device's I/O scheduler takes weights per device (BFQ's).
fn takes_device_weights(device: &str) -> bool {
    let scheduler = fs::read_to_string(format!("/sys/dev/block/{device}/queue/scheduler"));
    scheduler.is_ok_and(|s| s.contains("[bfq]"))
}

/// runtime-tools `linux_cgroups_blkio`: throttling of a block device of the host's, and the
/// weights where its I/O scheduler takes them.
#[test]
fn linux_cgroups_blkio() {
    blkio(false);
}

/// runtime-tools `linux_cgroups_relative_blkio`.
#[test]
fn linux_cgroups_relative_blkio() {
    blkio(true);
}

/// runtime-tools `delete_resources`: delete removes the cgroup create made.
#[test]
fn delete_resources() {
    pids(false);
}

/// runtime-tools `delete_only_create_resources`: a cgroup the runtime did not create survives
/// delete, even with the container's process moved into it.
#[test]
fn delete_only_create_resources() {
    let Some(Hierarchy { mount, .. }) = hierarchy("pids") else {
        return suite::skip("no pids controller");
    };
    let mut c = suite::container();
    c.configure(|spec| set_args(spec, &["true"]));
    let own = mount.join(format!("oci-own-{}", c.id));
    fs::create_dir(&own).unwrap();
    let _remove_own = OwnCgroup(own.clone());
    c.create().success();
    let pid = c.state_json()["pid"].as_i64().unwrap();
    fs::write(own.join("cgroup.procs"), pid.to_string()).unwrap();
    c.start().success();
    assert!(reaches(&c, &["stopped"]), "the container did not stop");
    c.delete().success();
    assert!(own.exists(), "delete removed a cgroup it did not create");
}

/// A cgroup the test made, removed on drop.
struct OwnCgroup(PathBuf);

impl Drop for OwnCgroup {
    fn drop(&mut self) {
        remove_tree(&self.0);
    }
}
