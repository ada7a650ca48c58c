//! A blocking CRI client: the calls the kubelet makes to a container runtime, sent over
//! containerd's gRPC socket with the `k8s-cri` crate's bindings (CRI `runtime.v1`).
//!
//! Every call is bounded by [`CALL_TIMEOUT`]: a runtime that hangs fails the test instead of
//! hanging the run.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::{
    ContainerConfig, ContainerStats, ContainerStatsRequest, ContainerStatus,
    ContainerStatusRequest, CreateContainerRequest, ExecSyncRequest, ExecSyncResponse,
    LinuxContainerResources, PodSandboxConfig, PodSandboxStatus, PodSandboxStatusRequest,
    RemoveContainerRequest, RemovePodSandboxRequest, RunPodSandboxRequest, StartContainerRequest,
    StopContainerRequest, StopPodSandboxRequest, UpdateContainerResourcesRequest,
};
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint, Uri};
use tonic::{Code, Status};

/// Longest one CRI call may take. containerd's own waits (a stop's grace period, a shim's
/// shutdown) stay well below this.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// A connection to one containerd's CRI plugin.
pub struct Cri {
    runtime: tokio::runtime::Runtime,
    service: RuntimeServiceClient<Channel>,
}

impl Cri {
    /// Connects to the containerd listening on `socket`.
    pub fn connect(socket: &Path) -> Self {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("build a tokio runtime for the CRI client");
        let socket = socket.to_path_buf();
        let channel = runtime
            .block_on(unix_channel(socket.clone()))
            .unwrap_or_else(|e| panic!("connect to CRI at {}: {e}", socket.display()));
        Self {
            runtime,
            service: RuntimeServiceClient::new(channel),
        }
    }

    /// Runs one call to completion, or fails with `DeadlineExceeded` after [`CALL_TIMEOUT`].
    fn call<T>(
        &self,
        what: &str,
        request: impl Future<Output = Result<tonic::Response<T>, Status>>,
    ) -> Result<T, Status> {
        self.runtime.block_on(async {
            match tokio::time::timeout(CALL_TIMEOUT, request).await {
                Ok(response) => response.map(tonic::Response::into_inner),
                Err(_) => Err(Status::new(
                    Code::DeadlineExceeded,
                    format!("{what} took more than {CALL_TIMEOUT:?}"),
                )),
            }
        })
    }

    fn client(&self) -> RuntimeServiceClient<Channel> {
        self.service.clone()
    }

    /// RunPodSandbox with `runtime_handler` (a RuntimeClass's handler; "" is containerd's
    /// default runtime). Returns the sandbox id.
    pub fn run_pod_sandbox(
        &self,
        config: &PodSandboxConfig,
        runtime_handler: &str,
    ) -> Result<String, Status> {
        let request = RunPodSandboxRequest {
            config: Some(config.clone()),
            runtime_handler: runtime_handler.to_string(),
        };
        self.call("RunPodSandbox", self.client().run_pod_sandbox(request))
            .map(|response| response.pod_sandbox_id)
    }

    pub fn stop_pod_sandbox(&self, pod_sandbox_id: &str) -> Result<(), Status> {
        let request = StopPodSandboxRequest {
            pod_sandbox_id: pod_sandbox_id.to_string(),
        };
        self.call("StopPodSandbox", self.client().stop_pod_sandbox(request))
            .map(drop)
    }

    pub fn remove_pod_sandbox(&self, pod_sandbox_id: &str) -> Result<(), Status> {
        let request = RemovePodSandboxRequest {
            pod_sandbox_id: pod_sandbox_id.to_string(),
        };
        self.call(
            "RemovePodSandbox",
            self.client().remove_pod_sandbox(request),
        )
        .map(drop)
    }

    pub fn pod_sandbox_status(&self, pod_sandbox_id: &str) -> Result<PodSandboxStatus, Status> {
        let request = PodSandboxStatusRequest {
            pod_sandbox_id: pod_sandbox_id.to_string(),
            verbose: false,
        };
        self.call(
            "PodSandboxStatus",
            self.client().pod_sandbox_status(request),
        )?
        .status
        .ok_or_else(|| Status::internal("PodSandboxStatus returned no status"))
    }

    /// CreateContainer in a sandbox; `sandbox_config` is the one the sandbox was run with (the
    /// kubelet sends it again). Returns the container id.
    pub fn create_container(
        &self,
        pod_sandbox_id: &str,
        config: &ContainerConfig,
        sandbox_config: &PodSandboxConfig,
    ) -> Result<String, Status> {
        let request = CreateContainerRequest {
            pod_sandbox_id: pod_sandbox_id.to_string(),
            config: Some(config.clone()),
            sandbox_config: Some(sandbox_config.clone()),
        };
        self.call("CreateContainer", self.client().create_container(request))
            .map(|response| response.container_id)
    }

    pub fn start_container(&self, container_id: &str) -> Result<(), Status> {
        let request = StartContainerRequest {
            container_id: container_id.to_string(),
        };
        self.call("StartContainer", self.client().start_container(request))
            .map(drop)
    }

    /// StopContainer: the stop signal, then SIGKILL after `grace_seconds`.
    pub fn stop_container(&self, container_id: &str, grace_seconds: i64) -> Result<(), Status> {
        let request = StopContainerRequest {
            container_id: container_id.to_string(),
            timeout: grace_seconds,
        };
        self.call("StopContainer", self.client().stop_container(request))
            .map(drop)
    }

    pub fn remove_container(&self, container_id: &str) -> Result<(), Status> {
        let request = RemoveContainerRequest {
            container_id: container_id.to_string(),
        };
        self.call("RemoveContainer", self.client().remove_container(request))
            .map(drop)
    }

    pub fn container_status(&self, container_id: &str) -> Result<ContainerStatus, Status> {
        let request = ContainerStatusRequest {
            container_id: container_id.to_string(),
            verbose: false,
        };
        self.call("ContainerStatus", self.client().container_status(request))?
            .status
            .ok_or_else(|| Status::internal("ContainerStatus returned no status"))
    }

    /// UpdateContainerResources: the runtime's `update`.
    pub fn update_container_resources(
        &self,
        container_id: &str,
        linux: &LinuxContainerResources,
    ) -> Result<(), Status> {
        let request = UpdateContainerResourcesRequest {
            container_id: container_id.to_string(),
            linux: Some(linux.clone()),
            ..Default::default()
        };
        self.call(
            "UpdateContainerResources",
            self.client().update_container_resources(request),
        )
        .map(drop)
    }

    /// ExecSync: runs `cmd` in the container and returns its exit code and output.
    pub fn exec_sync(
        &self,
        container_id: &str,
        cmd: &[&str],
        timeout_seconds: i64,
    ) -> Result<ExecSyncResponse, Status> {
        let request = ExecSyncRequest {
            container_id: container_id.to_string(),
            cmd: cmd.iter().map(|arg| arg.to_string()).collect(),
            timeout: timeout_seconds,
        };
        self.call("ExecSync", self.client().exec_sync(request))
    }

    pub fn container_stats(&self, container_id: &str) -> Result<ContainerStats, Status> {
        let request = ContainerStatsRequest {
            container_id: container_id.to_string(),
        };
        self.call("ContainerStats", self.client().container_stats(request))?
            .stats
            .ok_or_else(|| Status::internal("ContainerStats returned no stats"))
    }
}

/// A gRPC channel over a unix socket (tonic speaks TCP by default; the URI is a placeholder).
async fn unix_channel(socket: PathBuf) -> Result<Channel, tonic::transport::Error> {
    Endpoint::from_static("http://[::]:0")
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let socket = socket.clone();
            async move { UnixStream::connect(socket).await.map(TokioIo::new) }
        }))
        .await
}
