mod seccomp;

fn main() {}
