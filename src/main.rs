// Until the init pipeline calls into it, the rootfs module is only reached from its tests.
#[allow(dead_code)]
mod rootfs;

fn main() {}
