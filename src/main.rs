// Wired into the init pipeline and `berth exec` by the lead.
#[allow(dead_code, unused_imports)]
mod process;

fn main() {}
