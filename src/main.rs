// Not wired into the lifecycle on this branch yet; the lead drops the allow when it is.
#[allow(dead_code, unused_imports)]
mod cgroups;

fn main() {}
