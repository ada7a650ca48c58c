//! Checks of `process` (and `linux.personality`) that need no syscall, run by the parent at
//! bundle-load time so that a bad config fails before anything is created.

use anyhow::{Result, bail, ensure};
use oci_spec::runtime::{
    Capabilities, LinuxCapabilities, LinuxPersonality, LinuxSchedulerPolicy, PosixRlimit, Process,
    Scheduler,
};

use super::affinity;

/// Rejects a `process` the kernel (or this runtime) would refuse later, naming the JSON field.
pub fn validate(process: &Process, personality: Option<&LinuxPersonality>) -> Result<()> {
    validate_args(process.args().as_deref().unwrap_or_default())?;
    ensure!(
        process.cwd().is_absolute(),
        "process.cwd: must be an absolute path, got {:?}",
        process.cwd()
    );
    validate_env(process.env().as_deref().unwrap_or_default())?;
    validate_user(process)?;
    validate_rlimits(process.rlimits().as_deref().unwrap_or_default())?;
    if let Some(capabilities) = process.capabilities() {
        validate_capabilities(capabilities)?;
    }
    if let Some(adj) = process.oom_score_adj() {
        ensure!(
            (-1000..=1000).contains(&adj),
            "process.oomScoreAdj: {adj} is outside -1000..1000"
        );
    }
    if let Some(scheduler) = process.scheduler() {
        validate_scheduler(scheduler)?;
    }
    if let Some(io_priority) = process.io_priority() {
        let priority = io_priority.priority();
        ensure!(
            (0..=7).contains(&priority),
            "process.ioPriority.priority: {priority} is outside 0..7"
        );
    }
    if let Some(cpus) = process.exec_cpu_affinity() {
        if let Some(initial) = cpus.initial() {
            affinity::parse_cpu_list(initial)
                .map_err(|e| anyhow::anyhow!("process.execCPUAffinity.initial: {e}"))?;
        }
        if let Some(last) = cpus.cpu_affinity_final() {
            affinity::parse_cpu_list(last)
                .map_err(|e| anyhow::anyhow!("process.execCPUAffinity.final: {e}"))?;
        }
    }
    if let Some(personality) = personality {
        // runtime-spec 1.3: "Currently no flag values are supported."
        if let Some(flag) = personality.flags().as_deref().unwrap_or_default().first() {
            bail!("linux.personality.flags: unsupported flag {flag:?}");
        }
    }
    Ok(())
}

fn validate_args(args: &[String]) -> Result<()> {
    ensure!(
        args.first().is_some_and(|first| !first.is_empty()),
        "process.args: must name the program to run"
    );
    for (index, arg) in args.iter().enumerate() {
        ensure!(
            !arg.contains('\0'),
            "process.args[{index}]: contains a NUL byte"
        );
    }
    Ok(())
}

fn validate_env(env: &[String]) -> Result<()> {
    for (index, entry) in env.iter().enumerate() {
        ensure!(
            !entry.contains('\0'),
            "process.env[{index}]: contains a NUL byte"
        );
        ensure!(
            entry
                .split_once('=')
                .is_some_and(|(name, _)| !name.is_empty()),
            "process.env[{index}]: {entry:?} is not in NAME=VALUE form"
        );
    }
    Ok(())
}

fn validate_user(process: &Process) -> Result<()> {
    let user = process.user();
    ensure!(
        user.username().is_none(),
        "process.user.username: only numeric uid and gid are supported on Linux"
    );
    if let Some(umask) = user.umask() {
        ensure!(
            umask <= 0o777,
            "process.user.umask: {umask:#o} is not a file mode mask (0..0777)"
        );
    }
    Ok(())
}

fn validate_rlimits(rlimits: &[PosixRlimit]) -> Result<()> {
    for (index, rlimit) in rlimits.iter().enumerate() {
        let kind = rlimit.typ();
        if let Some(first) = rlimits[..index]
            .iter()
            .position(|earlier| earlier.typ() == kind)
        {
            bail!("process.rlimits[{index}]: {kind} is already set by process.rlimits[{first}]");
        }
        ensure!(
            rlimit.soft() <= rlimit.hard(),
            "process.rlimits[{index}] {kind}: soft limit {} exceeds hard limit {}",
            rlimit.soft(),
            rlimit.hard()
        );
    }
    Ok(())
}

/// capset's rules, checked up front: effective ⊆ permitted, inheritable ⊆ bounding (the process
/// starts with an empty inheritable set). A missing set means an empty one, as in runc. An
/// ambient capability that cannot be raised is only a warning, as in runc (`exec --cap` relies
/// on it), so it is not checked here.
fn validate_capabilities(capabilities: &LinuxCapabilities) -> Result<()> {
    let empty = Capabilities::new();
    let set = |s: &Option<Capabilities>| s.as_ref().unwrap_or(&empty).clone();
    ensure_subset(
        "effective",
        &set(capabilities.effective()),
        "permitted",
        &set(capabilities.permitted()),
    )?;
    ensure_subset(
        "inheritable",
        &set(capabilities.inheritable()),
        "bounding",
        &set(capabilities.bounding()),
    )
}

fn ensure_subset(
    name: &str,
    set: &Capabilities,
    super_name: &str,
    superset: &Capabilities,
) -> Result<()> {
    let mut missing: Vec<String> = set
        .difference(superset)
        .map(|cap| format!("CAP_{cap}"))
        .collect();
    missing.sort();
    ensure!(
        missing.is_empty(),
        "process.capabilities.{name}: {} must also be in process.capabilities.{super_name}",
        missing.join(", ")
    );
    Ok(())
}

fn validate_scheduler(scheduler: &Scheduler) -> Result<()> {
    let policy = *scheduler.policy();
    ensure!(
        policy != LinuxSchedulerPolicy::SchedIso,
        "process.scheduler.policy: SCHED_ISO is not implemented by Linux"
    );
    if let Some(nice) = *scheduler.nice() {
        ensure!(
            (-20..=19).contains(&nice),
            "process.scheduler.nice: {nice} is outside -20..19"
        );
    }
    let realtime = matches!(
        policy,
        LinuxSchedulerPolicy::SchedFifo | LinuxSchedulerPolicy::SchedRr
    );
    let priority = scheduler.priority().unwrap_or(0);
    if realtime {
        ensure!(
            (1..=99).contains(&priority),
            "process.scheduler.priority: {policy} needs a priority in 1..99, got {priority}"
        );
    } else {
        ensure!(
            priority == 0,
            "process.scheduler.priority: only SCHED_FIFO and SCHED_RR take a priority"
        );
    }
    if policy != LinuxSchedulerPolicy::SchedDeadline {
        let deadline_fields = [
            ("runtime", scheduler.runtime()),
            ("deadline", scheduler.deadline()),
            ("period", scheduler.period()),
        ];
        for (field, value) in deadline_fields {
            ensure!(
                value.unwrap_or(0) == 0,
                "process.scheduler.{field}: only SCHED_DEADLINE takes a {field}"
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn process(overrides: serde_json::Value) -> Process {
        let mut value = json!({
            "user": {"uid": 0, "gid": 0},
            "args": ["sh"],
            "cwd": "/",
        });
        let object = value.as_object_mut().unwrap();
        for (key, field) in overrides.as_object().unwrap() {
            object.insert(key.clone(), field.clone());
        }
        serde_json::from_value(value).unwrap()
    }

    fn error(overrides: serde_json::Value) -> String {
        validate(&process(overrides), None).unwrap_err().to_string()
    }

    #[test]
    fn accepts_the_default_spec_process() {
        validate(&Process::default(), None).unwrap();
    }

    #[test]
    fn args_must_name_a_program() {
        assert!(error(json!({"args": []})).starts_with("process.args:"));
        assert!(error(json!({"args": [""]})).starts_with("process.args:"));
    }

    #[test]
    fn missing_args_are_rejected() {
        let mut p = process(json!({}));
        p.set_args(None);
        assert!(
            validate(&p, None)
                .unwrap_err()
                .to_string()
                .starts_with("process.args:")
        );
    }

    #[test]
    fn cwd_must_be_absolute() {
        assert_eq!(
            error(json!({"cwd": "tmp"})),
            "process.cwd: must be an absolute path, got \"tmp\""
        );
    }

    #[test]
    fn env_entries_need_a_name_and_an_equals_sign() {
        assert_eq!(
            error(json!({"env": ["A=1", "B"]})),
            "process.env[1]: \"B\" is not in NAME=VALUE form"
        );
        assert!(error(json!({"env": ["=1"]})).starts_with("process.env[0]"));
        validate(&process(json!({"env": ["A=", "B=x=y"]})), None).unwrap();
    }

    #[test]
    fn usernames_are_rejected() {
        assert!(
            error(json!({"user": {"uid": 0, "gid": 0, "username": "root"}}))
                .starts_with("process.user.username:")
        );
    }

    #[test]
    fn umask_must_be_a_mode() {
        assert!(
            error(json!({"user": {"uid": 0, "gid": 0, "umask": 0o1000}}))
                .starts_with("process.user.umask:")
        );
        validate(
            &process(json!({"user": {"uid": 0, "gid": 0, "umask": 0o777}})),
            None,
        )
        .unwrap();
    }

    #[test]
    fn duplicate_rlimits_are_rejected() {
        let rlimits = json!([
            {"type": "RLIMIT_NOFILE", "soft": 1, "hard": 1},
            {"type": "RLIMIT_CORE", "soft": 1, "hard": 1},
            {"type": "RLIMIT_NOFILE", "soft": 2, "hard": 2},
        ]);
        assert_eq!(
            error(json!({"rlimits": rlimits})),
            "process.rlimits[2]: RLIMIT_NOFILE is already set by process.rlimits[0]"
        );
    }

    #[test]
    fn rlimit_soft_above_hard_is_rejected() {
        let rlimits = json!([{"type": "RLIMIT_CORE", "soft": 2, "hard": 1}]);
        assert_eq!(
            error(json!({"rlimits": rlimits})),
            "process.rlimits[0] RLIMIT_CORE: soft limit 2 exceeds hard limit 1"
        );
    }

    #[test]
    fn unknown_rlimit_types_fail_to_deserialize() {
        let value = json!({"user": {"uid": 0, "gid": 0}, "cwd": "/",
            "rlimits": [{"type": "RLIMIT_BOGUS", "soft": 1, "hard": 1}]});
        assert!(serde_json::from_value::<Process>(value).is_err());
    }

    #[test]
    fn effective_must_be_within_permitted() {
        let caps = json!({"bounding": ["CAP_KILL", "CAP_CHOWN"], "effective": ["CAP_KILL", "CAP_CHOWN"],
            "permitted": ["CAP_KILL"]});
        assert_eq!(
            error(json!({"capabilities": caps})),
            "process.capabilities.effective: CAP_CHOWN must also be in process.capabilities.permitted"
        );
    }

    #[test]
    fn inheritable_must_be_within_bounding() {
        let caps = json!({"bounding": ["CAP_KILL"], "inheritable": ["CAP_CHOWN"]});
        assert!(
            error(json!({"capabilities": caps})).starts_with("process.capabilities.inheritable:")
        );
    }

    #[test]
    fn oom_score_adj_range() {
        assert!(error(json!({"oomScoreAdj": 1001})).starts_with("process.oomScoreAdj:"));
        validate(&process(json!({"oomScoreAdj": -1000})), None).unwrap();
    }

    #[test]
    fn scheduler_rules() {
        assert!(error(json!({"scheduler": {"policy": "SCHED_ISO"}})).contains("SCHED_ISO"));
        assert!(
            error(json!({"scheduler": {"policy": "SCHED_FIFO"}}))
                .starts_with("process.scheduler.priority")
        );
        assert!(
            error(json!({"scheduler": {"policy": "SCHED_OTHER", "priority": 3}}))
                .starts_with("process.scheduler.priority")
        );
        assert!(
            error(json!({"scheduler": {"policy": "SCHED_OTHER", "nice": 20}}))
                .starts_with("process.scheduler.nice")
        );
        assert!(
            error(json!({"scheduler": {"policy": "SCHED_BATCH", "runtime": 5}}))
                .starts_with("process.scheduler.runtime")
        );
        validate(
            &process(json!({"scheduler": {"policy": "SCHED_RR", "priority": 99}})),
            None,
        )
        .unwrap();
        validate(&process(json!({"scheduler": {"policy": "SCHED_DEADLINE", "runtime": 1, "deadline": 2, "period": 3}})), None).unwrap();
    }

    #[test]
    fn io_priority_range() {
        assert!(
            error(json!({"ioPriority": {"class": "IOPRIO_CLASS_BE", "priority": 8}}))
                .starts_with("process.ioPriority")
        );
    }

    #[test]
    fn cpu_affinity_is_parsed() {
        assert!(
            error(json!({"execCPUAffinity": {"final": "3-1"}}))
                .starts_with("process.execCPUAffinity.final")
        );
    }

    #[test]
    fn personality_flags_are_rejected() {
        let personality: LinuxPersonality =
            serde_json::from_value(json!({"domain": "LINUX32", "flags": ["X"]})).unwrap();
        let message = validate(&process(json!({})), Some(&personality))
            .unwrap_err()
            .to_string();
        assert_eq!(message, "linux.personality.flags: unsupported flag \"X\"");
    }
}
