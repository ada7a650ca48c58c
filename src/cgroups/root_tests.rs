//! Tests that create real cgroups under `/berth-test-<pid>-<n>` (absolute, so never below the
//! test runner's own cgroup). They need root and skip, saying why, without it; a controller the
//! host lacks skips only the checks that need it.

use std::ffi::CString;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

use oci_spec::runtime::LinuxResources;

use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::thread::sleep;

use super::layout::{self, Layout};
use super::*;

static COUNTER: AtomicUsize = AtomicUsize::new(0);

fn is_root() -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    eprintln!("skipped: creating cgroups needs root");
    false
}

/// A test cgroup that is killed and removed on drop, even when the test fails.
struct TestCgroup {
    manager: Box<dyn CgroupManager>,
    children: Vec<Child>,
}

impl TestCgroup {
    fn new() -> TestCgroup {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let path = format!("/berth-test-{}-{n}", std::process::id());
        let manager = for_new_container(Some(&path), "test", CgroupOptions::default()).unwrap();
        Self::from_manager(manager)
    }

    /// The v2 driver on whatever cgroup2 mount the host has (the hybrid host's unified one).
    fn v2() -> Option<TestCgroup> {
        let unified = match Layout::detect().unwrap() {
            Layout::V2 { unified } | Layout::Hybrid { unified, .. } => unified,
            Layout::V1 { .. } => {
                eprintln!("skipped: no cgroup2 mount on this host");
                return None;
            }
        };
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let cgroup = format!("/berth-test-{}-{n}", std::process::id());
        let handle = CgroupHandle {
            hierarchy: Version::V2,
            cgroups_path: cgroup.clone(),
            dirs: vec![CgroupDir {
                version: Version::V2,
                path: layout::cgroup_dir(&unified.mount_point, &unified.mount_root, &cgroup)
                    .unwrap(),
                mount_point: unified.mount_point,
                controllers: Vec::new(),
                created: false,
            }],
            rootless: false,
            systemd: None,
        };
        Some(Self::from_manager(from_handle(&handle).unwrap()))
    }

    fn from_manager(mut manager: Box<dyn CgroupManager>) -> TestCgroup {
        if let Err(e) = manager.create() {
            let _ = manager.remove();
            panic!("create: {e:#}");
        }
        TestCgroup {
            manager,
            children: Vec::new(),
        }
    }

    fn dir(&self, controller: &str) -> Option<PathBuf> {
        let handle = self.manager.handle();
        let dir = handle.dirs.iter().find(|d| match d.version {
            Version::V1 => d.controllers.iter().any(|c| c == controller),
            Version::V2 => v2::controllers(&d.path)
                .unwrap()
                .iter()
                .any(|c| c == controller),
        });
        dir.map(|d| d.path.clone())
    }

    fn read(&self, controller: &str, file: &str) -> Option<String> {
        let dir = self.dir(controller)?;
        Some(fs::read(&dir, file).unwrap().trim().to_string())
    }

    /// Runs `argv` as a child that joins this cgroup (every hierarchy) before it execs.
    fn spawn(&mut self, argv: &[&str]) -> std::io::Result<&mut Child> {
        let procs: Vec<CString> = self
            .manager
            .handle()
            .dirs
            .iter()
            .map(|d| {
                CString::new(
                    d.path
                        .join("cgroup.procs")
                        .into_os_string()
                        .into_encoded_bytes(),
                )
            })
            .collect::<Result<_, _>>()
            .unwrap();
        let mut command = Command::new(argv[0]);
        command
            .args(&argv[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        // SAFETY: the hook only calls async-signal-safe open/write/close on prebuilt strings.
        unsafe {
            command.pre_exec(move || {
                for path in &procs {
                    let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                    if fd < 0 || libc::write(fd, c"0".as_ptr().cast(), 1) != 1 {
                        return Err(std::io::Error::last_os_error());
                    }
                    libc::close(fd);
                }
                Ok(())
            });
        }
        self.children.push(command.spawn()?);
        Ok(self.children.last_mut().unwrap())
    }

    fn run(&mut self, argv: &[&str]) -> bool {
        self.spawn(argv).unwrap().wait().unwrap().success()
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        let _ = self.manager.thaw();
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Err(e) = self.manager.remove() {
            eprintln!("cleanup failed: {e:#}");
        }
    }
}

fn resources(json: &str) -> LinuxResources {
    serde_json::from_str(json).unwrap()
}

#[test]
fn lifecycle_apply_freeze_stats_kill_remove() {
    if !is_root() {
        return;
    }
    let mut cg = TestCgroup::new();
    let dirs: Vec<PathBuf> = cg
        .manager
        .handle()
        .dirs
        .iter()
        .map(|d| d.path.clone())
        .collect();
    assert!(dirs.iter().all(|d| d.is_dir()));
    let limits = r#"{"memory":{"limit":67108864},"cpu":{"shares":512,"quota":50000,
                   "period":100000,"cpus":"0"},"pids":{"limit":10}}"#;
    cg.manager.apply(&resources(limits)).unwrap();
    match cg.manager.handle().hierarchy {
        Version::V1 => {
            assert_eq!(
                cg.read("memory", "memory.limit_in_bytes").unwrap(),
                "67108864"
            );
            assert_eq!(cg.read("cpu", "cpu.shares").unwrap(), "512");
            assert_eq!(cg.read("cpu", "cpu.cfs_quota_us").unwrap(), "50000");
        }
        Version::V2 => {
            assert_eq!(cg.read("memory", "memory.max").unwrap(), "67108864");
            assert_eq!(cg.read("cpu", "cpu.weight").unwrap(), "59");
            assert_eq!(cg.read("cpu", "cpu.max").unwrap(), "50000 100000");
        }
    }
    assert_eq!(cg.read("pids", "pids.max").unwrap(), "10");
    assert_eq!(cg.read("cpuset", "cpuset.cpus").unwrap(), "0");

    let pid = cg.spawn(&["sleep", "100"]).unwrap().id() as i32;
    assert_eq!(cg.manager.pids().unwrap(), [pid]);
    cg.manager.freeze().unwrap();
    assert!(cg.manager.is_frozen().unwrap());
    cg.manager.thaw().unwrap();
    assert!(!cg.manager.is_frozen().unwrap());

    let stats = cg.manager.stats().unwrap();
    assert_eq!((stats.pids.current, stats.pids.limit), (1, 10));
    assert_eq!(stats.memory.usage.limit, 67108864);
    assert_eq!(stats.cpuset.cpus, [0]);
    assert_eq!(stats.memory.event_count.oom_kill, 0);

    cg.manager.kill_all(SignalNumber::KILL).unwrap();
    let status = cg.children[0].wait().unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9)
    );
    cg.manager.remove().unwrap();
    assert!(dirs.iter().all(|d| !d.exists()));
}

#[test]
fn tight_limits_still_run_a_process_and_stop_a_fork() {
    if !is_root() {
        return;
    }
    let mut cg = TestCgroup::new();
    let limits = r#"{"memory":{"limit":4194304},"pids":{"limit":1}}"#;
    cg.manager.apply(&resources(limits)).unwrap();
    assert!(cg.run(&["/bin/true"]), "a single process fits");
    assert!(
        !cg.run(&["/bin/sh", "-c", "/bin/true & wait $!"]),
        "a fork past pids.max"
    );
}

#[test]
fn absent_fields_change_nothing() {
    if !is_root() {
        return;
    }
    let cg = TestCgroup::new();
    cg.manager
        .apply(&resources(r#"{"pids":{"limit":7}}"#))
        .unwrap();
    cg.manager
        .apply(&resources(r#"{"memory":{},"cpu":{},"pids":{"limit":0}}"#))
        .unwrap();
    assert_eq!(cg.read("pids", "pids.max").unwrap(), "7");
}

#[test]
fn v1_devices_apply_in_order_with_default_deny() {
    if !is_root() {
        return;
    }
    let mut cg = TestCgroup::new();
    if cg
        .dir("devices")
        .filter(|d| d.join("devices.list").exists())
        .is_none()
    {
        eprintln!("skipped: no v1 devices hierarchy");
        return;
    }
    let rules = r#"{"devices":[{"allow":false,"access":"rwm"},
        {"allow":true,"type":"c","major":1,"minor":3,"access":"rwm"},
        {"allow":true,"type":"c","major":1,"minor":5,"access":"rwm"},
        {"allow":false,"type":"c","major":1,"minor":5,"access":"rwm"}]}"#;
    cg.manager.apply(&resources(rules)).unwrap();
    assert_eq!(cg.read("devices", "devices.list").unwrap(), "c 1:3 rwm");
    assert!(cg.run(&["/bin/sh", "-c", "true </dev/null"]));
    assert!(!cg.run(&["/bin/sh", "-c", "true </dev/zero"]));
}

#[test]
fn v2_device_program_denies_what_the_rules_do_not_allow() {
    if !is_root() {
        return;
    }
    let Some(mut cg) = TestCgroup::v2() else {
        return;
    };
    let rules = r#"{"devices":[{"allow":false,"access":"rwm"},
        {"allow":true,"type":"c","major":1,"minor":3,"access":"rwm"}]}"#;
    cg.manager.apply(&resources(rules)).unwrap();
    assert!(cg.run(&["/bin/sh", "-c", "true </dev/null"]));
    assert!(!cg.run(&["/bin/sh", "-c", "true </dev/zero"]));
    // Replacing the program (update) leaves exactly one attached.
    let allow_zero = r#"{"devices":[{"allow":true,"type":"c","major":1,"minor":5,"access":"r"}]}"#;
    cg.manager.apply(&resources(allow_zero)).unwrap();
    assert!(cg.run(&["/bin/sh", "-c", "true </dev/zero"]));
    let fd = std::fs::File::open(cg.manager.handle().dirs[0].path.clone()).unwrap();
    assert_eq!(bpf::attached(&fd).unwrap().len(), 1);
}

#[test]
fn v2_freeze_and_cgroup_kill() {
    if !is_root() {
        return;
    }
    let Some(mut cg) = TestCgroup::v2() else {
        return;
    };
    cg.spawn(&["sleep", "100"]).unwrap();
    cg.manager.freeze().unwrap();
    assert!(cg.manager.is_frozen().unwrap());
    cg.manager.thaw().unwrap();
    cg.manager.kill_all(SignalNumber::KILL).unwrap();
    let status = cg.children[0].wait().unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9)
    );
    assert!(cg.manager.pids().unwrap().is_empty());
}

#[test]
fn hugetlb_limits_land_where_the_host_has_hugetlb() {
    if !is_root() {
        return;
    }
    let cg = TestCgroup::new();
    let limits = r#"{"hugepageLimits":[{"pageSize":"2MB","limit":4194304}]}"#;
    if !Path::new("/sys/kernel/mm/hugepages/hugepages-2048kB").exists() {
        eprintln!("skipped: no 2MB hugepages on this host");
        return;
    }
    cg.manager.apply(&resources(limits)).unwrap();
    let dir = cg
        .dir("hugetlb")
        .expect("hugetlb was applied, so it has a directory");
    let v1_file = dir.join("hugetlb.2MB.limit_in_bytes");
    let file = if v1_file.exists() {
        v1_file
    } else {
        dir.join("hugetlb.2MB.max")
    };
    assert_eq!(std::fs::read_to_string(file).unwrap().trim(), "4194304");
    assert!(cg.manager.stats().unwrap().hugetlb.contains_key("2MB"));
}

#[test]
fn errors_name_the_field() {
    if !is_root() {
        return;
    }
    let cg = TestCgroup::new();
    let err = |json: &str| format!("{:#}", cg.manager.apply(&resources(json)).unwrap_err());
    let e = err(r#"{"hugepageLimits":[{"pageSize":"3MB","limit":1}]}"#);
    assert!(e.contains("hugepageLimits") && e.contains("3MB"), "{e}");
    let e = err(r#"{"unified":{"cgroup.procs":"1"}}"#);
    assert!(e.contains("linux.resources.unified"), "{e}");
    let e = err(r#"{"unified":{"bogus.key":"1"}}"#);
    assert!(e.contains("bogus.key"), "{e}");
    if cg.dir("net_cls").is_none() {
        let e = err(r#"{"network":{"classID":1}}"#);
        assert!(e.contains("linux.resources.network.classID"), "{e}");
    } else {
        eprintln!("net_cls is mounted here: the missing-controller error is not checked");
    }
}

fn host_has_swap() -> bool {
    let swaps = std::fs::read_to_string("/proc/swaps").unwrap();
    swaps.lines().count() > 1
}

#[test]
fn an_allocation_past_the_memory_limit_is_oom_killed_and_reported() {
    if !is_root() {
        return;
    }
    let mut cg = TestCgroup::new();
    if cg.dir("memory").is_none() {
        eprintln!("skipped: no memory controller");
        return;
    }
    let limits = if host_has_swap() {
        r#"{"memory":{"limit":8388608,"swap":8388608}}"#
    } else {
        r#"{"memory":{"limit":8388608}}"#
    };
    cg.manager.apply(&resources(limits)).unwrap();
    let mut watch = cg.manager.watch_oom().unwrap();
    let hog = r#"x=$(head -c 67108864 /dev/zero | tr '\0' a); echo ${#x}"#;
    assert!(!cg.run(&["/bin/sh", "-c", hog]), "the hog must be killed");
    let mut fds = [nix::poll::PollFd::new(
        watch.as_fd(),
        nix::poll::PollFlags::POLLIN,
    )];
    assert_eq!(
        nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(2000u16)).unwrap(),
        1
    );
    assert!(watch.read().unwrap().unwrap() >= 1);
    assert!(cg.manager.stats().unwrap().memory.event_count.oom_kill >= 1);
}

#[test]
fn memory_and_swap_can_shrink_and_grow() {
    if !is_root() {
        return;
    }
    let cg = TestCgroup::new();
    let (limit_file, swap_file) = match cg.manager.handle().hierarchy {
        Version::V1 => ("memory.limit_in_bytes", "memory.memsw.limit_in_bytes"),
        Version::V2 => ("memory.max", "memory.swap.max"),
    };
    let Some(dir) = cg.dir("memory").filter(|d| d.join(swap_file).exists()) else {
        eprintln!("skipped: no memory controller with swap accounting");
        return;
    };
    let mib = 1 << 20;
    for (limit, swap) in [(64, 128), (32, 48), (256, 512)] {
        let json = format!(
            r#"{{"memory":{{"limit":{},"swap":{}}}}}"#,
            limit * mib,
            swap * mib
        );
        cg.manager.apply(&resources(&json)).unwrap();
        let read = |f: &str| fs::read(&dir, f).unwrap().trim().parse::<i64>().unwrap();
        assert_eq!(read(limit_file), limit * mib);
        let expected_swap = match cg.manager.handle().hierarchy {
            Version::V1 => swap * mib,
            Version::V2 => (swap - limit) * mib,
        };
        assert_eq!(read(swap_file), expected_swap);
    }
}

#[test]
fn a_frozen_cgroup_makes_no_progress() {
    if !is_root() {
        return;
    }
    let mut cg = TestCgroup::new();
    cg.spawn(&["/bin/sh", "-c", "while :; do :; done"]).unwrap();
    let cpu_time = |cg: &TestCgroup| cg.manager.stats().unwrap().cpu.usage.total;
    let pause = std::time::Duration::from_millis(200);
    cg.manager.freeze().unwrap();
    // cgroup.events says frozen once the task has entered the freezer trap, before it has
    // switched out and had its last slice accounted: under QEMU TCG that tail spanned 5 ms.
    sleep(pause);
    let frozen_at = cpu_time(&cg);
    sleep(pause);
    assert_eq!(cpu_time(&cg), frozen_at, "no cpu time while frozen");
    cg.manager.thaw().unwrap();
    sleep(pause);
    assert!(cpu_time(&cg) > frozen_at, "runs again once thawed");
}

/// Some block device of this host, for throttle rules (a VM booted from 9p may have none).
fn any_block_device() -> Option<String> {
    let mut devices: Vec<String> = std::fs::read_dir("/sys/dev/block")
        .ok()?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    devices.sort();
    devices.into_iter().next()
}

/// Each field either reads back from its file or, where the driver has no such knob, fails
/// with an error naming the field.
#[test]
fn each_field_reads_back_or_is_refused_by_name() {
    if !is_root() {
        return;
    }
    let cg = TestCgroup::new();
    let v1 = cg.manager.handle().hierarchy == Version::V1;
    // (resources, controller, file on v1, expected, file on v2, expected; "" = refused)
    let mut cases = vec![
        (
            r#"{"memory":{"reservation":33554432}}"#.to_string(),
            "memory",
            "memory.soft_limit_in_bytes",
            "33554432",
            "memory.low",
            "33554432",
        ),
        (
            r#"{"memory":{"swappiness":30}}"#.into(),
            "memory",
            "memory.swappiness",
            "30",
            "",
            "",
        ),
        (
            r#"{"cpu":{"quota":50000,"period":100000,"burst":1000}}"#.into(),
            "cpu",
            "cpu.cfs_burst_us",
            "1000",
            "cpu.max.burst",
            "1000",
        ),
        (
            r#"{"cpu":{"idle":1}}"#.into(),
            "cpu",
            "cpu.idle",
            "1",
            "cpu.idle",
            "1",
        ),
        (
            r#"{"cpu":{"realtimePeriod":1000000}}"#.into(),
            "cpu",
            "cpu.rt_period_us",
            "1000000",
            "",
            "",
        ),
        (
            r#"{"blockIO":{"weight":300}}"#.into(),
            "blkio",
            "blkio.bfq.weight",
            "300",
            "io.weight",
            "default 2930",
        ),
    ];
    if let Some(dev) = any_block_device() {
        cases.push((
            format!(r#"{{"blockIO":{{"throttleReadBpsDevice":[{{"major":{},"minor":{},"rate":1048576}}]}}}}"#,
                dev.split(':').next().unwrap(), dev.split(':').nth(1).unwrap()),
            "blkio", "blkio.throttle.read_bps_device", "",
            "io.max", "",
        ));
    } else {
        eprintln!("no block device: throttle rules not checked");
    }
    for (json, controller, v1_file, v1_value, v2_file, v2_value) in cases {
        let v2_controller = v2::controller_name(controller);
        let Some(dir) = cg.dir(controller).or_else(|| cg.dir(v2_controller)) else {
            eprintln!("{controller} not available: {json} not checked");
            continue;
        };
        let (file, expected) = match (v1, v2_file) {
            (true, _) => (v1_file, v1_value),
            // With BFQ as the disk scheduler the blkio-range weight goes to io.bfq.weight.
            (false, "io.weight") if dir.join("io.bfq.weight").exists() => {
                ("io.bfq.weight", "default 300")
            }
            (false, _) => (v2_file, v2_value),
        };
        let result = cg.manager.apply(&resources(&json));
        if file.is_empty() {
            let err = format!("{:#}", result.unwrap_err());
            assert!(err.contains("linux.resources."), "{json}: {err}");
            continue;
        }
        if !dir.join(file).exists() {
            eprintln!("{file} does not exist here: {json} not checked");
            continue;
        }
        result.unwrap_or_else(|e| panic!("{json}: {e:#}"));
        let text = fs::read(&dir, file).unwrap();
        if expected.is_empty() {
            // Throttle files list "major:minor value"; check ours is there.
            assert!(text.contains("1048576"), "{json}: {file} = {text:?}");
        } else {
            assert_eq!(text.trim(), expected, "{json}: {file}");
        }
    }
}

#[test]
fn unified_keys_go_to_the_cgroup2_directory() {
    if !is_root() {
        return;
    }
    let cg = TestCgroup::new();
    let handle = cg.manager.handle();
    let Some(dir) = handle.dirs.iter().find(|d| d.version == Version::V2) else {
        let err = cg
            .manager
            .apply(&resources(r#"{"unified":{"cgroup.max.depth":"2"}}"#));
        assert!(format!("{:#}", err.unwrap_err()).contains("linux.resources.unified"));
        return;
    };
    let json = r#"{"unified":{"cgroup.max.descendants":"3"}}"#;
    cg.manager.apply(&resources(json)).unwrap();
    assert_eq!(
        fs::read(&dir.path, "cgroup.max.descendants")
            .unwrap()
            .trim(),
        "3"
    );
    if handle.hierarchy == Version::V1 {
        // On a hybrid host memory is a v1 controller: its v2 keys cannot apply.
        let err = cg
            .manager
            .apply(&resources(r#"{"unified":{"memory.max":"1"}}"#));
        let err = format!("{:#}", err.unwrap_err());
        assert!(err.contains("memory.max") && err.contains("v1"), "{err}");
    }
}
