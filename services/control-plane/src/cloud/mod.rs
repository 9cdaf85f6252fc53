//! The cloud-gateway driver: the control plane's side of docs/cloud-gateways.md.
//!
//! One background task runs reconcile passes over every network, dataplane group and
//! transit-gateway attachment that is not terminated: on a timer, and at once when the API
//! changes desired state ([`CloudWake::wake`]). A pass maps store rows to the provisioner's
//! desired-state types, calls its level-triggered reconcilers and writes back what they
//! observed. Nothing is remembered between passes, so a control plane that crashes at any
//! point simply converges again after its restart.
//!
//! Providers: the `local` provider (gateway nodes as `fleetgate-dp` child processes) is always
//! there, as the embedded default; `aws` is added by `--cloud-provider aws`. A row whose
//! provider this control plane does not run shows state `error` with a reason saying so.

pub mod autopilot;
pub mod catalogue;
mod membership;
mod pass;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use fleetgate_provisioner::aws::{AwsProvider, AwsSettings};
use fleetgate_provisioner::local::{LocalProvider, LocalSettings};
use fleetgate_provisioner::reconcile::ReconcileContext;
use fleetgate_provisioner::RetryPolicy;
use tokio::sync::{watch, Notify};

use crate::state::AppState;
use crate::store::CloudProvider;

pub use pass::PassSummary;

/// Which cloud this control plane provisions dedicated gateways in, besides the local one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProviderChoice {
    /// Only the local provider (the embedded default).
    #[default]
    Local,
    /// AWS (standard credential chain; `AWS_ENDPOINT_URL` for moto or another EC2-compatible
    /// endpoint) and the local provider.
    Aws,
}

/// How the driver runs.
#[derive(Debug, Clone)]
pub struct CloudSettings {
    /// Which cloud besides `local`.
    pub provider: ProviderChoice,
    /// Where the local provider keeps its networks, nodes and their prefixes.
    pub local_root: PathBuf,
    /// Settings every local node gets (more `key = "value"` lines), e.g. a short ping
    /// interval in tests.
    pub local_extra_dp_settings: Vec<(String, String)>,
    /// The `fleetgate-dp` binary local nodes run; `None`: next to the current executable.
    pub local_dp_binary: Option<PathBuf>,
    /// AMI (default: the stock image, which downloads `fleetgate-dp` from the control plane)
    /// and binary path of AWS gateway nodes.
    pub aws: AwsSettings,
    /// Time between passes when nothing wakes the driver.
    pub interval: Duration,
    /// A node that has not connected this long after launch, or whose last ping is this old,
    /// is replaced.
    pub node_connect_deadline: Duration,
    /// Lifetime of the join token a launched node trades for its certificate.
    pub join_token_ttl: Duration,
    /// Patience with each provider call.
    pub retry: RetryPolicy,
    /// `host:port` gateway nodes dial; `None`: the control plane's `cluster_endpoint`.
    pub node_cluster_endpoint: Option<String>,
}

impl CloudSettings {
    /// Defaults for a control plane whose data dir is `data_dir`: local nodes under
    /// `<data_dir>/local-gateways`, a pass every 10 s, 10 minutes for a node to connect.
    pub fn new(data_dir: &std::path::Path) -> Self {
        Self {
            provider: ProviderChoice::Local,
            local_root: data_dir.join("local-gateways"),
            local_extra_dp_settings: Vec::new(),
            local_dp_binary: None,
            aws: AwsSettings::stock(),
            interval: Duration::from_secs(10),
            node_connect_deadline: Duration::from_secs(600),
            join_token_ttl: Duration::from_secs(900),
            retry: RetryPolicy::default(),
            node_cluster_endpoint: None,
        }
    }
}

/// Wakes the driver for an early pass (the API calls it after every desired-state change).
#[derive(Debug, Default)]
pub struct CloudWake {
    notify: Notify,
}

impl CloudWake {
    /// Asks for a pass as soon as the current one (if any) ends.
    pub fn wake(&self) {
        self.notify.notify_one();
    }
}

/// The providers a pass can use, by the provider name stored on provider accounts.
pub struct Providers {
    contexts: HashMap<CloudProvider, ReconcileContext>,
    local: Arc<LocalProvider>,
}

impl std::fmt::Debug for Providers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Providers")
            .field("providers", &self.contexts.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Providers {
    /// Opens the local provider (taking over nodes a previous run left) and, when chosen, the
    /// AWS provider.
    pub async fn open(settings: &CloudSettings) -> anyhow::Result<Self> {
        let mut local_settings = LocalSettings::new(&settings.local_root);
        if let Some(binary) = &settings.local_dp_binary {
            local_settings.dp_binary = binary.clone();
        }
        local_settings
            .extra_dp_settings
            .extend(settings.local_extra_dp_settings.iter().cloned());
        let local = Arc::new(
            LocalProvider::open(local_settings)
                .await
                .context("open the local gateway provider")?,
        );
        let context = |provider: Arc<dyn fleetgate_provisioner::CloudProvider>| {
            ReconcileContext::new(provider)
                .with_retry(settings.retry)
                .with_node_connect_deadline(settings.node_connect_deadline)
        };
        let mut contexts = HashMap::new();
        contexts.insert(CloudProvider::Local, context(local.clone()));
        if settings.provider == ProviderChoice::Aws {
            let aws = AwsProvider::from_env(settings.aws.clone()).await;
            contexts.insert(CloudProvider::Aws, context(Arc::new(aws)));
        }
        Ok(Self { contexts, local })
    }

    /// The context for rows of `provider`, or why there is none.
    fn context(&self, provider: CloudProvider) -> Result<&ReconcileContext, String> {
        self.contexts.get(&provider).ok_or_else(|| {
            format!(
                "this control plane does not run the {} provider; start it with \
                 --cloud-provider {}",
                provider.as_str(),
                provider.as_str()
            )
        })
    }

    /// The local provider (quickstart and tests read its nodes' addresses).
    pub fn local(&self) -> &Arc<LocalProvider> {
        &self.local
    }
}

/// Runs passes until `stop` turns true: one at start, then whenever woken or `interval`
/// passes. A pass that fails is logged and the next one tries again.
pub fn spawn(
    state: AppState,
    providers: Arc<Providers>,
    settings: CloudSettings,
    mut stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let wake = state.cloud_wake.clone();
        loop {
            // Dropping a pass half-way at shutdown is safe: the next start converges anew.
            tokio::select! {
                summary = pass::run(&state, &providers, &settings) => {
                    if summary.failures > 0 {
                        tracing::debug!(?summary, "cloud-gateway pass finished with failures");
                    }
                }
                _ = stop.wait_for(|s| *s) => break,
            }
            tokio::select! {
                () = wake.notify.notified() => {}
                () = tokio::time::sleep(settings.interval) => {}
                _ = stop.wait_for(|s| *s) => break,
            }
        }
    })
}
