#!/usr/bin/env bash
# Prints the directory holding a prebuilt librocksdb.a for this checkout's librocksdb-sys,
# building it once if needed. RocksDB's C++ build takes 25-30 minutes on 2 cores, and cargo
# redoes it whenever the feature set of its build tools changes with the packages a command
# selects; linking this one archive (ROCKSDB_LIB_DIR + ROCKSDB_STATIC) makes that seconds.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

log() { echo "rocksdb-lib: $*" >&2; }

target_dir="${CARGO_TARGET_DIR:-$HOME/.cache/atoll/target}"
version="$(grep -A1 '^name = "librocksdb-sys"$' Cargo.lock | sed -n 's/^version = "\(.*\)"$/\1/p')"
if [ -z "$version" ]; then
    log "librocksdb-sys not found in Cargo.lock"
    exit 1
fi
lib_dir="$HOME/.cache/atoll/rocksdb-$version-lz4"

find_built() {
    # The newest complete archive built from source by librocksdb-sys in the target dir.
    ls -t "$target_dir"/debug/build/librocksdb-sys-*/out/librocksdb.a 2>/dev/null | head -1 || true
}

if [ ! -f "$lib_dir/librocksdb.a" ]; then
    built="$(find_built)"
    if [ -z "$built" ]; then
        log "building RocksDB $version from source once (about 25-30 minutes on 2 cores)"
        env -u ROCKSDB_LIB_DIR -u ROCKSDB_STATIC ROCKSDB_COMPILE=1 cargo build -p engine_rocks >&2
        built="$(find_built)"
    fi
    if [ -z "$built" ]; then
        log "the RocksDB build produced no librocksdb.a"
        exit 1
    fi
    mkdir -p "$lib_dir"
    cp "$built" "$lib_dir/librocksdb.a.tmp"
    mv "$lib_dir/librocksdb.a.tmp" "$lib_dir/librocksdb.a"
    log "cached $built as $lib_dir/librocksdb.a"
fi
echo "$lib_dir"
