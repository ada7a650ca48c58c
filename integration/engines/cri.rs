//! containerd's CRI plugin running the runtime under test: what the kubelet asks of a node's
//! runtime, sent as the kubelet sends it (gRPC, CRI `runtime.v1`), to a private containerd
//! configured with README.md's snippet (see containerd.rs). Pods get their network from CNI's
//! `ptp` plugin inside containerd's private network namespace; the sandbox image is busybox
//! sleeping, as pause does.

use std::path::Path;
use std::time::{Duration, Instant};

use k8s_cri::v1::{
    Capability, ContainerConfig, ContainerMetadata, ContainerState, ContainerStatus, DnsConfig,
    ImageSpec, Int64Value, LinuxContainerConfig, LinuxContainerResources,
    LinuxContainerSecurityContext, LinuxPodSandboxConfig, LinuxSandboxSecurityContext,
    NamespaceMode, NamespaceOption, PodSandboxConfig, PodSandboxMetadata, PodSandboxState,
    SecurityProfile, security_profile::ProfileType,
};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::common;
use crate::containerd::{Containerd, Images, images};
use crate::cri_client::Cri;
use crate::harness::{CgroupDriver, IMAGE, Runtime, cgroup, engine_scenarios};

/// The DNS search domain pods get; it shows in their /etc/resolv.conf.
const DNS_SEARCH: &str = "berth.test";

/// The runtime handler README.md's snippet defines (a RuntimeClass's `handler`).
const README_HANDLER: &str = "berth";

/// A node as the kubelet sees it: a containerd configured with README.md's snippet for the
/// runtime under test, and a CRI connection to it.
pub struct Node {
    containerd: Containerd,
    cri: Cri,
}

impl Node {
    pub fn new(images: &Images, runtime: Runtime) -> Self {
        Self::with_driver(images, runtime, CgroupDriver::Cgroupfs)
    }

    fn with_driver(images: &Images, runtime: Runtime, driver: CgroupDriver) -> Self {
        let containerd = Containerd::with_driver(images, runtime, driver);
        let cri = Cri::connect(&containerd.socket());
        Node { containerd, cri }
    }

    /// RunPodSandbox as the kubelet sends it, with RuntimeClass handler `handler` ("" is
    /// containerd's default runtime, berth by README.md's snippet).
    #[track_caller]
    fn run_pod(&self, handler: &str) -> Pod<'_> {
        let name = "pod";
        let config = PodSandboxConfig {
            metadata: Some(PodSandboxMetadata {
                name: name.to_string(),
                uid: self.containerd.name.clone(),
                namespace: "berth-test".to_string(),
                attempt: 0,
            }),
            hostname: "berth-test-pod".to_string(),
            // As the kubelet sends for every pod (containerd copies the host's otherwise).
            dns_config: Some(DnsConfig {
                searches: vec![DNS_SEARCH.to_string()],
                ..Default::default()
            }),
            log_directory: self.containerd.pod_log_dir(name).display().to_string(),
            linux: Some(LinuxPodSandboxConfig {
                cgroup_parent: self.containerd.pods_cgroup(),
                security_context: Some(LinuxSandboxSecurityContext {
                    namespace_options: Some(kubelet_namespaces()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let id = self
            .cri
            .run_pod_sandbox(&config, handler)
            .unwrap_or_else(|e| panic!("RunPodSandbox: {e}\n{}", self.containerd.log_tail()));
        Pod {
            node: self,
            id,
            config,
        }
    }
}

/// A pod sandbox on a [`Node`].
struct Pod<'a> {
    node: &'a Node,
    id: String,
    config: PodSandboxConfig,
}

impl Pod<'_> {
    /// Creates and starts a container running `args` (`adjust` changes its config first).
    fn start_container(
        &self,
        name: &str,
        args: &[&str],
        adjust: impl FnOnce(&mut ContainerConfig),
    ) -> String {
        let mut config = ContainerConfig {
            metadata: Some(ContainerMetadata {
                name: name.to_string(),
                attempt: 0,
            }),
            image: Some(ImageSpec {
                image: IMAGE.to_string(),
                ..Default::default()
            }),
            command: args.iter().map(|arg| arg.to_string()).collect(),
            log_path: format!("{name}.log"),
            linux: Some(LinuxContainerConfig {
                security_context: Some(LinuxContainerSecurityContext {
                    namespace_options: Some(kubelet_namespaces()),
                    ..Default::default()
                }),
                resources: None,
            }),
            ..Default::default()
        };
        adjust(&mut config);
        let id = self
            .node
            .cri
            .create_container(&self.id, &config, &self.config)
            .unwrap_or_else(|e| panic!("CreateContainer: {e}"));
        self.node
            .cri
            .start_container(&id)
            .unwrap_or_else(|e| panic!("StartContainer: {e}"));
        id
    }

    fn status(&self, container_id: &str) -> ContainerStatus {
        self.node
            .cri
            .container_status(container_id)
            .unwrap_or_else(|e| panic!("ContainerStatus: {e}"))
    }

    /// Waits until the container has exited (containerd has handled its exit) and returns its
    /// status.
    #[track_caller]
    fn wait_for_exit(&self, container_id: &str) -> ContainerStatus {
        let deadline = Instant::now() + common::COMMAND_TIMEOUT;
        loop {
            let status = self.status(container_id);
            if status.state() == ContainerState::ContainerExited {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "container still {:?}; containerd log:\n{}",
                status.state(),
                self.node.containerd.log_tail()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Host pids of container or sandbox `id` (its cgroup is below the pods' parent).
    fn pids_of(&self, id: &str) -> Vec<i32> {
        let containerd = &self.node.containerd;
        containerd.cgroup_pids(&containerd.container_cgroup(id))
    }

    /// The kubelet's teardown: remove the containers, stop and remove the sandbox (then nothing
    /// of the pod may be left: see [`Containerd`]'s drop).
    #[track_caller]
    fn remove(self, container_ids: &[&str]) {
        for id in container_ids {
            self.node
                .cri
                .remove_container(id)
                .unwrap_or_else(|e| panic!("RemoveContainer: {e}"));
        }
        self.node
            .cri
            .stop_pod_sandbox(&self.id)
            .unwrap_or_else(|e| panic!("StopPodSandbox: {e}\n{}", self.node.containerd.log_tail()));
        self.node
            .cri
            .remove_pod_sandbox(&self.id)
            .unwrap_or_else(|e| panic!("RemovePodSandbox: {e}"));
    }
}

/// The whole pod lifecycle, with the RuntimeClass handler README.md's snippet defines: the
/// sandbox gets an address, a container runs in the pod's network namespace with the pod's
/// hostname and resolv.conf, ExecSync returns exit code and output, ContainerStats reads its
/// cgroup, and StopContainer's SIGTERM ends it.
pub fn pod_lifecycle(node: &Node) {
    let pod = node.run_pod(README_HANDLER);
    let sandbox = node
        .cri
        .pod_sandbox_status(&pod.id)
        .expect("PodSandboxStatus");
    assert_eq!(sandbox.state(), PodSandboxState::SandboxReady);
    assert_eq!(sandbox.runtime_handler, README_HANDLER);
    let pod_ip = sandbox.network.expect("the pod has a network").ip;
    assert!(!pod_ip.is_empty(), "the pod has no address");

    let script = "trap 'exit 0' TERM; while :; do sleep 0.1; done";
    let container = pod.start_container("app", &["sh", "-c", script], |_| {});
    assert_eq!(
        pod.status(&container).state(),
        ContainerState::ContainerRunning
    );

    let exec = node
        .cri
        .exec_sync(
            &container,
            &[
                "sh",
                "-c",
                "hostname; grep search /etc/resolv.conf; ip -o -4 addr show eth0; echo oops >&2; exit 3",
            ],
            10,
        )
        .expect("ExecSync");
    let stdout = String::from_utf8_lossy(&exec.stdout);
    assert_eq!(exec.exit_code, 3, "{exec:?}");
    assert!(
        stdout.starts_with(&format!("berth-test-pod\nsearch {DNS_SEARCH}\n")),
        "{stdout}"
    );
    assert!(stdout.contains(&format!("inet {pod_ip}/")), "{stdout}");
    assert_eq!(String::from_utf8_lossy(&exec.stderr), "oops\n");

    let stats = node
        .cri
        .container_stats(&container)
        .expect("ContainerStats");
    let memory = stats
        .memory
        .and_then(|m| m.working_set_bytes)
        .map(|v| v.value);
    assert!(
        memory.is_some_and(|bytes| bytes > 0),
        "memory stats: {memory:?}"
    );
    let cpu = stats
        .cpu
        .and_then(|c| c.usage_core_nano_seconds)
        .map(|v| v.value);
    assert!(cpu.is_some_and(|ns| ns > 0), "cpu stats: {cpu:?}");

    node.cri
        .stop_container(&container, 10)
        .expect("StopContainer");
    let status = pod.status(&container);
    assert_eq!(status.state(), ContainerState::ContainerExited);
    assert_eq!((status.exit_code, status.reason.as_str()), (0, "Completed"));
    pod.remove(&[&container]);
}

/// A container that exits by itself shows as exited with its code, and what it printed is in
/// its log (what `kubectl logs` reads): on every exit containerd sends `kill --all ID 9` to the
/// stopped container, which must succeed as with runc (issue 8, failure 5: otherwise the
/// container shows as running forever).
pub fn container_exit_is_reported(node: &Node) {
    let pod = node.run_pod("");
    let script = "echo bye; echo oops >&2; exit 3";
    let failing = pod.start_container("failing", &["sh", "-c", script], |_| {});
    let done = pod.start_container("done", &["true"], |_| {});
    let status = pod.wait_for_exit(&failing);
    assert_eq!((status.exit_code, status.reason.as_str()), (3, "Error"));
    // CRI's log format: "<time> <stream> F <line>".
    let log = std::fs::read_to_string(&status.log_path).expect("read the container's log");
    let lines: Vec<&str> = log
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(_, rest)| rest)
        .collect();
    assert!(
        lines.contains(&"stdout F bye") && lines.contains(&"stderr F oops"),
        "{log}"
    );
    let status = pod.wait_for_exit(&done);
    assert_eq!((status.exit_code, status.reason.as_str()), (0, "Completed"));
    pod.remove(&[&failing, &done]);
}

/// StopPodSandbox after the sandbox's process died, retried as the kubelet retries it: containerd
/// kills the stopped sandbox (`kill --all ID 9` as it handles the exit, `kill ID 9` to stop it)
/// and must be told, in runc's words, that it is already gone (issue 8, failure 4: otherwise
/// every retry fails and Kubernetes can never remove the pod). A single failure can be
/// containerd's own race: the stop's kill reaching a shim that the exit handler just closed.
pub fn stop_pod_after_sandbox_exited(node: &Node) {
    let pod = node.run_pod("");
    let sandbox_pids = pod.pids_of(&pod.id);
    assert_eq!(sandbox_pids.len(), 1, "the sandbox runs one process");
    kill_and_wait(sandbox_pids[0]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while let Err(e) = node.cri.stop_pod_sandbox(&pod.id) {
        assert!(
            Instant::now() < deadline,
            "StopPodSandbox keeps failing: {e}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    pod.remove(&[]);
}

/// StopContainer of a process that ignores SIGTERM (a pid 1 without a handler) kills it after
/// the grace period.
pub fn stop_container_after_grace_period(node: &Node) {
    let pod = node.run_pod("");
    let container = pod.start_container("stubborn", &["sleep", "1000"], |_| {});
    node.cri
        .stop_container(&container, 1)
        .expect("StopContainer");
    let status = pod.wait_for_exit(&container);
    assert_eq!((status.exit_code, status.reason.as_str()), (137, "Error"));
    pod.remove(&[&container]);
}

/// A restricted container as a Pod's securityContext asks for it: non-root user, read-only
/// rootfs, all capabilities dropped, containerd's default seccomp profile, no_new_privs; ExecSync
/// processes get the same.
pub fn security_context(node: &Node) {
    let pod = node.run_pod("");
    let container = pod.start_container("restricted", &["sleep", "1000"], |config| {
        let security = security_context_of(config);
        security.run_as_user = Some(Int64Value { value: 1000 });
        security.readonly_rootfs = true;
        security.no_new_privs = true;
        security.capabilities = Some(Capability {
            drop_capabilities: vec!["ALL".to_string()],
            ..Default::default()
        });
        security.seccomp = Some(SecurityProfile {
            profile_type: ProfileType::RuntimeDefault.into(),
            ..Default::default()
        });
    });
    let script = "id -u; grep -E '^(CapEff|NoNewPrivs|Seccomp):' /proc/self/status; touch /x";
    let exec = node
        .cri
        .exec_sync(&container, &["sh", "-c", script], 10)
        .expect("ExecSync");
    let stdout = String::from_utf8_lossy(&exec.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines,
        [
            "1000",
            "CapEff:\t0000000000000000",
            "NoNewPrivs:\t1",
            "Seccomp:\t2"
        ],
        "{exec:?}"
    );
    assert_ne!(exec.exit_code, 0, "touch on a read-only rootfs succeeded");
    assert!(
        String::from_utf8_lossy(&exec.stderr).contains("Read-only file system"),
        "{exec:?}"
    );
    node.cri
        .stop_container(&container, 0)
        .expect("StopContainer");
    pod.remove(&[&container]);
}

/// A container's resources reach the container's cgroup, and UpdateContainerResources (the
/// runtime's `update`) changes them.
pub fn resources_and_update(node: &Node) {
    let pod = node.run_pod("");
    let mib = 1024 * 1024;
    let container = pod.start_container("limited", &["sleep", "1000"], |config| {
        config.linux.as_mut().expect("linux config").resources = Some(LinuxContainerResources {
            memory_limit_in_bytes: 64 * mib,
            cpu_shares: 512,
            cpu_period: 100_000,
            cpu_quota: 50_000,
            ..Default::default()
        });
    });
    let pid = pod.pids_of(&container)[0];
    let (memory_file, cpu_file, cpu_quota) = if cgroup::is_v1("memory") {
        ("memory.limit_in_bytes", "cpu.cfs_quota_us", "50000")
    } else {
        ("memory.max", "cpu.max", "50000 100000")
    };
    let memory_limit = || cgroup::read(pid, "memory", memory_file);
    assert_eq!(memory_limit(), (64 * mib).to_string());
    assert_eq!(cgroup::read(pid, "cpu", cpu_file), cpu_quota);

    let update = LinuxContainerResources {
        memory_limit_in_bytes: 96 * mib,
        cpu_shares: 512,
        cpu_period: 100_000,
        cpu_quota: 50_000,
        ..Default::default()
    };
    node.cri
        .update_container_resources(&container, &update)
        .expect("UpdateContainerResources");
    assert_eq!(memory_limit(), (96 * mib).to_string());
    node.cri
        .stop_container(&container, 0)
        .expect("StopContainer");
    pod.remove(&[&container]);
}

/// A container that outgrows its memory limit is OOM-killed, and CRI says so (the shim watches
/// the cgroup the runtime put it in).
pub fn oom_killed(node: &Node) {
    let pod = node.run_pod("");
    // tail keeps a line without a newline in memory until it ends: it grows past the limit.
    // containerd 1.6's shim watches the cgroup for OOM events only once the start has returned,
    // so the container waits for a file that an exec creates, which comes after the start.
    let script = "until [ -e /go ]; do sleep 0.1; done; head -c 200m /dev/zero | tail";
    let container = pod.start_container("hungry", &["sh", "-c", script], |config| {
        config.linux.as_mut().expect("linux config").resources = Some(LinuxContainerResources {
            memory_limit_in_bytes: 32 * 1024 * 1024,
            ..Default::default()
        });
    });
    let exec = node
        .cri
        .exec_sync(&container, &["touch", "/go"], 10)
        .expect("ExecSync");
    assert_eq!(exec.exit_code, 0, "{exec:?}");
    let status = pod.wait_for_exit(&container);
    assert_eq!(status.reason, "OOMKilled", "{status:?}");
    pod.remove(&[&container]);
}

/// The kubelet's namespaces for pods and their containers: the pod's network and IPC, a pid
/// namespace per container.
fn kubelet_namespaces() -> NamespaceOption {
    NamespaceOption {
        network: NamespaceMode::Pod.into(),
        pid: NamespaceMode::Container.into(),
        ipc: NamespaceMode::Pod.into(),
        ..Default::default()
    }
}

fn security_context_of(config: &mut ContainerConfig) -> &mut LinuxContainerSecurityContext {
    let linux = config.linux.as_mut().expect("linux config");
    linux.security_context.as_mut().expect("security context")
}

/// SIGKILLs `pid` and waits until its parent (the shim) has reaped it.
fn kill_and_wait(pid: i32) {
    kill(Pid::from_raw(pid), Signal::SIGKILL).unwrap_or_else(|e| panic!("kill {pid}: {e}"));
    let deadline = Instant::now() + common::COMMAND_TIMEOUT;
    while Path::new(&format!("/proc/{pid}")).exists() {
        assert!(Instant::now() < deadline, "{pid} was not reaped");
        std::thread::sleep(Duration::from_millis(20));
    }
}

engine_scenarios! {
    engine: images(), session: Node, scenarios: crate::cri;
    pod_lifecycle,
    container_exit_is_reported,
    stop_pod_after_sandbox_exited,
    stop_container_after_grace_period,
    security_context,
    resources_and_update,
    oom_killed,
}

/// The kubelet and containerd's CRI with systemd's cgroup driver (README.md's
/// `SystemdCgroup = true`), on a host with systemd as PID 1: pods are slices, containers scopes
/// in them. Ignored elsewhere; `make test-systemd` runs them.
pub mod systemd {
    use std::ops::Deref;

    use super::*;
    use crate::common::{systemd_unit_loaded, systemd_unit_property};

    /// A [`Node`] whose CRI plugin uses systemd's cgroup driver.
    pub struct SystemdNode(Node);

    impl SystemdNode {
        pub fn new(images: &Images, runtime: Runtime) -> Self {
            SystemdNode(Node::with_driver(images, runtime, CgroupDriver::Systemd))
        }
    }

    impl Deref for SystemdNode {
        type Target = Node;

        fn deref(&self) -> &Node {
            &self.0
        }
    }

    engine_scenarios! {
        #[ignore = "needs systemd as PID 1: make test-systemd"]
        engine: images(), session: SystemdNode, scenarios: crate::cri;
            pod_lifecycle,
            resources_and_update,
            oom_killed,
    }

    pub mod own {
        use super::*;

        engine_scenarios! {
            #[ignore = "needs systemd as PID 1: make test-systemd"]
            engine: images(), session: SystemdNode, scenarios: crate::cri::systemd::own;
                a_container_is_a_scope_in_its_pods_slice,
        }

        /// The container runs in `cri-containerd-<id>.scope`, in the slice the pod's
        /// cgroup_parent names, with its memory limit as the unit's property; removing the pod
        /// stops the unit.
        pub fn a_container_is_a_scope_in_its_pods_slice(node: &Node) {
            let pod = node.run_pod("");
            let container = pod.start_container("limited", &["sleep", "1000"], |config| {
                let linux = config.linux.as_mut().expect("linux config");
                linux.resources = Some(LinuxContainerResources {
                    memory_limit_in_bytes: 64 * 1024 * 1024,
                    ..Default::default()
                });
            });
            let unit = format!("cri-containerd-{container}.scope");
            let pods_cgroup = node.containerd.pods_cgroup();
            let pods_slice = pods_cgroup.rsplit('/').next().expect("a slice");
            let pid = pod.pids_of(&container)[0];
            let membership = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
                .expect("read the container's /proc/PID/cgroup");
            assert_eq!(membership.trim(), format!("0::{pods_cgroup}/{unit}"));
            assert_eq!(systemd_unit_property(&unit, "Slice"), pods_slice);
            assert_eq!(systemd_unit_property(&unit, "MemoryMax"), "67108864");
            node.cri
                .stop_container(&container, 0)
                .expect("StopContainer");
            pod.remove(&[&container]);
            assert!(!systemd_unit_loaded(&unit), "{unit} outlived the pod");
        }
    }
}
