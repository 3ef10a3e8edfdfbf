#!/usr/bin/env bash
# Installs what a fresh Debian machine with only the Rust toolchain lacks to build and test
# Atoll. Idempotent: checks first, installs only what is missing. No protoc is needed (the
# .proto files are compiled with protox, in Rust).
set -euo pipefail

log() { echo "setup: $*" >&2; }

# Runs a command as root: directly when we are root, through sudo when it exists.
as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        log "need root to run: $*"
        log "run it as root (or install sudo) and try again"
        exit 1
    fi
}

apt_updated=0
apt_install() {
    if [ "$apt_updated" -eq 0 ]; then
        log "apt-get update"
        as_root env DEBIAN_FRONTEND=noninteractive apt-get update
        apt_updated=1
    fi
    log "apt-get install -y $*"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y "$@"
}

# --- system packages -------------------------------------------------------------------------
if command -v dpkg >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
    missing=()
    # libclang for the RocksDB bindings (bindgen).
    if ! dpkg -s libclang-dev >/dev/null 2>&1; then
        missing+=(libclang-dev)
    fi
    # A C++ compiler for RocksDB itself (present on most Rust images already).
    if ! command -v c++ >/dev/null 2>&1 && ! dpkg -s g++ >/dev/null 2>&1; then
        missing+=(g++)
    fi
    # Headless Chromium for the dashboard's browser test (tests/dashboard_e2e.rs).
    if ! command -v chromium >/dev/null 2>&1 && ! dpkg -s chromium >/dev/null 2>&1; then
        missing+=(chromium)
    fi
    if [ "${#missing[@]}" -gt 0 ]; then
        apt_install "${missing[@]}"
    else
        log "system packages present (libclang-dev, c++, chromium)"
    fi
else
    log "not a Debian-like system: make sure libclang (for bindgen), a C++ compiler and chromium are installed"
fi

# --- Rust components -------------------------------------------------------------------------
components=()
cargo fmt --version >/dev/null 2>&1 || components+=(rustfmt)
cargo clippy --version >/dev/null 2>&1 || components+=(clippy)
if [ "${#components[@]}" -gt 0 ]; then
    if command -v rustup >/dev/null 2>&1; then
        log "rustup component add ${components[*]}"
        rustup component add "${components[@]}"
    else
        log "missing ${components[*]} and no rustup to install them with"
        exit 1
    fi
else
    log "rust components present (rustfmt, clippy)"
fi
