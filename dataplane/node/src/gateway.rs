//! The running gateway: the current config compiled into a router, plugins, balancers and
//! certificates — an immutable snapshot behind an `ArcSwap`. Requests load the snapshot once
//! and finish on it even if a new one is swapped in meanwhile.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use arc_swap::ArcSwap;
use fleetgate_config::declarative::{self, DeclarativeError};
use fleetgate_config::{
    ConfigHash, EntityKind, FieldError, GatewayConfig, Protocol, EMPTY_CONFIG_HASH,
};
use fleetgate_plugins::{PluginSet, RateLimitCounters};
use fleetgate_router::Router;
use serde::Serialize;
use uuid::Uuid;

use crate::balancer::{Balancer, HealthRegistry};
use crate::connector::UpstreamTls;
use crate::license::LicenseState;
use crate::metrics::Metrics;
use crate::proxy::{UpstreamClient, UpstreamClients};
use crate::telemetry::{Telemetry, TelemetrySettings};
use crate::tls::CertificateIndex;

/// Where the running config came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ConfigSource {
    /// Pushed by the control plane.
    Cp,
    /// The on-disk cache of an earlier push.
    Cache,
    /// The `declarative_config` file.
    Declarative,
    /// Fallback storage.
    Fallback,
    /// Nothing loaded: every request gets 404.
    Empty,
}

/// A service as the proxy uses it.
#[derive(Debug)]
pub struct ServiceRuntime {
    /// Service id.
    pub id: Uuid,
    /// `http` or `https` towards the upstream.
    pub protocol: Protocol,
    /// Host (or upstream name).
    pub host: String,
    /// Port.
    pub port: u16,
    /// `host:port`, the key of pooled upstream connections.
    pub address: String,
    /// The `Host` sent upstream (without `preserve_host`).
    pub host_value: Option<http::HeaderValue>,
    /// Path prefix sent upstream.
    pub path: Option<String>,
    /// Extra attempts on safe failures.
    pub retries: u16,
    /// TCP connect limit.
    pub connect_timeout: Duration,
    /// Limit between reads from the upstream.
    pub read_timeout: Duration,
    /// Limit between writes to the upstream.
    pub write_timeout: Duration,
    /// Disabled services answer 503 like Kong does for them… Kong removes their routes;
    /// we keep the flag and answer 404.
    pub enabled: bool,
    /// The balancer when `host` names an upstream.
    pub balancer: Option<Arc<Balancer>>,
    /// Pooled client with this service's connect timeout (shared across config versions,
    /// so swaps keep warm upstream connections).
    pub client: UpstreamClient,
}

/// One compiled config version.
pub struct CompiledConfig {
    /// Hash of the config.
    pub hash: ConfigHash,
    /// Where it came from.
    pub source: ConfigSource,
    /// The control plane's config version (for `cp`/`cache` configs).
    pub version: Option<i64>,
    /// The control plane this config came from; nil for local configs (telemetry records
    /// carry it).
    pub control_plane_id: Uuid,
    /// When it was applied.
    pub applied_at: SystemTime,
    /// Entity counts, for `/status`.
    pub counts: BTreeMap<&'static str, usize>,
    /// The router.
    pub router: Router,
    /// The plugins.
    pub plugins: PluginSet,
    /// Services by id.
    pub services: HashMap<Uuid, ServiceRuntime>,
    /// HTTPS certificates by server name.
    pub certificates: CertificateIndex,
}

impl std::fmt::Debug for CompiledConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompiledConfig")
            .field("hash", &self.hash)
            .field("source", &self.source)
            .field("counts", &self.counts)
            .finish_non_exhaustive()
    }
}

/// Why a config could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The file could not be read.
    #[error("{path}: {reason}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// The YAML is broken.
    #[error("{path}: line {line}, column {column}: {message}")]
    Syntax {
        /// The file.
        path: String,
        /// Line.
        line: usize,
        /// Column.
        column: usize,
        /// Parser message.
        message: String,
    },
    /// Fields are invalid.
    #[error("{path}: {}", .errors.join("; "))]
    Invalid {
        /// The file (or "config").
        path: String,
        /// `field: reason` entries.
        errors: Vec<String>,
    },
    /// Compiling failed (router, plugins, certificates).
    #[error("{0:#}")]
    Compile(anyhow::Error),
}

/// The gateway state shared by every connection.
pub struct Gateway {
    current: ArcSwap<CompiledConfig>,
    /// Proxy metrics.
    pub metrics: Metrics,
    counters: Arc<RateLimitCounters>,
    health: Arc<HealthRegistry>,
    clients: UpstreamClients,
    loaded: AtomicBool,
    /// The license pushed by the control plane (none on a standalone node).
    pub license: LicenseState,
    /// Per-request telemetry buffer.
    pub telemetry: Arc<Telemetry>,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("current", &self.current.load().hash)
            .finish_non_exhaustive()
    }
}

impl Gateway {
    /// A gateway running the empty config (404 for everything), with default telemetry.
    pub fn new() -> anyhow::Result<Arc<Self>> {
        Self::with_telemetry(TelemetrySettings::default())
    }

    /// [`Self::new`] with these telemetry settings.
    pub fn with_telemetry(telemetry: TelemetrySettings) -> anyhow::Result<Arc<Self>> {
        let counters = Arc::new(RateLimitCounters::new());
        let health = Arc::new(HealthRegistry::default());
        let clients = UpstreamClients::default();
        let empty = compile(
            GatewayConfig::default(),
            ConfigSource::Empty,
            &counters,
            &health,
            &clients,
        )
        .map_err(|e| anyhow::anyhow!("compile the empty config: {e}"))?;
        Ok(Arc::new(Self {
            current: ArcSwap::from_pointee(empty),
            metrics: Metrics::default(),
            counters,
            health,
            clients,
            loaded: AtomicBool::new(false),
            license: LicenseState::default(),
            telemetry: Telemetry::new(telemetry),
        }))
    }

    /// The current compiled config; hold it for the whole request.
    pub fn current(&self) -> Arc<CompiledConfig> {
        self.current.load_full()
    }

    /// Whether any config (even an explicitly empty one) has been loaded.
    pub fn is_loaded(&self) -> bool {
        self.loaded.load(Ordering::Acquire)
    }

    /// Marks the gateway ready with whatever it runs (used when no source exists at all).
    pub fn mark_loaded(&self) {
        self.loaded.store(true, Ordering::Release);
    }

    /// Compiles `config` off to the side and swaps it in; the running config stays on error.
    pub fn apply(
        &self,
        config: GatewayConfig,
        source: ConfigSource,
    ) -> Result<ConfigHash, ApplyError> {
        self.apply_versioned(config, source, None)
    }

    /// [`Self::apply`] for a config that carries the control plane's version (`cp`, `cache`).
    pub fn apply_versioned(
        &self,
        config: GatewayConfig,
        source: ConfigSource,
        version: Option<i64>,
    ) -> Result<ConfigHash, ApplyError> {
        self.apply_from_control_plane(config, source, version, None)
    }

    /// [`Self::apply_versioned`] for a config of a known control plane (pushed, or cached
    /// with its control plane remembered).
    pub fn apply_from_control_plane(
        &self,
        config: GatewayConfig,
        source: ConfigSource,
        version: Option<i64>,
        control_plane_id: Option<Uuid>,
    ) -> Result<ConfigHash, ApplyError> {
        let compiled = compile(config, source, &self.counters, &self.health, &self.clients);
        match compiled {
            Ok(mut compiled) => {
                compiled.version = version;
                compiled.control_plane_id = control_plane_id.unwrap_or_default();
                let hash = compiled.hash.clone();
                self.current.store(Arc::new(compiled));
                self.loaded.store(true, Ordering::Release);
                self.metrics.config_outcome(true);
                tracing::info!(%hash, ?source, "config applied");
                Ok(hash)
            }
            Err(e) => {
                self.metrics.config_outcome(false);
                Err(e)
            }
        }
    }

    /// [`Self::apply_from_control_plane`] only while the running config is still `expected`:
    /// a config compiled slowly off to the side (a fallback import) must never replace one
    /// the control plane pushed meanwhile. `Ok(None)` when it lost that race.
    pub fn apply_unless_replaced(
        &self,
        expected: &Arc<CompiledConfig>,
        config: GatewayConfig,
        source: ConfigSource,
        version: Option<i64>,
        control_plane_id: Option<Uuid>,
    ) -> Result<Option<ConfigHash>, ApplyError> {
        let mut compiled = compile(config, source, &self.counters, &self.health, &self.clients)
            .inspect_err(|_| self.metrics.config_outcome(false))?;
        compiled.version = version;
        compiled.control_plane_id = control_plane_id.unwrap_or_default();
        let hash = compiled.hash.clone();
        let previous = self.current.compare_and_swap(expected, Arc::new(compiled));
        if !Arc::ptr_eq(&previous, expected) {
            return Ok(None);
        }
        self.loaded.store(true, Ordering::Release);
        self.metrics.config_outcome(true);
        tracing::info!(%hash, ?source, "config applied");
        Ok(Some(hash))
    }

    /// Reads, validates and applies a Kong-format declarative file.
    pub fn apply_declarative_file(&self, path: &Path) -> Result<ConfigHash, ApplyError> {
        let config = read_declarative(path)?;
        self.apply(config, ConfigSource::Declarative)
    }
}

/// Parses a declarative file into a validated config, naming file, line and field on error.
pub fn read_declarative(path: &Path) -> Result<GatewayConfig, ApplyError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ApplyError::Read {
        path: shown.clone(),
        reason: e.to_string(),
    })?;
    declarative::import(&text).map_err(|e| match e {
        DeclarativeError::Syntax {
            line,
            column,
            message,
        } => ApplyError::Syntax {
            path: shown,
            line,
            column,
            message,
        },
        DeclarativeError::Invalid(errors) => ApplyError::Invalid {
            path: shown,
            errors: field_messages(errors),
        },
    })
}

/// Validation errors as `field: reason` lines, the form every apply path reports.
pub fn field_messages(errors: Vec<FieldError>) -> Vec<String> {
    errors
        .into_iter()
        .map(|e| format!("{}: {}", e.field, e.reason))
        .collect()
}

/// Builds every runtime structure of a config. Pure apart from the shared counters and health.
pub fn compile(
    mut config: GatewayConfig,
    source: ConfigSource,
    counters: &Arc<RateLimitCounters>,
    health: &Arc<HealthRegistry>,
    clients: &UpstreamClients,
) -> Result<CompiledConfig, ApplyError> {
    config.sort_canonical();
    let hash = if config.is_empty() {
        ConfigHash(EMPTY_CONFIG_HASH.to_string())
    } else {
        config.hash()
    };
    let router = Router::build(&config)
        .map_err(|e| ApplyError::Compile(anyhow::Error::new(e).context("build the router")))?;
    // Compile regex paths now, before the router takes traffic, not on first use.
    router.precompile_regexes();
    let plugins = PluginSet::build(&config, counters.clone())
        .map_err(|e| ApplyError::Compile(anyhow::anyhow!("build the plugins: {e}")))?;
    let certificates = CertificateIndex::build(&config)
        .context("load the certificates")
        .map_err(ApplyError::Compile)?;
    let mut targets_of: HashMap<Uuid, Vec<(&str, u16)>> = HashMap::new();
    for target in &config.targets {
        if let Some(up) = &target.upstream {
            targets_of
                .entry(up.id)
                .or_default()
                .push((target.target.as_str(), target.weight));
        }
    }
    let balancers: HashMap<String, Arc<Balancer>> = config
        .upstreams
        .iter()
        .map(|u| {
            let targets = targets_of.get(&u.id).map(Vec::as_slice).unwrap_or(&[]);
            (
                u.name.to_ascii_lowercase(),
                Arc::new(Balancer::new(u, targets, health.clone())),
            )
        })
        .collect();
    let ms = |v: u32| Duration::from_millis(u64::from(v));
    // DER of every CA certificate, for the services that trust them.
    let mut ca_der: HashMap<Uuid, Vec<u8>> = HashMap::new();
    for ca in &config.ca_certificates {
        let info = ca
            .inspect()
            .map_err(|e| anyhow::anyhow!("ca certificate {}: {e}", ca.id))
            .map_err(ApplyError::Compile)?;
        ca_der.insert(ca.id, info.der);
    }
    let mut services = HashMap::new();
    for s in &config.services {
        let tls = if s.tls_verify == Some(true) {
            UpstreamTls::Verified {
                // Validation guarantees every id resolves.
                roots: s
                    .ca_certificates
                    .iter()
                    .flatten()
                    .filter_map(|id| ca_der.get(id).cloned())
                    .collect(),
                depth: s.tls_verify_depth,
            }
        } else {
            UpstreamTls::Unverified
        };
        let client = clients
            .client(ms(s.connect_timeout), ms(s.write_timeout), &tls)
            .map_err(|e| {
                ApplyError::Compile(e.context(format!("service {}: upstream TLS", s.id)))
            })?;
        services.insert(
            s.id,
            ServiceRuntime {
                id: s.id,
                protocol: s.protocol,
                host: s.host.clone(),
                port: s.port,
                address: format!("{}:{}", s.host, s.port),
                host_value: crate::balancer::host_value(None, &s.host, s.port),
                path: s.path.clone(),
                retries: s.retries,
                connect_timeout: ms(s.connect_timeout),
                read_timeout: ms(s.read_timeout),
                write_timeout: ms(s.write_timeout),
                enabled: s.enabled,
                balancer: balancers.get(&s.host.to_ascii_lowercase()).cloned(),
                client,
            },
        );
    }
    let counts = EntityKind::ALL
        .iter()
        .map(|k| (k.collection(), config.count(*k)))
        .collect();
    Ok(CompiledConfig {
        hash,
        source,
        version: None,
        control_plane_id: Uuid::nil(),
        applied_at: SystemTime::now(),
        counts,
        router,
        plugins,
        services,
        certificates,
    })
}
