# shellcheck shell=bash
# Helpers for scripts/bench-proxy: render the templates beside this file, start and stop the
# processes under test, wait for them, and read wrk's output and /proc.
#
# Every process started with bench_start is remembered in BENCH_PIDS; bench_stop_all ends them
# (and the children nginx forked) and is what the caller's EXIT trap runs.

BENCH_PIDS=()
BENCH_LAST_PID=""

# bench_render TEMPLATE OUT KEY=VALUE...: copies TEMPLATE to OUT with every @KEY@ replaced by
# VALUE; fails when a @NAME@ placeholder is left over.
bench_render() {
    local template="$1" out="$2" text pair key value
    shift 2
    text="$(<"$template")"
    for pair in "$@"; do
        key="${pair%%=*}"
        value="${pair#*=}"
        # Quoted replacement: bash 5.2 would otherwise expand '&' in it.
        text="${text//"@$key@"/"$value"}"
    done
    if [[ "$text" =~ @[A-Z_]+@ ]]; then
        echo "error: $template: placeholder ${BASH_REMATCH[0]} was not given a value" >&2
        return 1
    fi
    printf '%s\n' "$text" >"$out"
}

# bench_free_ports N: N distinct TCP ports on 127.0.0.1 that nothing listens on right now
# (all bound at once, so no two are the same), one a line.
bench_free_ports() {
    python3 - "$1" <<'PY'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
for s in socks:
    print(s.getsockname()[1])
    s.close()
PY
}

# bench_start LOG CPUS CMD...: runs CMD in the background with its output in LOG, pinned to
# the CPU list CPUS when that is not empty (taskset execs, so the pid is CMD's own). Sets
# BENCH_LAST_PID.
bench_start() {
    local log="$1" cpus="$2"
    shift 2
    if [[ -n "$cpus" ]]; then
        taskset -c "$cpus" "$@" >"$log" 2>&1 </dev/null &
    else
        "$@" >"$log" 2>&1 </dev/null &
    fi
    BENCH_LAST_PID=$!
    BENCH_PIDS+=("$BENCH_LAST_PID")
}

# bench_tree_pids PID: PID and its direct children (an nginx master and its workers).
bench_tree_pids() {
    local pid="$1"
    [[ -d "/proc/$pid" ]] || return 0
    printf '%s\n' "$pid"
    pgrep -P "$pid" 2>/dev/null || true
}

# bench_stop PID: SIGTERM to PID (nginx: fast shutdown), SIGKILL to whatever of it and its
# children is left after 5 s.
bench_stop() {
    local pid="$1" i
    local -a tree
    mapfile -t tree < <(bench_tree_pids "$pid")
    ((${#tree[@]})) || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    for pid in "${tree[@]}"; do
        kill -KILL "$pid" 2>/dev/null || true
    done
    wait "${tree[0]}" 2>/dev/null || true
}

# Stops every process bench_start started, newest first.
bench_stop_all() {
    local i
    for ((i = ${#BENCH_PIDS[@]} - 1; i >= 0; i--)); do
        bench_stop "${BENCH_PIDS[i]}"
    done
    BENCH_PIDS=()
}

# bench_http URL [CURL_ARGS...]: prints "STATUS BYTES" of one GET (STATUS 000 when the
# connection failed).
bench_http() {
    local url="$1"
    shift
    curl -s -o /dev/null --max-time 5 -w '%{http_code} %{size_download}' "$@" "$url" 2>/dev/null ||
        true
}

# bench_wait_http NAME PID LOG URL STATUS TIMEOUT_S: polls URL until it answers STATUS; fails
# (printing the end of LOG) when PID exits first or TIMEOUT_S passes.
bench_wait_http() {
    local name="$1" pid="$2" log="$3" url="$4" want="$5" limit="$6" got=""
    local deadline=$((SECONDS + limit))
    while ((SECONDS < deadline)); do
        if ! kill -0 "$pid" 2>/dev/null; then
            local rc=0
            wait "$pid" 2>/dev/null || rc=$?
            echo "error: $name exited (status $rc) before $url answered $want; its log:" >&2
            bench_show_log "$log"
            return 1
        fi
        got="$(bench_http "$url")"
        [[ "${got%% *}" == "$want" ]] && return 0
        sleep 0.2
    done
    echo "error: $name: $url did not answer $want within ${limit}s (last: '${got%% *}'); its log:" >&2
    bench_show_log "$log"
    return 1
}

# The last 60 lines of a log, indented, on stderr.
bench_show_log() {
    if [[ -s "$1" ]]; then
        tail -n 60 "$1" | sed 's/^/    | /' >&2
    else
        echo "    (log $1 is empty)" >&2
    fi
}

# bench_expect NAME URL STATUS BYTES [CURL_ARGS...]: one GET must answer STATUS with BYTES of
# body (BYTES "-" for any size).
bench_expect() {
    local name="$1" url="$2" status="$3" bytes="$4" got
    shift 4
    got="$(bench_http "$url" "$@")"
    if [[ "${got%% *}" != "$status" ]] || { [[ "$bytes" != - ]] && [[ "${got#* }" != "$bytes" ]]; }; then
        echo "error: $name: GET $url ${*:+($*) }answered '$got' (status bytes), expected '$status $bytes'" >&2
        return 1
    fi
}

# bench_rss_kib PID...: the summed VmRSS of the given processes, in KiB.
bench_rss_kib() {
    local pid total=0 kib
    for pid in "$@"; do
        kib="$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status" 2>/dev/null || true)"
        total=$((total + ${kib:-0}))
    done
    printf '%s\n' "$total"
}

# bench_cpu_ticks PID...: summed user+system CPU time of the given processes, in clock ticks.
bench_cpu_ticks() {
    local pid total=0 stat rest
    local -a f
    for pid in "$@"; do
        stat="$(cat "/proc/$pid/stat" 2>/dev/null || true)"
        [[ -n "$stat" ]] || continue
        rest="${stat##*) }" # after the command name, which may hold spaces
        read -r -a f <<<"$rest"
        # rest starts at field 3 (state): utime is field 14, stime field 15.
        total=$((total + f[11] + f[12]))
    done
    printf '%s\n' "$total"
}

# bench_seconds DURATION: wrk's duration syntax (10, 10s, 2m, 1h) in whole seconds.
bench_seconds() {
    local d="$1"
    case "$d" in
    *[0-9]s) printf '%s\n' "${d%s}" ;;
    *[0-9]m) printf '%s\n' "$((${d%m} * 60))" ;;
    *[0-9]h) printf '%s\n' "$((${d%h} * 3600))" ;;
    *) printf '%s\n' "$d" ;;
    esac
}

# bench_wrk_parse FILE: reads `wrk --latency` output and prints
#   REQ_PER_S P50_MS P99_MS ERRORS REQUESTS
# ERRORS adds socket errors (connect, read, write, timeout) and non-2xx/3xx responses.
bench_wrk_parse() {
    awk '
    function ms(v,    n, u) {
        n = v + 0
        u = v
        sub(/^[0-9.]+/, "", u)
        if (u == "us") return n / 1000
        if (u == "ms") return n
        if (u == "s") return n * 1000
        if (u == "m") return n * 60000
        if (u == "h") return n * 3600000
        return -1
    }
    /^Requests\/sec:/ { rps = $2 }
    /requests in/ { reqs = $1 }
    /Latency Distribution/ { dist = 1; next }
    dist && $1 == "50%" { p50 = ms($2) }
    dist && $1 == "99%" { p99 = ms($2); dist = 0 }
    /Socket errors:/ {
        for (i = 1; i <= NF; i++) if ($i ~ /^[0-9]+,?$/) errs += $i + 0
    }
    /Non-2xx or 3xx responses:/ { errs += $NF }
    END {
        if (rps == "" || p50 == "" || p99 == "") exit 1
        printf "%s %.3f %.3f %d %s\n", rps, p50, p99, errs, reqs
    }' "$1"
}

# bench_busy_percent: how much of the machine's CPU time other processes used over the next
# second (from /proc/stat), as a whole percentage.
bench_busy_percent() {
    local -a a b
    read -r -a a < <(grep '^cpu ' /proc/stat)
    sleep 1
    read -r -a b < <(grep '^cpu ' /proc/stat)
    # Fields after "cpu": user nice system idle iowait irq softirq steal ...
    local total=0 idle i
    for ((i = 1; i <= 8; i++)); do
        total=$((total + b[i] - a[i]))
    done
    idle=$((b[4] - a[4] + b[5] - a[5]))
    ((total > 0)) || total=1
    printf '%s\n' "$(((100 * (total - idle) + total / 2) / total))"
}

# bench_machine_ticks: "BUSY STEAL" so far in clock ticks, from /proc/stat: the time all CPUs
# ran something (user, nice, system, irq, softirq) and the time the hypervisor kept them from it.
bench_machine_ticks() {
    local -a c
    read -r -a c < <(grep '^cpu ' /proc/stat)
    printf '%s %s\n' "$((c[1] + c[2] + c[3] + c[6] + c[7]))" "${c[8]:-0}"
}

# bench_children_ticks VAR TMPFILE: sets VAR to the user+system CPU time of this shell's
# finished children so far, in clock ticks, from the `times` builtin. Call it directly, never
# in $(...): a subshell has children of its own.
bench_children_ticks() {
    local tmp="$2" line
    times >"$tmp"
    line="$(sed -n 2p "$tmp")"
    printf -v "$1" '%s' "$(awk -v l="$line" -v hz="$(getconf CLK_TCK)" 'BEGIN {
        n = split(l, f, " "); s = 0
        for (i = 1; i <= n; i++) { split(f[i], p, "m"); sub(/s$/, "", p[2]); s += p[1] * 60 + p[2] }
        printf "%d\n", s * hz + 0.5
    }')"
}
