//! berth's OCI conformance suite: one test per case of opencontainers/runtime-tools'
//! `validation/` directory, each written from runtime-spec's text and what that case checks
//! (see oci-validation/README.md). Like the integration tests it drives any runc-compatible
//! binary (`$BERTH_BIN`), as root, on the busybox rootfs, through the integration harness.
//!
//! Containers start from runtime-tools' default config (`suite::runtime_tools_default`).
//! Inside, a busybox script (`checker.sh`, installed as /oci-check) and plain /proc reads show
//! what the container got; outside, the cases read state, cgroups, namespaces and mounts.
//!
//! A case that cannot be checked on this host says why with `suite::skip` (or `suite::note` for
//! a part of it) and passes; `OCI_VALIDATION_REPORT=<dir>` collects those reasons for the
//! results table (oci-validation/results). A case berth fails because of a bug being
//! fixed elsewhere is `#[ignore]`d, naming the issue.

#[path = "../integration/common/mod.rs"]
mod common;

mod cgroups;
mod filesystem;
mod hooks;
mod lifecycle;
mod namespaces;
mod process;
mod suite;
