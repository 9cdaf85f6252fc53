# shellcheck shell=bash
# moto (PyPI `moto[server,ec2,s3]`): the AWS EC2/S3-compatible endpoint the tests run against.
# Each test starts its own `moto_server` on a free loopback port (tests/src/moto.rs); this
# library only installs it into a venv and exports where the tests find it.
#
# Source it, then:
#   fg_moto_ensure_installed VENV    # installs moto $FG_MOTO_VERSION if missing,
#                                    # exports FLEETGATE_MOTO_SERVER=VENV/bin/moto_server
#
# Needs fg_ensure_command and fg_apt_install from scripts/lib/common.sh.

FG_MOTO_VERSION="5.2.5"

fg_moto_ensure_installed() {
    local venv="$1"
    if [[ -x "$venv/bin/moto_server" ]] && "$venv/bin/python" -c '
import sys
from importlib.metadata import version
import moto.server  # noqa: F401  (importable, not just installed)
sys.exit(version("moto") != sys.argv[1])
' "$FG_MOTO_VERSION" >/dev/null 2>&1; then
        export FLEETGATE_MOTO_SERVER="$venv/bin/moto_server"
        return 0
    fi
    echo "-- installing moto $FG_MOTO_VERSION into $venv"
    fg_ensure_command python3
    if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
        fg_apt_install python3-venv
    fi
    if [[ -e "$venv" ]] && ! "$venv/bin/python" -c 'pass' >/dev/null 2>&1; then
        rm -rf "$venv"
    fi
    mkdir -p "$(dirname "$venv")"
    [[ -x "$venv/bin/python" ]] || python3 -m venv "$venv"
    PIP_NO_INPUT=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
        "$venv/bin/python" -m pip install -q "moto[server,ec2,s3]==$FG_MOTO_VERSION"
    export FLEETGATE_MOTO_SERVER="$venv/bin/moto_server"
}
