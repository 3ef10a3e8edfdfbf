# Shared by the bench scripts (sourced, not run).

# stop_pids PID...: asks each process to stop (TERM), waits up to 10 s for each, then kills
# what is left and reaps it.
stop_pids() {
    local pid
    for pid in "$@"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "$@"; do
        for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
}

# --- a local Atoll cluster for the bench scripts (scale_out.sh, hotspot.sh) --------------------
# The caller defines log() and KEEP, sources this file, then calls the functions below.

# atoll_bins SCRIPT: sets ATOLL_BIN_DIR (default $CARGO_TARGET_DIR/release if built, else
# .../debug) and exits if a binary is missing.
atoll_bins() {
    local target=${CARGO_TARGET_DIR:-$HOME/.cache/atoll/target} b
    if [ -z "${ATOLL_BIN_DIR:-}" ]; then
        if [ -x "$target/release/atoll-kv" ]; then ATOLL_BIN_DIR=$target/release; else ATOLL_BIN_DIR=$target/debug; fi
    fi
    for b in atoll atoll-pd atoll-kv; do
        [ -x "$ATOLL_BIN_DIR/$b" ] || { echo "$1: $ATOLL_BIN_DIR/$b missing (make build)" >&2; exit 1; }
    done
}

# cluster_workdir PREFIX: sets WORK (BENCH_DIR or a new scratch directory) and PIDS, and stops
# every process in PIDS and removes WORK (unless KEEP=1) when the script ends.
cluster_workdir() {
    WORK=${BENCH_DIR:-$(mktemp -d "${TMPDIR:-/var/tmp}/$1.XXXXXX")}
    mkdir -p "$WORK"
    PIDS=()
    trap cluster_cleanup EXIT
    trap 'exit 130' INT TERM
}

cluster_cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    stop_pids "${PIDS[@]}"
    if [ "$KEEP" = 1 ]; then log "kept $WORK"; else rm -rf "$WORK"; fi
    exit "$rc"
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# start_pd: starts atoll-pd on free ports in WORK; sets PD (its client address).
start_pd() {
    PD=127.0.0.1:$(free_port)
    "$ATOLL_BIN_DIR/atoll-pd" --name pd-1 --client-urls "http://$PD" --advertise-client-urls "http://$PD" \
        --peer-urls "http://127.0.0.1:$(free_port)" --data-dir "$WORK/pd" --log-file "$WORK/pd.log" \
        >"$WORK/pd.console" 2>&1 &
    PIDS+=($!)
}

# start_kv I: starts node I with $WORK/kv.toml on free ports, its own 100 GiB of capacity (the
# nodes share one disk: PD must score their data, not the disk's free space).
start_kv() {
    local i=$1 port
    port=$(free_port)
    "$ATOLL_BIN_DIR/atoll-kv" --config "$WORK/kv.toml" --addr "127.0.0.1:$port" \
        --advertise-addr "127.0.0.1:$port" --status-addr "127.0.0.1:$(free_port)" --pd-endpoints "$PD" \
        --data-dir "$WORK/kv-$i" --log-file "$WORK/kv-$i.log" --capacity 100GiB \
        >"$WORK/kv-$i.console" 2>&1 &
    PIDS+=($!)
}
