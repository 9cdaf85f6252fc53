# shellcheck shell=bash disable=SC2034  # FG_PG_* are read by the scripts that source this
# A throwaway PostgreSQL server for the test suite: installed if missing, started in a temp dir
# on a free loopback port, stopped and removed by fg_pg_stop.
#
# Source it, then:
#   fg_pg_ensure_installed        # apt-get install postgresql when no initdb is found
#   fg_pg_start                   # sets FG_PG_BIN, FG_PG_DIR, FG_PG_PORT, FG_PG_URL
#   fg_pg_psql -c 'create database x'
#   fg_pg_stop                    # safe to call more than once, and when nothing was started
#
# Needs fg_free_port and fg_apt_install from scripts/lib/common.sh.

FG_PG_BIN=""
FG_PG_DIR=""
FG_PG_PORT=""
FG_PG_URL=""

# The newest /usr/lib/postgresql/*/bin that has an initdb, or nothing.
fg_pg_find_bin() {
    local d best=""
    for d in /usr/lib/postgresql/*/bin; do
        [[ -x "$d/initdb" ]] || continue
        if [[ -z "$best" ]] || [[ "$(printf '%s\n%s\n' "$best" "$d" | sort -V | tail -n1)" == "$d" ]]; then
            best="$d"
        fi
    done
    printf '%s' "$best"
}

fg_pg_ensure_installed() {
    if [[ -z "$(fg_pg_find_bin)" ]]; then
        echo "-- installing PostgreSQL (apt-get install postgresql)"
        fg_apt_install postgresql
    fi
    FG_PG_BIN="$(fg_pg_find_bin)"
    if [[ -z "$FG_PG_BIN" ]]; then
        echo "error: no initdb under /usr/lib/postgresql/*/bin after installing postgresql" >&2
        return 1
    fi
}

# Runs a command as the user that owns the cluster: postgres when we are root (the server
# refuses to run as root), else ourselves.
fg_pg_as_owner() {
    if [[ "$(id -u)" -eq 0 ]]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

# Starts a fresh cluster; tries a few ports in case another process grabs the free one first.
fg_pg_start() {
    [[ -n "$FG_PG_BIN" ]] || FG_PG_BIN="$(fg_pg_find_bin)"
    if [[ -z "$FG_PG_BIN" ]]; then
        echo "error: PostgreSQL is not installed (call fg_pg_ensure_installed)" >&2
        return 1
    fi
    if [[ "$(id -u)" -eq 0 ]] && ! id postgres >/dev/null 2>&1; then
        useradd --system --home-dir /var/lib/postgresql --shell /bin/bash postgres
    fi

    FG_PG_DIR="$(mktemp -d "${TMPDIR:-/tmp}/fleetgate-pg.XXXXXX")"
    chmod 755 "$FG_PG_DIR"
    if [[ "$(id -u)" -eq 0 ]]; then
        chown postgres: "$FG_PG_DIR"
    fi
    # Run from inside the temp dir: the postgres user may not be able to read our cwd.
    if ! (cd "$FG_PG_DIR" && fg_pg_as_owner "$FG_PG_BIN/initdb" -D "$FG_PG_DIR/data" -U postgres \
        --auth=trust -E UTF8 --no-instructions >"$FG_PG_DIR/initdb.log" 2>&1); then
        echo "error: initdb failed:" >&2
        cat "$FG_PG_DIR/initdb.log" >&2
        return 1
    fi

    local attempt
    for attempt in 1 2 3; do
        FG_PG_PORT="$(fg_free_port)"
        if (cd "$FG_PG_DIR" && fg_pg_as_owner "$FG_PG_BIN/pg_ctl" -D "$FG_PG_DIR/data" \
            -l "$FG_PG_DIR/server.log" -w -t 60 start \
            -o "-c listen_addresses=127.0.0.1 -p $FG_PG_PORT -k $FG_PG_DIR -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300" \
            >/dev/null); then
            FG_PG_URL="postgres://postgres@127.0.0.1:$FG_PG_PORT/postgres"
            echo "-- PostgreSQL $("$FG_PG_BIN/postgres" --version | awk '{print $3}') on 127.0.0.1:$FG_PG_PORT (data in $FG_PG_DIR)"
            return 0
        fi
        echo "-- PostgreSQL did not start on port $FG_PG_PORT (attempt $attempt):" >&2
        tail -n 20 "$FG_PG_DIR/server.log" >&2 || true
    done
    echo "error: could not start PostgreSQL" >&2
    return 1
}

# psql against the throwaway server, as its superuser; extra arguments are passed on.
fg_pg_psql() {
    "$FG_PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$FG_PG_PORT" -U postgres -d postgres "$@"
}

fg_pg_stop() {
    if [[ -n "$FG_PG_DIR" && -d "$FG_PG_DIR" ]]; then
        if [[ -f "$FG_PG_DIR/data/postmaster.pid" ]]; then
            (cd "$FG_PG_DIR" && fg_pg_as_owner "$FG_PG_BIN/pg_ctl" -D "$FG_PG_DIR/data" -m fast -w -t 30 stop \
                >/dev/null 2>&1) || {
                # Last resort: the postmaster's pid is the first line of postmaster.pid.
                local pid
                pid="$(head -n1 "$FG_PG_DIR/data/postmaster.pid" 2>/dev/null || true)"
                if [[ -n "$pid" ]]; then
                    kill -QUIT "$pid" 2>/dev/null || true
                fi
            }
        fi
        rm -rf "$FG_PG_DIR"
    fi
    FG_PG_DIR=""
    FG_PG_PORT=""
    FG_PG_URL=""
}
