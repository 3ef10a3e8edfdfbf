//! No build step: this script exists so the `[build-dependencies]` that pin host-side feature
//! sets (see Cargo.toml) take part in every build that compiles RocksDB.
fn main() {
    println!("cargo:rerun-if-changed=build.rs");
}
