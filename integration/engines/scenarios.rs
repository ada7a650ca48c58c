//! What users do every day with Docker and podman, written once for both (their command lines
//! agree on all of it). Each scenario gets a [`Session`]: one engine, one runtime; the engine
//! files list which scenarios they run.

use crate::harness::cgroup;
use crate::harness::engine::{Kind, Session};

/// The engine runs the container with the runtime it was asked for: the engine's inspect
/// names it, and the container's state is in the runtime root the engine gives it.
pub fn runtime_state(s: &Session) {
    let name = s.sleeper(&[]);
    let id = s.id(&name).expect("a running container has an id");
    let state = s.engine.runtime_root(s.runtime).join(&id);
    assert!(state.is_dir(), "no {}", state.display());
    let format = match s.engine.kind {
        Kind::Docker => "{{.HostConfig.Runtime}}",
        Kind::Podman => "{{.OCIRuntime}}",
    };
    assert_eq!(s.inspect(&name, format), s.runtime.name());
}

/// `run` returns the container's exit code and its stdout and stderr, apart.
pub fn run_exit_code(s: &Session) {
    let out = s.run(&[], &["sh", "-c", "echo out; echo err >&2; exit 42"]);
    assert_eq!(out.code, 42, "{out}");
    assert_eq!(out.stdout, "out\n", "{out}");
    assert_eq!(out.stderr, "err\n", "{out}");
}

/// `exec` into a running container returns the process's exit code and output.
pub fn exec_exit_code(s: &Session) {
    let name = s.sleeper(&[]);
    let out = s.exec(&[], &name, &["sh", "-c", "echo in; exit 7"]);
    assert_eq!(out.code, 7, "{out}");
    assert_eq!(out.stdout, "in\n", "{out}");
}

/// `--memory` is the memory limit of the container's cgroup, seen from the host and inside.
pub fn memory_limit(s: &Session) {
    let name = s.sleeper(&["--memory", "64m"]);
    let pid = s.pid(&name);
    let (file, inside) = if cgroup::is_v1("memory") {
        (
            "memory.limit_in_bytes",
            "/sys/fs/cgroup/memory/memory.limit_in_bytes",
        )
    } else {
        ("memory.max", "/sys/fs/cgroup/memory.max")
    };
    assert_eq!(cgroup::read(pid, "memory", file), "67108864");
    let out = s.exec(&[], &name, &["cat", inside]).success();
    assert_eq!(out.stdout.trim(), "67108864", "{out}");
    assert_eq!(s.inspect(&name, "{{.HostConfig.Memory}}"), "67108864");
}
