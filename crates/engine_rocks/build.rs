//! RocksDB is C++. When librocksdb-sys links a prebuilt static library (`ROCKSDB_LIB_DIR` +
//! `ROCKSDB_STATIC`, which `scripts/setup.sh` arranges so the 25-minute C++ build happens once
//! per machine), nothing else asks for the C++ runtime, so ask for it here. With RocksDB built
//! from source the same library is already linked and this is a no-op.
fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=ROCKSDB_LIB_DIR");
    if std::env::var_os("ROCKSDB_LIB_DIR").is_some() {
        println!("cargo:rustc-link-lib=dylib=stdc++");
    }
}
