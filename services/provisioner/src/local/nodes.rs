//! Local gateway nodes: one `fleetgate-dp` process per instance, each with its own dir, prefix
//! and loopback ports, a JSON record (`instance.json`) as the source of truth, and a
//! supervisor task that restarts the process with backoff when it exits.
//!
//! Crash safety mirrors EC2: the record (with the client token and tags) is written before the
//! process starts, so a launch is findable even if the control plane dies right after; a
//! launch with a token already on record answers that instance and never starts a second one.

use std::collections::{BTreeMap, HashMap};
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use super::process::{NodeProcess, ProcessId};
use super::{read_json, write_json, LocalProvider, LocalSettings};
use crate::bootstrap::{render_dp_settings_with, toml_line, NodeLayout};
use crate::error::ProviderError;
use crate::provider::{tags, Instance, InstanceOwner, LaunchRequest, Replacement};
use crate::state::InstanceState;

/// Tag with the node's proxy address (`127.0.0.1:<port>`), for a curl line.
pub const PROXY_LISTEN_TAG: &str = "fleetgate:local-proxy-listen";
/// Tag with the node's status address.
pub const STATUS_LISTEN_TAG: &str = "fleetgate:local-status-listen";

/// A node that ran this long counts as healthy: its next exit restarts after the minimum delay.
const HEALTHY_RUN: Duration = Duration::from_secs(60);
/// How long terminated instances stay listed (EC2 shows them for about an hour too); their
/// client tokens stay spent meanwhile.
const TERMINATED_RETENTION: Duration = Duration::from_secs(3600);

/// The provider's shared state; supervisors hold it weakly so dropping the provider ends them
/// (the processes keep running, to be adopted by the next provider over the same root).
pub(super) struct Inner {
    pub settings: LocalSettings,
    /// Serialises read-modify-write of record files.
    pub files: parking_lot::Mutex<()>,
    /// Serialises launches and terminations (the client-token check and the record write).
    ops: tokio::sync::Mutex<()>,
    supervisors: parking_lot::Mutex<HashMap<String, Supervisor>>,
}

impl Inner {
    pub fn new(settings: LocalSettings) -> Self {
        Self {
            settings,
            files: parking_lot::Mutex::new(()),
            ops: tokio::sync::Mutex::new(()),
            supervisors: parking_lot::Mutex::new(HashMap::new()),
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        for (_, supervisor) in self.supervisors.get_mut().drain() {
            supervisor.task.abort();
        }
    }
}

struct Supervisor {
    stop: mpsc::UnboundedSender<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

/// One instance's record (`instance.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct InstanceRecord {
    id: String,
    client_token: String,
    tags: BTreeMap<String, String>,
    slot: u32,
    subnet_id: String,
    hostname: String,
    proxy_listen: SocketAddr,
    status_listen: SocketAddr,
    state: InstanceState,
    pid: Option<u32>,
    pid_start_time: Option<u64>,
    launched_at_ms: u64,
    terminated_at_ms: Option<u64>,
    restarts: u32,
}

impl InstanceRecord {
    fn process(&self) -> Option<ProcessId> {
        Some(ProcessId {
            pid: self.pid?,
            start_time: self.pid_start_time?,
        })
    }

    fn view(&self) -> Instance {
        Instance {
            id: self.id.clone(),
            slot: Some(self.slot),
            state: Some(self.state),
            private_ip: Some("127.0.0.1".into()),
            private_dns_name: Some(self.hostname.clone()),
            launched_at: Some(from_ms(self.launched_at_ms)),
            subnet_id: Some(self.subnet_id.clone()),
            replaces: Replacement::from_tags(|key| self.tags.get(key).map(String::as_str)),
        }
    }
}

/// A local node as the local provider sees it: where to reach it and what runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalNode {
    /// Instance id.
    pub instance_id: String,
    /// Slot in its group.
    pub slot: u32,
    /// The configuration it belongs to (tag).
    pub configuration_id: Option<Uuid>,
    /// The host name it reports to the control plane.
    pub hostname: String,
    /// State.
    pub state: InstanceState,
    /// Proxy address (`curl http://<proxy>/…`).
    pub proxy: SocketAddr,
    /// `/status` address.
    pub status: SocketAddr,
    /// The running process, when one is recorded and alive.
    pub pid: Option<u32>,
    /// How often the supervisor restarted it.
    pub restarts: u32,
    /// Its dir (settings, log, prefix).
    pub dir: PathBuf,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn from_ms(ms: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_millis(ms)
}

/// A loopback port that was free a moment ago (the node binds it; a clash shows as a node
/// that exits and is restarted, logged).
fn free_port() -> std::io::Result<SocketAddr> {
    TcpListener::bind("127.0.0.1:0")?.local_addr()
}

fn instances_dir(settings: &LocalSettings) -> PathBuf {
    settings.root_dir.join("instances")
}

fn instance_dir(settings: &LocalSettings, id: &str) -> PathBuf {
    instances_dir(settings).join(id)
}

fn record_path(settings: &LocalSettings, id: &str) -> PathBuf {
    instance_dir(settings, id).join("instance.json")
}

fn records(settings: &LocalSettings) -> anyhow::Result<Vec<InstanceRecord>> {
    let dir = instances_dir(settings);
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir).with_context(|| format!("list {}", dir.display()))? {
        let entry = entry.with_context(|| format!("list {}", dir.display()))?;
        if let Some(record) = read_json(&entry.path().join("instance.json"))? {
            out.push(record);
        }
    }
    out.sort_by(|a: &InstanceRecord, b| a.id.cmp(&b.id));
    Ok(out)
}

/// Read-modify-write of one record under the files lock; `None` when there is no record.
fn change_record<T>(
    inner: &Inner,
    id: &str,
    change: impl FnOnce(&mut InstanceRecord) -> T,
) -> anyhow::Result<Option<T>> {
    let _guard = inner.files.lock();
    let path = record_path(&inner.settings, id);
    let Some(mut record) = read_json::<InstanceRecord>(&path)? else {
        return Ok(None);
    };
    let out = change(&mut record);
    write_json(&path, &record)?;
    Ok(Some(out))
}

impl LocalProvider {
    pub(super) fn local_find_instances(
        &self,
        owner: InstanceOwner,
    ) -> Result<Vec<Instance>, ProviderError> {
        let (key, value) = match owner {
            InstanceOwner::Configuration(id) => (tags::CONFIGURATION_ID, id.to_string()),
            InstanceOwner::Network(id) => (tags::NETWORK_ID, id.to_string()),
        };
        let all = records(&self.inner.settings)
            .map_err(|e| ProviderError::other("describe local instances", e))?;
        Ok(all
            .iter()
            .filter(|r| r.tags.get(key) == Some(&value))
            .map(InstanceRecord::view)
            .collect())
    }

    /// Every local node on record (terminated ones while they are still listed).
    pub fn nodes(&self) -> anyhow::Result<Vec<LocalNode>> {
        Ok(records(&self.inner.settings)?
            .into_iter()
            .map(|r| LocalNode {
                dir: instance_dir(&self.inner.settings, &r.id),
                pid: r.process().filter(ProcessId::is_alive).map(|p| p.pid),
                configuration_id: r
                    .tags
                    .get(tags::CONFIGURATION_ID)
                    .and_then(|v| v.parse().ok()),
                instance_id: r.id,
                slot: r.slot,
                hostname: r.hostname,
                state: r.state,
                proxy: r.proxy_listen,
                status: r.status_listen,
                restarts: r.restarts,
            })
            .collect())
    }

    /// One node by instance id.
    pub fn node(&self, instance_id: &str) -> anyhow::Result<Option<LocalNode>> {
        Ok(self
            .nodes()?
            .into_iter()
            .find(|n| n.instance_id == instance_id))
    }

    pub(super) async fn local_launch(
        &self,
        launch: &LaunchRequest,
    ) -> Result<Instance, ProviderError> {
        const OP: &str = "run instances";
        let _ops = self.inner.ops.lock().await;
        let settings = &self.inner.settings;
        let all = records(settings).map_err(|e| ProviderError::other(OP, e))?;
        if let Some(earlier) = all.iter().find(|r| r.client_token == launch.client_token) {
            // EC2's idempotency: the same token answers the same instance, whatever its state.
            return Ok(earlier.view());
        }
        // Bad bootstrap input is the user's to fix (as on AWS): refuse before writing anything.
        crate::bootstrap::render_dp_settings(
            &launch.group.bootstrap,
            &launch.join_token,
            "/cluster-ca.pem",
        )
        .map_err(|e| ProviderError::Rejected {
            operation: OP.into(),
            code: "FleetgateInvalidBootstrap".into(),
            message: e.to_string(),
        })?;
        let mut record = self
            .prepare(launch)
            .map_err(|e| ProviderError::other(OP, e))?;
        let dir = instance_dir(settings, &record.id);
        let spawned = NodeProcess::spawn(
            &settings.dp_binary,
            &dir.join("dp.toml"),
            &dir.join("dp.log"),
            &record.hostname,
        );
        match spawned {
            Ok(process) => {
                let id = process.id();
                record.pid = Some(id.pid);
                record.pid_start_time = Some(id.start_time);
                record.state = InstanceState::Running;
                write_json(&record_path(settings, &record.id), &record)
                    .map_err(|e| ProviderError::other(OP, e))?;
                tracing::info!(instance = %record.id, pid = id.pid, proxy = %record.proxy_listen, status = %record.status_listen, "local gateway node started");
                self.supervise(record.id.clone(), Some(process));
                Ok(record.view())
            }
            Err(e) => {
                // Nothing runs; the record stays (terminated) so the token is spent, as on EC2.
                record.state = InstanceState::Terminated;
                record.terminated_at_ms = Some(now_ms());
                write_json(&record_path(settings, &record.id), &record)
                    .map_err(|e| ProviderError::other(OP, e))?;
                Err(ProviderError::Rejected {
                    operation: OP.into(),
                    code: "LocalNodeStartFailed".into(),
                    message: format!("{e:#}; check the local provider's fleetgate-dp path"),
                })
            }
        }
    }

    /// Writes the node's dir, settings and record (state `pending`) before anything runs.
    fn prepare(&self, launch: &LaunchRequest) -> anyhow::Result<InstanceRecord> {
        let settings = &self.inner.settings;
        let group = &launch.group;
        let simple = Uuid::new_v4().simple().to_string();
        let id = format!("local-i-{}", &simple[..17]);
        let dir = instance_dir(settings, &id);
        let prefix = dir.join("prefix");
        std::fs::create_dir_all(&prefix)
            .with_context(|| format!("create the node dir {}", prefix.display()))?;
        let proxy = free_port().context("reserve a loopback proxy port")?;
        let status = loop {
            let status = free_port().context("reserve a loopback status port")?;
            if status != proxy {
                break status;
            }
        };
        let ca_path = dir.join("cluster-ca.pem");
        std::fs::write(&ca_path, &group.bootstrap.cluster_ca_cert_pem)
            .with_context(|| format!("write {}", ca_path.display()))?;
        let layout = NodeLayout {
            prefix: prefix.display().to_string(),
            proxy_listen: proxy.to_string(),
            proxy_listen_tls: None,
            status_listen: Some(status.to_string()),
        };
        // The same renderer as cloud user-data: the node gets `cluster_join_token` and makes
        // its own key, which it keeps in its prefix; no key is ever written here.
        let mut toml = render_dp_settings_with(
            &group.bootstrap,
            &launch.join_token,
            &ca_path.display().to_string(),
            &layout,
        )
        .context("render the node settings")?;
        for (key, value) in &settings.extra_dp_settings {
            toml.push_str(&toml_line(key, value));
        }
        std::fs::write(dir.join("dp.toml"), toml).context("write the node settings")?;

        let mut tags = BTreeMap::from([
            (
                tags::MANAGED_BY.to_string(),
                tags::MANAGED_BY_VALUE.to_string(),
            ),
            (
                tags::CONFIGURATION_ID.to_string(),
                group.configuration_id.to_string(),
            ),
            (
                tags::CONTROL_PLANE_ID.to_string(),
                group.control_plane_id.to_string(),
            ),
            (tags::NETWORK_ID.to_string(), group.network_id.to_string()),
            (tags::NODE_SLOT.to_string(), launch.slot.to_string()),
            (PROXY_LISTEN_TAG.to_string(), proxy.to_string()),
            (STATUS_LISTEN_TAG.to_string(), status.to_string()),
        ]);
        tags.insert(
            tags::NAME.to_string(),
            format!("fleetgate-dp {} #{}", group.configuration_id, launch.slot),
        );
        if let Some(replaces) = &launch.replaces {
            tags.extend(replaces.tags().map(|(k, v)| (k.to_string(), v)));
        }
        let record = InstanceRecord {
            hostname: format!("local-{}-{}", launch.slot, &simple[..8]),
            id,
            client_token: launch.client_token.clone(),
            tags,
            slot: launch.slot,
            subnet_id: launch.subnet_id.clone(),
            proxy_listen: proxy,
            status_listen: status,
            state: InstanceState::Pending,
            pid: None,
            pid_start_time: None,
            launched_at_ms: now_ms(),
            terminated_at_ms: None,
            restarts: 0,
        };
        write_json(&record_path(settings, &record.id), &record)?;
        Ok(record)
    }

    pub(super) async fn local_terminate(&self, ids: &[String]) -> Result<(), ProviderError> {
        const OP: &str = "terminate instances";
        let _ops = self.inner.ops.lock().await;
        let mut stopping = tokio::task::JoinSet::new();
        for id in ids {
            let marked = change_record(&self.inner, id, |r| {
                if r.state.is_live()
                    || matches!(r.state, InstanceState::Stopping | InstanceState::Stopped)
                {
                    r.state = InstanceState::ShuttingDown;
                }
                r.state == InstanceState::ShuttingDown
            })
            .map_err(|e| ProviderError::other(OP, e))?;
            // Unknown or already terminated ids count as success, as on EC2.
            if marked == Some(true) {
                let inner = self.inner.clone();
                let id = id.clone();
                stopping.spawn(async move { finish_termination(&inner, &id).await });
            }
        }
        while let Some(done) = stopping.join_next().await {
            done.map_err(|e| ProviderError::other(OP, anyhow::Error::new(e)))?
                .map_err(|e| ProviderError::other(OP, e))?;
        }
        Ok(())
    }

    /// Takes over the root dir's nodes (see [`LocalProvider::open`]).
    pub(super) async fn take_over(&self) -> anyhow::Result<()> {
        let settings = &self.inner.settings;
        for record in records(settings)? {
            match record.state {
                InstanceState::Pending | InstanceState::Running => {
                    let alive = record.process().filter(ProcessId::is_alive);
                    match alive {
                        Some(p) => {
                            tracing::info!(instance = %record.id, pid = p.pid, "adopted a running local gateway node")
                        }
                        None => {
                            tracing::info!(instance = %record.id, "local gateway node is not running; starting it again")
                        }
                    }
                    self.supervise(record.id.clone(), alive.map(NodeProcess::Adopted));
                }
                InstanceState::ShuttingDown | InstanceState::Stopping | InstanceState::Stopped => {
                    // A termination a crash interrupted: finish it, or the instance would stay
                    // "shutting down" forever.
                    change_record(&self.inner, &record.id, |r| {
                        r.state = InstanceState::ShuttingDown;
                    })?;
                    finish_termination(&self.inner, &record.id).await?;
                }
                InstanceState::Terminated => {
                    let age = now_ms().saturating_sub(record.terminated_at_ms.unwrap_or(0));
                    if Duration::from_millis(age) > TERMINATED_RETENTION {
                        let dir = instance_dir(settings, &record.id);
                        std::fs::remove_dir_all(&dir)
                            .with_context(|| format!("remove {}", dir.display()))?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Starts the supervisor of one instance (`process`: what already runs, if anything).
    fn supervise(&self, id: String, process: Option<NodeProcess>) {
        let (stop, commands) = mpsc::unbounded_channel();
        let task = tokio::spawn(supervise(
            Arc::downgrade(&self.inner),
            id.clone(),
            process,
            commands,
        ));
        let old = self
            .inner
            .supervisors
            .lock()
            .insert(id, Supervisor { stop, task });
        if let Some(old) = old {
            old.task.abort();
        }
    }
}

/// Stops the instance's process (through its supervisor when there is one) and records it
/// `terminated`. The record already says `shutting-down`.
async fn finish_termination(inner: &Arc<Inner>, id: &str) -> anyhow::Result<()> {
    let supervisor = inner.supervisors.lock().remove(id);
    let mut stopped = false;
    if let Some(supervisor) = supervisor {
        let (ack, acked) = oneshot::channel();
        if supervisor.stop.send(ack).is_ok() {
            stopped = acked.await.is_ok();
        }
        supervisor.task.abort();
    }
    if !stopped {
        let record: Option<InstanceRecord> = read_json(&record_path(&inner.settings, id))?;
        if let Some(process) = record.and_then(|r| r.process()).filter(ProcessId::is_alive) {
            NodeProcess::Adopted(process)
                .stop(inner.settings.stop_grace)
                .await;
        }
    }
    change_record(inner, id, |r| {
        r.state = InstanceState::Terminated;
        r.terminated_at_ms = Some(now_ms());
        r.pid = None;
        r.pid_start_time = None;
    })?;
    tracing::info!(instance = %id, "local gateway node terminated");
    Ok(())
}

/// What woke the supervisor.
enum Event {
    Exited(String),
    Stop(Option<oneshot::Sender<()>>),
}

/// Keeps one node running: restarts it with backoff when it exits; on a stop request stops it
/// (SIGTERM, grace, SIGKILL) and acknowledges. Ends quietly, leaving the process running, when
/// the provider is dropped.
async fn supervise(
    inner: Weak<Inner>,
    id: String,
    mut process: Option<NodeProcess>,
    mut commands: mpsc::UnboundedReceiver<oneshot::Sender<()>>,
) {
    let mut delay = None::<Duration>;
    loop {
        let Some(strong) = inner.upgrade() else {
            return;
        };
        let (grace, min, max) = (
            strong.settings.stop_grace,
            strong.settings.restart_backoff_min,
            strong.settings.restart_backoff_max,
        );
        let current = match process.take() {
            Some(p) => Ok(p),
            None => match start(&strong, &id) {
                Ok(Some(p)) => Ok(p),
                // Terminated (or its record removed) meanwhile: nothing to keep running.
                Ok(None) => return,
                Err(e) => Err(e),
            },
        };
        drop(strong);
        let started = Instant::now();
        let event = match current {
            Ok(mut p) => {
                let event = tokio::select! {
                    how = p.exited() => Event::Exited(how),
                    ack = commands.recv() => Event::Stop(ack),
                };
                if let Event::Stop(Some(ack)) = event {
                    p.stop(grace).await;
                    let _ = ack.send(());
                    return;
                }
                event
            }
            Err(e) => Event::Exited(format!("could not be started: {e:#}")),
        };
        let Event::Exited(how) = event else {
            // The provider went away: leave the process to the next one.
            return;
        };
        let next = match delay {
            Some(d) if started.elapsed() < HEALTHY_RUN => (d * 2).min(max),
            _ => min,
        };
        delay = Some(next);
        tracing::warn!(instance = %id, exit = %how, restart_in_ms = next.as_millis() as u64, "local gateway node exited; restarting it after a backoff");
        tokio::select! {
            () = tokio::time::sleep(next) => {}
            ack = commands.recv() => {
                if let Some(ack) = ack {
                    let _ = ack.send(());
                }
                return;
            }
        }
    }
}

/// Starts the node's process again from its record; `None` when it should no longer run.
fn start(inner: &Inner, id: &str) -> anyhow::Result<Option<NodeProcess>> {
    let settings = &inner.settings;
    let Some(record) = read_json::<InstanceRecord>(&record_path(settings, id))? else {
        return Ok(None);
    };
    if !record.state.is_live() {
        return Ok(None);
    }
    let dir = instance_dir(settings, id);
    let process = NodeProcess::spawn(
        &settings.dp_binary,
        &dir.join("dp.toml"),
        &dir.join("dp.log"),
        &record.hostname,
    )?;
    let pid = process.id();
    change_record(inner, id, |r| {
        r.pid = Some(pid.pid);
        r.pid_start_time = Some(pid.start_time);
        r.restarts += u32::from(r.state == InstanceState::Running);
        if r.state == InstanceState::Pending {
            r.state = InstanceState::Running;
        }
    })?;
    tracing::info!(instance = %id, pid = pid.pid, "local gateway node (re)started");
    Ok(Some(process))
}
