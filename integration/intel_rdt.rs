//! `linux.intelRdt` on a host without resctrl (this one): refused before anything is created,
//! and so are `update --l3-cache-schema/--mem-bw-schema`. The resctrl writes themselves are
//! unit-tested against a laid-out directory (src/intelrdt); see README.md for what no test
//! covers on real hardware.

use serde_json::{Value, json};

use crate::common::Container;

fn has_resctrl() -> bool {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .any(|line| line.contains(" - resctrl "))
}

#[test]
fn a_config_with_intel_rdt_is_refused_without_resctrl() {
    if has_resctrl() {
        eprintln!("skipped: this host has resctrl mounted");
        return;
    }
    for rdt in [
        json!({}),
        json!({"closID": "/"}),
        json!({"l3CacheSchema": "L3:0=f", "enableMonitoring": true}),
    ] {
        let c = Container::with_args(&["true"]);
        c.configure_json(|config| config["linux"]["intelRdt"] = rdt.clone());
        let out = c.create().failure();
        assert!(
            out.stderr
                .contains("linux.intelRdt: this host has no resctrl filesystem mounted"),
            "{rdt}: {out}"
        );
        assert_eq!(c.status(), None, "{rdt}: the container exists");
        c.assert_no_leaks();
    }
}

#[test]
fn update_refuses_rdt_schemas_without_resctrl_and_changes_nothing() {
    if has_resctrl() {
        eprintln!("skipped: this host has resctrl mounted");
        return;
    }
    let mut c = Container::new();
    c.start_sleeper();
    let before = std::fs::read(c.state_dir().join("state.json")).unwrap();
    // runc's words.
    let out = c
        .cmd(&[
            "update",
            "--pids-limit",
            "99",
            "--l3-cache-schema",
            "L3:0=f",
            &c.id,
        ])
        .failure();
    assert!(
        out.stderr
            .contains("Intel RDT/CAT: l3 cache schema is not enabled"),
        "{out}"
    );
    let out = c
        .cmd(&["update", "--mem-bw-schema", "MB:0=20", &c.id])
        .failure();
    assert!(
        out.stderr
            .contains("Intel RDT/MBA: memory bandwidth schema is not enabled"),
        "{out}"
    );
    assert_eq!(
        std::fs::read(c.state_dir().join("state.json")).unwrap(),
        before
    );
    let pids_max = c
        .cgroup_dirs()
        .into_iter()
        .map(|dir| dir.join("pids.max"))
        .find(|file| file.exists())
        .map(|file| std::fs::read_to_string(file).unwrap());
    assert_ne!(pids_max.as_deref(), Some("99\n"), "the cgroup was updated");
}

#[test]
fn restore_of_a_config_with_intel_rdt_is_refused_without_resctrl() {
    if has_resctrl() {
        eprintln!("skipped: this host has resctrl mounted");
        return;
    }
    // berth joins the restored init to its resctrl group (runc leaves it out), so it checks the
    // host first, as create does.
    let c = Container::with_args(&["true"]);
    c.configure_json(|config| config["linux"]["intelRdt"] = json!({"closID": "/"}));
    let images = crate::criu::images_of_nothing(&c);
    let out = c.cmd(&crate::criu::restore_args(&c, &images)).failure();
    assert!(
        out.stderr
            .contains("linux.intelRdt: this host has no resctrl filesystem mounted"),
        "{out}"
    );
    assert_eq!(c.status(), None);
    c.assert_no_leaks();
}

#[test]
fn features_lists_intel_rdt_with_schemata_and_monitoring() {
    let c = Container::new();
    let out = c.cmd(&["features"]).success();
    let features: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(
        features["linux"]["intelRdt"],
        json!({"enabled": true, "schemata": true, "monitoring": true}),
        "{out}"
    );
}

#[test]
fn the_readme_example_is_refused_on_this_host() {
    if has_resctrl() {
        eprintln!("skipped: this host has resctrl mounted");
        return;
    }
    let c = Container::new();
    let out = c.run_readme_example("rdt-demo").failure();
    assert!(
        out.stderr
            .contains("linux.intelRdt: this host has no resctrl filesystem mounted"),
        "{out}"
    );
}
