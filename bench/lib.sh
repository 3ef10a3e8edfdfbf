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
