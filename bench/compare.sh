#!/usr/bin/env bash
# Atoll against etcd on this machine, same workloads from the same tool, one after the other.
#
#   bench/compare.sh [--duration 10s] [--clients 1,16,128] [--workloads put,get,a]
#                    [--records 10000] [--mem 2G] [--out FILE.md] [--keep]
#
# Installs etcd (Debian's etcd-server, etcd-client) when missing, starts a 3-member etcd cluster
# and a 3-node Atoll playground on loopback with free ports in a scratch directory, each server
# under a memory limit, runs `atoll bench compare`, prints the side-by-side table (and writes it
# with the machine's description to --out), and always stops everything it started.
#
# Environment: ATOLL_BIN_DIR (default $CARGO_TARGET_DIR/release if `atoll` is there, else
# .../debug), BENCH_DIR (scratch directory; default a new one under /var/tmp).
set -euo pipefail

DURATION=10s
CLIENTS=1,16,128
WORKLOADS=put,get,a
RECORDS=10000
MEM=2G
OUT=
KEEP=0
while [ $# -gt 0 ]; do
    case "$1" in
        --duration) DURATION=$2; shift 2 ;;
        --clients) CLIENTS=$2; shift 2 ;;
        --workloads) WORKLOADS=$2; shift 2 ;;
        --records) RECORDS=$2; shift 2 ;;
        --mem) MEM=$2; shift 2 ;;
        --out) OUT=$2; shift 2 ;;
        --keep) KEEP=1; shift ;;
        -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
        *) echo "compare.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done

ROOT=$(cd "$(dirname "$0")/.." && pwd)
TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/atoll/target}
if [ -z "${ATOLL_BIN_DIR:-}" ]; then
    if [ -x "$TARGET_DIR/release/atoll" ] && [ -x "$TARGET_DIR/release/atoll-kv" ]; then
        ATOLL_BIN_DIR=$TARGET_DIR/release
    else
        ATOLL_BIN_DIR=$TARGET_DIR/debug
    fi
fi
ATOLL=$ATOLL_BIN_DIR/atoll
for b in atoll atoll-pd atoll-kv; do
    [ -x "$ATOLL_BIN_DIR/$b" ] || { echo "compare.sh: $ATOLL_BIN_DIR/$b missing (make build)" >&2; exit 1; }
done

log() { echo "compare.sh: $*" >&2; }

# --- etcd from Debian's packages -------------------------------------------------------------
if ! command -v etcd >/dev/null || ! command -v etcdctl >/dev/null; then
    log "installing etcd-server and etcd-client"
    SUDO=; [ "$(id -u)" -eq 0 ] || SUDO=sudo
    $SUDO apt-get update -qq
    # Keep the package's service from being started (no init system is needed here).
    DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 $SUDO apt-get install -y -qq etcd-server etcd-client >/dev/null
    # Where an init system did start the packaged etcd, stop it: this script runs its own.
    $SUDO sh -c 'command -v service >/dev/null && service etcd stop >/dev/null 2>&1 || true'
fi
ETCD_VERSION=$(etcd --version 2>/dev/null | head -1)

# --- scratch directory, processes, cleanup -----------------------------------------------------
WORK=${BENCH_DIR:-$(mktemp -d "${TMPDIR:-/var/tmp}/atoll-bench.XXXXXX")}
mkdir -p "$WORK"
PIDS=()
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"
CGROUPS=()
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    stop_pids "${PIDS[@]}"
    for cg in "${CGROUPS[@]}"; do
        # Processes left in a group (none, normally) are killed before it is removed.
        if [ -f "$cg/cgroup.procs" ]; then
            while read -r p; do kill -KILL "$p" 2>/dev/null || true; done <"$cg/cgroup.procs"
            sleep 0.2
            rmdir "$cg" 2>/dev/null || true
        fi
    done
    if [ "$KEEP" = 1 ]; then log "kept $WORK"; else rm -rf "$WORK"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- memory limits -----------------------------------------------------------------------------
to_bytes() {
    local v=${1^^}
    case "$v" in
        *G) echo $(( ${v%G} * 1024 * 1024 * 1024 )) ;;
        *M) echo $(( ${v%M} * 1024 * 1024 )) ;;
        *) echo "$v" ;;
    esac
}
MEM_BYTES=$(to_bytes "$MEM")
# How to cap a process's memory on this machine: a cgroup (v2 or v1 memory controller) made
# here, else systemd-run, else only the address space (prlimit --as; loose for Go and jemalloc).
LIMITER=none
if [ -w /sys/fs/cgroup/cgroup.subtree_control ] && grep -qw memory /sys/fs/cgroup/cgroup.controllers 2>/dev/null; then
    LIMITER=cgroup2
elif [ -d /sys/fs/cgroup/memory ] && mkdir "/sys/fs/cgroup/memory/atoll-probe-$$" 2>/dev/null; then
    rmdir "/sys/fs/cgroup/memory/atoll-probe-$$"
    LIMITER=cgroup1
elif systemd-run --scope -q -p MemoryMax=64M true 2>/dev/null; then
    LIMITER=systemd
elif command -v prlimit >/dev/null; then
    LIMITER=prlimit
fi
log "memory limit per server: $MEM via $LIMITER"

# make_cgroup NAME: prints the group's directory (limit set) or nothing.
make_cgroup() {
    local dir
    case "$LIMITER" in
        cgroup2)
            dir=/sys/fs/cgroup/atoll-bench-$$-$1
            mkdir -p "$dir" && echo "$MEM_BYTES" >"$dir/memory.max" && echo 0 >"$dir/memory.swap.max" 2>/dev/null || true
            ;;
        cgroup1)
            dir=/sys/fs/cgroup/memory/atoll-bench-$$-$1
            mkdir -p "$dir" && echo "$MEM_BYTES" >"$dir/memory.limit_in_bytes"
            ;;
        *) return 0 ;;
    esac
    echo "$dir"
}

# limited NAME LOGFILE CMD...: starts CMD in the background under the memory limit; sets PID.
limited() {
    local name=$1 logfile=$2; shift 2
    case "$LIMITER" in
        cgroup1|cgroup2)
            local cg; cg=$(make_cgroup "$name")
            CGROUPS+=("$cg")
            sh -c 'echo $$ >"$0/cgroup.procs" && exec "$@"' "$cg" "$@" >"$logfile" 2>&1 &
            ;;
        systemd) systemd-run --scope -q -p MemoryMax="$MEM_BYTES" "$@" >"$logfile" 2>&1 & ;;
        prlimit) prlimit --as="$(( MEM_BYTES * 4 ))" "$@" >"$logfile" 2>&1 & ;;
        *) "$@" >"$logfile" 2>&1 & ;;
    esac
    PID=$!
    PIDS+=("$PID")
}

# Moves a running process into its own limited group (Atoll's nodes, started by the playground).
limit_pid() {
    local name=$1 pid=$2
    case "$LIMITER" in
        cgroup1|cgroup2)
            local cg; cg=$(make_cgroup "$name")
            CGROUPS+=("$cg")
            echo "$pid" >"$cg/cgroup.procs"
            ;;
        prlimit) prlimit --pid "$pid" --as="$(( MEM_BYTES * 4 ))" ;;
    esac
}

# --- free ports ---------------------------------------------------------------------------------
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
# free_block N: prints the first port P of N consecutive free ports.
free_block() {
    local n=$1 p=$(( 20000 + RANDOM % 30000 )) i ok
    while :; do
        ok=1
        for i in $(seq 0 $(( n - 1 ))); do port_free $(( p + i )) || { ok=0; break; }; done
        [ $ok = 1 ] && { echo "$p"; return; }
        p=$(( p + n ))
    done
}

# --- etcd: 3 members ----------------------------------------------------------------------------
EBASE=$(free_block 6)
CLUSTER=
ENDPOINTS=
for i in 1 2 3; do
    CLUSTER+="${CLUSTER:+,}e$i=http://127.0.0.1:$(( EBASE + 3 + i - 1 ))"
    ENDPOINTS+="${ENDPOINTS:+,}127.0.0.1:$(( EBASE + i - 1 ))"
done
log "starting etcd ($ETCD_VERSION) on $ENDPOINTS"
for i in 1 2 3; do
    c=$(( EBASE + i - 1 )); p=$(( EBASE + 3 + i - 1 ))
    limited "etcd-$i" "$WORK/etcd-$i.log" etcd \
        --name "e$i" --data-dir "$WORK/etcd-$i" \
        --listen-client-urls "http://127.0.0.1:$c" --advertise-client-urls "http://127.0.0.1:$c" \
        --listen-peer-urls "http://127.0.0.1:$p" --initial-advertise-peer-urls "http://127.0.0.1:$p" \
        --initial-cluster "$CLUSTER" --initial-cluster-state new --initial-cluster-token "bench-$$" \
        --quota-backend-bytes $(( 2 * 1024 * 1024 * 1024 )) \
        --auto-compaction-mode revision --auto-compaction-retention 10000 \
        --snapshot-count 10000 --logger zap --log-level warn
done
for _ in $(seq 1 100); do
    ETCDCTL_API=3 etcdctl --endpoints "$ENDPOINTS" endpoint health >/dev/null 2>&1 && break
    sleep 0.3
done
ETCDCTL_API=3 etcdctl --endpoints "$ENDPOINTS" endpoint health >&2 || { log "etcd is not healthy"; tail "$WORK"/etcd-*.log >&2; exit 1; }

# --- Atoll: 1 PD + 3 nodes -------------------------------------------------------------------------
# One block: PD client and peer ports, then 3 node ports, then 3 status ports.
ABASE=$(free_block 8)
PD_PORT=$ABASE
KV_PORT=$(( ABASE + 2 ))
STATUS_PORT=$(( ABASE + 5 ))
log "starting the Atoll playground (binaries from $ATOLL_BIN_DIR), PD on 127.0.0.1:$PD_PORT"
# The playground itself is tiny; its children are moved into their own groups once up.
"$ATOLL" playground --data-dir "$WORK/atoll" --clean --pd-port "$PD_PORT" --kv-count 3 \
    --kv-base-port "$KV_PORT" --status-base-port "$STATUS_PORT" --bin-dir "$ATOLL_BIN_DIR" \
    >"$WORK/playground.out" 2>&1 &
PLAYGROUND=$!
PIDS=("$PLAYGROUND" "${PIDS[@]}")
for _ in $(seq 1 240); do
    grep -q "playground is ready" "$WORK/playground.out" && break
    kill -0 "$PLAYGROUND" 2>/dev/null || { cat "$WORK/playground.out" >&2; exit 1; }
    sleep 0.5
done
grep -q "playground is ready" "$WORK/playground.out" || { cat "$WORK/playground.out" >&2; exit 1; }
# Every region must have its three voters, caught up, before anything is measured.
replicated() {
    "$ATOLL" ctl --pd "127.0.0.1:$PD_PORT" regions 2>/dev/null | python3 -c '
import json, sys
regions = json.load(sys.stdin).get("regions", [])
ok = regions and all(
    len(r.get("peers", [])) == 3
    and all(p.get("role_name", "Voter") == "Voter" for p in r["peers"])
    and not r.get("pending_peers")
    for r in regions)
sys.exit(0 if ok else 1)'
}
for _ in $(seq 1 120); do
    replicated && break
    sleep 0.5
done
replicated || { log "regions did not reach 3 caught-up replicas"; "$ATOLL" ctl --pd "127.0.0.1:$PD_PORT" regions >&2; exit 1; }
log "every region has 3 replicas"
n=0
for child in $(pgrep -P "$PLAYGROUND"); do
    n=$(( n + 1 )); limit_pid "atoll-$n" "$child"
done

# --- the comparison ---------------------------------------------------------------------------------
RESULT_JSON=$WORK/compare.json
TABLE=$WORK/table.md
"$ATOLL" bench compare --pd "127.0.0.1:$PD_PORT" --etcd "$ENDPOINTS" \
    --workloads "$WORKLOADS" --clients "$CLIENTS" --duration "$DURATION" --records "$RECORDS" \
    --value-size 256 --limits-dir "$WORK" --json "$RESULT_JSON" \
    --note "Atoll: 3 nodes + PD, raw API V2, 3 replicas per region (every write on a quorum); etcd: 3 members, every write replicated to a quorum." \
    --note "Durability: both fsync their log before acknowledging a write (etcd's default; Atoll's Raft log write is synced)." \
    --note "Reads: linearizable on both (Atoll leader lease, ReadIndex when the lease lapsed; etcd default Range). etcd requests go round-robin to all members." \
    --note "Memory: each server capped at $MEM ($LIMITER); etcd with --quota-backend-bytes 2 GiB and revision auto-compaction." \
    --note "Binaries: $(basename "$ATOLL_BIN_DIR") build of Atoll; $ETCD_VERSION." \
    | tee "$TABLE"

if [ -n "$OUT" ]; then
    mkdir -p "$(dirname "$OUT")"
    {
        echo "# Atoll vs etcd, $(date -u +%Y-%m-%d)"
        echo
        echo "Machine: $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), $(free -g | awk '/^Mem:/ {print $2}') GiB memory, data on $(df -h "$WORK" | awk 'NR==2 {print $1 " (" $2 ")"}'), kernel $(uname -r)."
        echo
        echo "Command: \`bench/compare.sh --duration $DURATION --clients $CLIENTS --workloads $WORKLOADS --records $RECORDS --mem $MEM\`"
        echo "(values 256 B, $RECORDS records loaded first; each cell runs $DURATION on Atoll, then $DURATION on etcd)."
        echo
        cat "$TABLE"
        echo
        echo '<details><summary>JSON</summary>'
        echo
        echo '```json'
        cat "$RESULT_JSON"
        echo '```'
        echo '</details>'
    } >"$OUT"
    log "wrote $OUT"
fi
