# shellcheck shell=bash
# moto (PyPI `moto[server,ec2,s3]`): the AWS EC2/S3-compatible endpoint the tests run against.
# Each test starts its own `moto_server` on a free loopback port (tests/src/moto.rs); this
# library only installs it into a venv and exports where the tests find it.
#
# Source it, then:
#   fg_moto_ensure_installed VENV    # installs moto $FG_MOTO_VERSION if missing,
#                                    # exports FLEETGATE_MOTO_SERVER=VENV/bin/moto_server
#
# Needs fg_ensure_venv from scripts/lib/common.sh.

FG_MOTO_VERSION="5.2.5"

fg_moto_ensure_installed() {
    local venv="$1"
    fg_ensure_venv "$venv" moto "$FG_MOTO_VERSION" "moto[server,ec2,s3]==$FG_MOTO_VERSION" moto.server
    export FLEETGATE_MOTO_SERVER="$venv/bin/moto_server"
}
