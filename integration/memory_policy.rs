//! `linux.memoryPolicy` (runtime-spec 1.3): the policy is seen from inside the container in
//! /proc/self/numa_maps, which shows the task's policy on mappings without one of their own
//! (`Mems_allowed` in /proc/self/status is the cpuset's, which a memory policy does not change).
//! Refusals name the field and leave nothing behind. This host has one NUMA node, 0.

use serde_json::{Value, json};

use crate::common::Container;

/// The policy column of the first line of the container process's numa_maps.
const SHOW_POLICY: &str = "head -n1 /proc/self/numa_maps | cut -d' ' -f2";

fn with_policy(policy: &Value, args: &[&str]) -> Container {
    let mut c = Container::with_args(args);
    let policy = serde_json::from_value(policy.clone()).expect("a well-formed memoryPolicy");
    c.configure(|spec| {
        let linux = spec.linux_mut().as_mut().unwrap();
        linux.set_memory_policy(Some(policy));
    });
    c
}

#[test]
fn each_mode_and_flag_is_the_policy_of_the_container_process() {
    // How the kernel prints each policy (mpol_to_str).
    let cases = [
        (json!({"mode": "MPOL_DEFAULT"}), "default"),
        (json!({"mode": "MPOL_LOCAL"}), "local"),
        (json!({"mode": "MPOL_BIND", "nodes": "0"}), "bind:0"),
        (
            json!({"mode": "MPOL_INTERLEAVE", "nodes": "0"}),
            "interleave:0",
        ),
        (
            json!({"mode": "MPOL_WEIGHTED_INTERLEAVE", "nodes": "0"}),
            "weighted",
        ),
        (json!({"mode": "MPOL_PREFERRED", "nodes": "0"}), "prefer:0"),
        (
            json!({"mode": "MPOL_PREFERRED_MANY", "nodes": "0"}),
            "prefer",
        ),
        (
            json!({"mode": "MPOL_BIND", "nodes": "0", "flags": ["MPOL_F_STATIC_NODES"]}),
            "bind=static:0",
        ),
        (
            json!({"mode": "MPOL_INTERLEAVE", "nodes": "0", "flags": ["MPOL_F_RELATIVE_NODES"]}),
            "interleave=relative:0",
        ),
        (
            json!({"mode": "MPOL_BIND", "nodes": "0", "flags": ["MPOL_F_NUMA_BALANCING"]}),
            "bind=balancing:0",
        ),
    ];
    for (policy, shown) in cases {
        let c = with_policy(&policy, &["sh", "-c", SHOW_POLICY]);
        let out = c.run().success();
        assert!(
            out.stdout.trim_end().starts_with(shown),
            "{policy}: expected {shown:?}\n{out}"
        );
    }
}

#[test]
fn exec_processes_get_the_container_policy() {
    let mut c = with_policy(&json!({"mode": "MPOL_INTERLEAVE", "nodes": "0"}), &[]);
    c.start_sleeper();
    let out = c.exec(&[], &["sh", "-c", SHOW_POLICY]).success();
    assert_eq!(out.stdout.trim_end(), "interleave:0", "{out}");
}

/// `create` refuses `policy` (raw JSON: it may not parse) with an error containing `expected`,
/// and leaves nothing behind.
#[track_caller]
fn assert_refused(policy: Value, expected: &str) {
    let c = Container::with_args(&["true"]);
    c.configure_json(|config| config["linux"]["memoryPolicy"] = policy.clone());
    let out = c.create().failure();
    assert!(out.stderr.contains(expected), "{policy}: {out}");
    assert_eq!(c.status(), None, "{policy}: the container exists");
    c.assert_no_leaks();
}

#[test]
fn bad_policies_are_refused_naming_the_field() {
    assert_refused(
        json!({"mode": "MPOL_BIND", "nodes": "0,1"}),
        "linux.memoryPolicy.nodes: this host has no NUMA node 1 (it has 0)",
    );
    assert_refused(
        json!({"mode": "MPOL_INTERLEAVE"}),
        "linux.memoryPolicy.nodes: MPOL_INTERLEAVE needs at least one node",
    );
    assert_refused(
        json!({"mode": "MPOL_LOCAL", "nodes": "0"}),
        "linux.memoryPolicy.nodes: MPOL_LOCAL takes no nodes",
    );
    assert_refused(
        json!({"mode": "MPOL_BIND", "nodes": "0-x"}),
        "is not a node number",
    );
    assert_refused(
        json!({"mode": "MPOL_BIND", "nodes": "0",
               "flags": ["MPOL_F_STATIC_NODES", "MPOL_F_RELATIVE_NODES"]}),
        "linux.memoryPolicy.flags: MPOL_F_STATIC_NODES and MPOL_F_RELATIVE_NODES exclude",
    );
    assert_refused(json!({"mode": "MPOL_FASTEST"}), "linux.memoryPolicy.mode");
    assert_refused(
        json!({"mode": "MPOL_BIND", "nodes": "0", "flags": ["MPOL_F_FAST"]}),
        "linux.memoryPolicy.flags",
    );
}

#[test]
fn a_policy_the_kernel_refuses_fails_create_and_leaves_nothing() {
    // set_mempolicy(2): MPOL_F_NUMA_BALANCING is for MPOL_BIND (and, on newer kernels,
    // MPOL_PREFERRED_MANY) only.
    assert_refused(
        json!({"mode": "MPOL_INTERLEAVE", "nodes": "0", "flags": ["MPOL_F_NUMA_BALANCING"]}),
        "linux.memoryPolicy: set_mempolicy(MPOL_INTERLEAVE|MPOL_F_NUMA_BALANCING, nodes 0): \
         Invalid argument",
    );
}

#[test]
fn features_lists_every_mode_and_flag() {
    let c = Container::new();
    let out = c.cmd(&["features"]).success();
    let features: Value = serde_json::from_str(&out.stdout).unwrap();
    let policy = &features["linux"]["memoryPolicy"];
    assert_eq!(policy["modes"].as_array().map(Vec::len), Some(7), "{out}");
    assert_eq!(policy["flags"].as_array().map(Vec::len), Some(3), "{out}");
}

#[test]
fn the_readme_example_binds_to_node_0() {
    let c = Container::new();
    let out = c.run_readme_example("mempolicy-demo").success();
    assert_eq!(out.stdout, "bind=static:0\n", "{out}");
}
