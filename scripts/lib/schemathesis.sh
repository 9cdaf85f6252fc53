# shellcheck shell=bash
# Runs a live `fleetgate serve` and fuzzes its API with schemathesis.
#
# Needs from the caller: FG_ROOT (repo root), FG_WORK_DIR (a temp dir removed on exit),
# FG_BIN (the fleetgate binary), FG_VENV (venv with schemathesis), and common.sh's helpers.
# fg_server_stop must be called from the caller's EXIT trap too.

FG_SERVER_PID=""
FG_SERVER_LOG=""

# Tunables (environment): examples per operation, workers, hard time cap per run, seed.
: "${FLEETGATE_SCHEMATHESIS_MAX_EXAMPLES:=25}"
: "${FLEETGATE_SCHEMATHESIS_WORKERS:=1}"
: "${FLEETGATE_SCHEMATHESIS_TIMEOUT:=900}"
: "${FLEETGATE_SCHEMATHESIS_SEED:=}"
: "${FLEETGATE_SCHEMATHESIS_STATEFUL_EXAMPLES:=150}"

# fg_server_start DATA_DIR PORT [DATABASE_URL]: starts the server, waits (<= 30 s) for /readyz.
fg_server_start() {
    local data_dir="$1" port="$2" db_url="${3:-}"
    local -a db_args=()
    if [[ -n "$db_url" ]]; then
        db_args=(--database-url "$db_url")
    fi
    FG_SERVER_LOG="$data_dir.server.log"
    mkdir -p "$data_dir"
    # NO_COLOR: plain log lines in the file (tracing-subscriber honours it).
    NO_COLOR=1 "$FG_BIN" serve --data-dir "$data_dir" --api-listen "127.0.0.1:$port" "${db_args[@]}" \
        </dev/null >"$FG_SERVER_LOG" 2>&1 &
    FG_SERVER_PID=$!

    local deadline=$((SECONDS + 30))
    while ((SECONDS < deadline)); do
        if ! kill -0 "$FG_SERVER_PID" 2>/dev/null; then
            echo "error: fleetgate serve exited before it was ready; its log:" >&2
            cat "$FG_SERVER_LOG" >&2
            FG_SERVER_PID=""
            return 1
        fi
        if curl -sf -o /dev/null --max-time 2 "http://127.0.0.1:$port/readyz"; then
            echo "-- fleetgate serve ready on 127.0.0.1:$port (pid $FG_SERVER_PID)"
            return 0
        fi
        sleep 0.3
    done
    echo "error: fleetgate serve did not answer 200 on /readyz within 30 s; its log:" >&2
    cat "$FG_SERVER_LOG" >&2
    fg_server_stop
    return 1
}

# Stops the server started by fg_server_start: SIGTERM, then SIGKILL after 10 s.
fg_server_stop() {
    local pid="$FG_SERVER_PID"
    [[ -n "$pid" ]] || return 0
    FG_SERVER_PID=""
    kill -TERM "$pid" 2>/dev/null || return 0
    local deadline=$((SECONDS + 10))
    while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do
        sleep 0.2
    done
    if kill -0 "$pid" 2>/dev/null; then
        echo "-- fleetgate serve (pid $pid) ignored SIGTERM for 10 s; killing it" >&2
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}

# fg_create_control_plane BASE_URL TOKEN NAME: creates it and prints its id (nothing when the
# answer has no "id"); fails when the request does.
fg_create_control_plane() {
    local base="$1" token="$2" name="$3" body
    if ! body="$(curl -sS -f --max-time 10 -X POST \
        -H "Authorization: Bearer $token" -H 'content-type: application/json' \
        -d "{\"name\":\"$name\"}" "$base/v2/control-planes")"; then
        echo "error: POST /v2/control-planes {\"name\":\"$name\"} failed; the server answered:" >&2
        curl -s -i --max-time 10 -X POST -H "Authorization: Bearer $token" -H 'content-type: application/json' \
            -d "{\"name\":\"$name-retry\"}" "$base/v2/control-planes" >&2 || true
        echo >&2
        return 1
    fi
    printf '%s' "$body" | python3 -c '
import json, sys
try:
    doc = json.load(sys.stdin)
except ValueError:
    sys.exit(0)
cp_id = doc.get("id") if isinstance(doc, dict) else None
if isinstance(cp_id, str) and cp_id.strip() and all(c.isalnum() or c in "-_." for c in cp_id):
    print(cp_id)
'
}

# fg_schemathesis_run LABEL [DATABASE_URL]: one server, one token, two control planes, one
# schemathesis run. Returns non-zero on any failure.
fg_schemathesis_run() {
    local label="$1" db_url="${2:-}"
    local dir="$FG_WORK_DIR/schemathesis-$label"
    local data_dir="$dir/data"
    local -a db_args=()
    if [[ -n "$db_url" ]]; then
        db_args=(--database-url "$db_url")
    fi
    mkdir -p "$dir"

    local port base token
    port="$(fg_free_port)"
    base="http://127.0.0.1:$port"
    echo "-- schemathesis on $label"
    fg_server_start "$data_dir" "$port" "$db_url"

    token="$("$FG_BIN" token create --org fuzz --role admin --data-dir "$data_dir" "${db_args[@]}" </dev/null)"
    token="$(printf '%s\n' "$token" | tail -n1 | tr -d '[:space:]')"
    if [[ "$token" != fgt_* ]]; then
        echo "error: 'fleetgate token create' did not print a token starting with fgt_ (got ${#token} chars)" >&2
        return 1
    fi

    # Two control planes: every operation fuzzes inside "fuzz", except the control-plane delete,
    # which gets its own, so the others do not turn into 404s once it has run.
    local cp_id cp_delete_id
    cp_id="$(fg_create_control_plane "$base" "$token" fuzz)"
    cp_delete_id="$(fg_create_control_plane "$base" "$token" fuzz-delete)"
    local config="$dir/schemathesis.toml"
    if [[ -n "$cp_id" && -n "$cp_delete_id" ]]; then
        cat >"$config" <<TOML
[parameters]
"path.control_plane_id" = "$cp_id"

[[operations]]
include-operation-id = "delete_control_plane"
parameters = { "path.control_plane_id" = "$cp_delete_id" }

# The stateful phase follows the OpenAPI links from creating operations (valid bodies drawn by
# the hooks' flatmap_body) to the ones using the new ids: more scenarios and longer ones than
# the defaults, so the nested resources are reached.
[phases.stateful]
max-steps = 12

[phases.stateful.generation]
max-examples = $FLEETGATE_SCHEMATHESIS_STATEFUL_EXAMPLES
TOML
    else
        echo "-- warning: POST /v2/control-planes answered without an \"id\"; fuzzing with random control-plane ids" >&2
        : >"$config"
    fi

    local -a seed_args=()
    if [[ -n "$FLEETGATE_SCHEMATHESIS_SEED" ]]; then
        seed_args=(--seed "$FLEETGATE_SCHEMATHESIS_SEED")
    fi
    local rc=0
    (
        cd "$dir"
        SCHEMATHESIS_HOOKS="$FG_ROOT/scripts/schemathesis_hooks.py" \
            fg_timed "$FLEETGATE_SCHEMATHESIS_TIMEOUT" \
            "$FG_VENV/bin/schemathesis" --config-file "$config" run "$base/openapi.json" \
            --url "$base" \
            --header "Authorization: Bearer $token" \
            --checks not_a_server_error,client_errors_are_problem_json \
            --phases examples,coverage,fuzzing,stateful \
            --max-examples "$FLEETGATE_SCHEMATHESIS_MAX_EXAMPLES" \
            --workers "$FLEETGATE_SCHEMATHESIS_WORKERS" \
            --suppress-health-check all \
            --request-timeout 10 \
            --generation-database none \
            "${seed_args[@]}" </dev/null
    ) || rc=$?

    fg_server_stop
    if ((rc != 0)); then
        echo "-- last 60 lines of the fleetgate server log ($label):" >&2
        tail -n 60 "$FG_SERVER_LOG" >&2 || true
        echo "error: schemathesis on $label failed (exit $rc)" >&2
        return "$rc"
    fi
}
