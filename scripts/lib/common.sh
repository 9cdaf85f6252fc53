# shellcheck shell=bash
# Small helpers shared by scripts/test and its libraries.

FG_APT_UPDATED=""

# Prints a stage banner ("== NAME") and remembers when the stage began.
fg_stage() {
    FG_STAGE_NAME="$1"
    FG_STAGE_START=$SECONDS
    printf '\n== %s\n' "$1"
}

# Prints how long the current stage took.
fg_stage_done() {
    printf -- '-- %s: ok (%ss)\n' "$FG_STAGE_NAME" "$((SECONDS - FG_STAGE_START))"
}

# Runs a command with a time limit. Unattended, the limit ends the command and everything it
# started (timeout's own process group); at a terminal, --foreground keeps the command in the
# terminal's process group so that Ctrl-C reaches it.
fg_timed() {
    local limit="$1"
    shift
    local rc=0
    local -a mode=()
    if [[ -t 0 ]]; then
        mode=(--foreground)
    fi
    timeout "${mode[@]}" --kill-after=60 "$limit" "$@" || rc=$?
    if ((rc == 124)); then
        echo "error: '$*' took longer than ${limit}s" >&2
    fi
    return "$rc"
}

# A TCP port on 127.0.0.1 that nothing listens on right now.
fg_free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# Runs a command as root: directly when we are root, else through non-interactive sudo.
fg_as_root() {
    if [[ "$(id -u)" -eq 0 ]]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        sudo -n "$@"
    else
        echo "error: need root (or password-less sudo) to run: $*" >&2
        return 1
    fi
}

# apt-get install -y PACKAGE...; runs apt-get update once per script run first.
fg_apt_install() {
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "error: apt-get not found; install these yourself: $*" >&2
        return 1
    fi
    if [[ -z "$FG_APT_UPDATED" ]]; then
        fg_as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
        FG_APT_UPDATED=1
    fi
    fg_as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# Makes sure a command exists, installing the Debian package that provides it if not.
fg_ensure_command() {
    local cmd="$1" pkg="${2:-$1}"
    if ! command -v "$cmd" >/dev/null 2>&1; then
        echo "-- installing $pkg (for $cmd)"
        fg_apt_install "$pkg"
    fi
}

# A Python venv at $1 with distribution $2 at version $3 in it, installed as requirement $4
# (e.g. with extras) and importable as module $5; reused when it already has that version.
fg_ensure_venv() {
    local venv="$1" dist="$2" version="$3" requirement="$4" module="$5"
    if [[ -x "$venv/bin/python" ]] && "$venv/bin/python" -c '
import importlib, sys
from importlib.metadata import version
importlib.import_module(sys.argv[3])  # importable, not just installed
sys.exit(version(sys.argv[1]) != sys.argv[2])
' "$dist" "$version" "$module" >/dev/null 2>&1; then
        return 0
    fi
    echo "-- installing $requirement into $venv"
    fg_ensure_command python3
    if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
        fg_apt_install python3-venv
    fi
    # A venv whose interpreter no longer runs (e.g. Python was upgraded) is rebuilt from scratch.
    if [[ -e "$venv" ]] && ! "$venv/bin/python" -c 'pass' >/dev/null 2>&1; then
        rm -rf "$venv"
    fi
    mkdir -p "$(dirname "$venv")"
    [[ -x "$venv/bin/python" ]] || python3 -m venv "$venv"
    PIP_NO_INPUT=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
        "$venv/bin/python" -m pip install -q "$requirement"
}
