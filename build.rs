// The one input of the berth binary cargo cannot see: the Makefile hands this list to the
// linker (`make build`), so a new list must relink berth.
fn main() {
    println!("cargo:rerun-if-changed=link/start-path.symbols");
}
