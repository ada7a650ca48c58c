//! First conformance checks, mirroring opencontainers/runtime-tools `validation/default`: run
//! the default config and check from inside that the container is what the spec says.
//! See oci-validation/README.md for the plan.

use crate::common::{Container, process_mut};

#[test]
fn default_devices_exist() {
    let mut c = Container::new();
    let out = c.sh(
        "for d in null zero full random urandom tty; do test -c /dev/$d || echo missing $d; done; \
         for l in ptmx fd stdin stdout stderr; do readlink /dev/$l; done",
    );
    assert_eq!(
        out,
        "pts/ptmx\n/proc/self/fd\n/proc/self/fd/0\n/proc/self/fd/1\n/proc/self/fd/2\n"
    );
}

#[test]
fn default_mounts_have_their_types() {
    let mut c = Container::new();
    let out = c.sh("awk '{ print $5, $(NF-2) }' /proc/self/mountinfo");
    for (dest, fstype) in [
        ("/proc", "proc"),
        ("/dev", "tmpfs"),
        ("/dev/pts", "devpts"),
        ("/dev/shm", "tmpfs"),
        ("/dev/mqueue", "mqueue"),
        ("/sys", "sysfs"),
    ] {
        let line = format!("{dest} {fstype}");
        assert!(out.lines().any(|l| l == line), "no {line} in:\n{out}");
    }
}

#[test]
fn masked_and_readonly_paths() {
    let mut c = Container::new();
    let out = c.sh("wc -c < /proc/timer_list; ls /sys/firmware | wc -l; \
         echo x 2>/dev/null > /proc/sys/kernel/hostname && echo writable || echo readonly");
    assert_eq!(out, "0\n0\nreadonly\n");
}

#[test]
fn readonly_root() {
    let mut c = Container::new();
    let out = c.sh("touch /newfile 2>/dev/null && echo writable || echo readonly");
    assert_eq!(out, "readonly\n");
}

#[test]
fn default_capabilities_rlimits_and_no_new_privs() {
    let mut c = Container::new();
    let out = c.sh("grep -E '^(CapEff|CapBnd|NoNewPrivs)' /proc/self/status; ulimit -n");
    // CAP_KILL (5), CAP_NET_BIND_SERVICE (10), CAP_AUDIT_WRITE (29).
    let expected = "CapBnd:\t0000000020000420\nCapEff:\t0000000020000420\nNoNewPrivs:\t1\n1024\n";
    let mut got: Vec<&str> = out.lines().collect();
    got.sort();
    let mut want: Vec<&str> = expected.lines().collect();
    want.sort();
    assert_eq!(got, want, "{out}");
}

#[test]
fn process_user_cwd_and_env() {
    let mut c = Container::new();
    c.configure(|spec| {
        let process = process_mut(spec);
        process.user_mut().set_uid(1000);
        process.user_mut().set_gid(1000);
        process.user_mut().set_additional_gids(Some(vec![5]));
        process.set_cwd("/home/user".into());
        process
            .env_mut()
            .get_or_insert_with(Vec::new)
            .push("FOO=bar".into());
    });
    let out = c.sh("id -u; id -g; id -G; pwd; echo $FOO");
    assert_eq!(out, "1000\n1000\n1000 5\n/home/user\nbar\n");
}
