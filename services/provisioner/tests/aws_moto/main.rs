//! The provisioner against moto (AWS EC2 on loopback): each test starts its own moto server.
//! Needs `moto_server` (scripts/test installs it; `FLEETGATE_MOTO_SERVER` or
//! `~/.cache/fleetgate-moto/bin/moto_server`).

mod crash;
mod dataplane_group;
mod faults;
mod network;
mod support;
mod transit_gateway;
