//! The `fleetgate` command line.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::cloud::{CloudSettings, ProviderChoice};
use crate::cluster::listener::{parse_duration, ClusterSettings};
use crate::cluster::tls::ClusterTlsFlags;
use crate::server::{self, ServerSettings};
use crate::store::Role;
use crate::telemetry::{AnalyticsSettings, Retention};

/// Fleetgate control plane: manages gateway configuration and the data-plane nodes that run it.
#[derive(Debug, Parser)]
#[command(name = "fleetgate", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the control plane.
    Serve(ServeArgs),
    /// Manage API tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Set up a ready-to-use local control plane (SQLite in the data dir) and run it.
    Quickstart(QuickstartArgs),
}

/// Where the control plane keeps its state.
#[derive(Debug, Args)]
struct StoreArgs {
    /// Directory for the embedded database and generated keys.
    #[arg(long, env = "FLEETGATE_DATA_DIR", default_value = "./fleetgate-data")]
    data_dir: PathBuf,
    /// Database URL (`postgres://…` or `sqlite://…`); default: a SQLite file in the data dir.
    #[arg(long, env = "FLEETGATE_DATABASE_URL")]
    database_url: Option<String>,
}

/// Where data planes connect and how long their sessions and records live.
#[derive(Debug, Args)]
struct ClusterArgs {
    /// Address the cluster listener (mutual TLS, `/v1/outlet`) listens on.
    #[arg(
        long,
        env = "FLEETGATE_CLUSTER_LISTEN",
        default_value = "127.0.0.1:8005"
    )]
    cluster_listen: SocketAddr,
    /// Heartbeat interval of data planes; a node silent for 1.5 intervals is dropped.
    #[arg(long, env = "FLEETGATE_CLUSTER_PING_INTERVAL", default_value = "30s", value_parser = parse_duration)]
    cluster_ping_interval: Duration,
    /// Nodes not seen for longer than this are removed from `/nodes` (e.g. `14d`, `12h`).
    #[arg(long, env = "FLEETGATE_NODE_PURGE_AFTER", default_value = "14d", value_parser = parse_duration)]
    node_purge_after: Duration,
    /// The `fleetgate-dp` binary served to cloud gateway nodes booting on a stock image
    /// (`GET /v1/artifacts/fleetgate-dp` on the cluster listener); default: the one next to
    /// this executable.
    #[arg(long, env = "FLEETGATE_DP_ARTIFACT")]
    dp_artifact: Option<std::path::PathBuf>,
}

impl From<ClusterArgs> for ClusterSettings {
    fn from(args: ClusterArgs) -> Self {
        Self {
            listen: args.cluster_listen,
            ping_interval: args.cluster_ping_interval,
            node_purge_after: args.node_purge_after,
            dp_artifact: args.dp_artifact,
        }
    }
}

/// The cluster listener's identity: generated into the data dir unless given here.
#[derive(Debug, Args)]
struct ClusterTlsArgs {
    /// `host:port` data planes dial, shown as `control_plane_endpoint` and put in the
    /// generated server certificate; default: the cluster listen address.
    #[arg(long, env = "FLEETGATE_CLUSTER_ENDPOINT")]
    cluster_endpoint: Option<String>,
    /// Cluster listener certificate (PEM chain) instead of the generated one; needs
    /// --cluster-cert-key and --cluster-ca-cert.
    #[arg(long, env = "FLEETGATE_CLUSTER_CERT")]
    cluster_cert: Option<PathBuf>,
    /// Private key (PEM) of --cluster-cert.
    #[arg(long, env = "FLEETGATE_CLUSTER_CERT_KEY")]
    cluster_cert_key: Option<PathBuf>,
    /// CA (PEM) that signed --cluster-cert: what data planes must trust, shown on every
    /// control plane as `cluster_ca_cert`.
    #[arg(long, env = "FLEETGATE_CLUSTER_CA_CERT")]
    cluster_ca_cert: Option<PathBuf>,
}

impl ClusterTlsArgs {
    fn flags(&self) -> ClusterTlsFlags {
        ClusterTlsFlags {
            cert: self.cluster_cert.clone(),
            key: self.cluster_cert_key.clone(),
            ca: self.cluster_ca_cert.clone(),
        }
    }
}

/// How long analytics are kept at each granularity, and how often they are rolled up.
#[derive(Debug, Args)]
struct AnalyticsArgs {
    /// Keep 10-second analytics buckets (and the dedup record of telemetry batches) this long.
    #[arg(long = "analytics-retention-10s", env = "FLEETGATE_ANALYTICS_RETENTION_10S", default_value = "1d", value_parser = parse_duration)]
    retention_10s: Duration,
    /// Keep minute buckets this long (at least the 10 s retention).
    #[arg(long = "analytics-retention-minute", env = "FLEETGATE_ANALYTICS_RETENTION_MINUTE", default_value = "7d", value_parser = parse_duration)]
    retention_minute: Duration,
    /// Keep hour buckets this long (at least the minute retention).
    #[arg(long = "analytics-retention-hour", env = "FLEETGATE_ANALYTICS_RETENTION_HOUR", default_value = "90d", value_parser = parse_duration)]
    retention_hour: Duration,
    /// Keep day buckets this long (at least the hour retention).
    #[arg(long = "analytics-retention-day", env = "FLEETGATE_ANALYTICS_RETENTION_DAY", default_value = "730d", value_parser = parse_duration)]
    retention_day: Duration,
    /// How often 10 s buckets are rolled up into minutes, hours and days, and old ones pruned.
    #[arg(long, env = "FLEETGATE_ANALYTICS_ROLLUP_INTERVAL", default_value = "30s", value_parser = parse_duration)]
    analytics_rollup_interval: Duration,
}

impl From<AnalyticsArgs> for AnalyticsSettings {
    fn from(args: AnalyticsArgs) -> Self {
        Self {
            retention: Retention {
                ten_seconds: args.retention_10s,
                minute: args.retention_minute,
                hour: args.retention_hour,
                day: args.retention_day,
            },
            rollup_interval: args.analytics_rollup_interval,
        }
    }
}

/// Where dedicated cloud gateways run and how the reconciler paces itself.
#[derive(Debug, Args)]
struct CloudArgs {
    /// Cloud for dedicated gateways besides the always-present `local` provider: `aws` uses
    /// EC2 through the standard credential chain (`AWS_ENDPOINT_URL` for an EC2-compatible
    /// endpoint).
    #[arg(
        long,
        env = "FLEETGATE_CLOUD_PROVIDER",
        value_enum,
        default_value = "local"
    )]
    cloud_provider: CloudProviderArg,
    /// AMI of gateway nodes on AWS, overriding the stock image (the newest Amazon Linux 2023
    /// x86_64 of the region, to which the user data adds `fleetgate-dp` downloaded from this
    /// control plane).
    #[arg(long, env = "FLEETGATE_AWS_AMI_ID")]
    aws_ami_id: Option<String>,
    /// Time between reconcile passes when nothing changes (API changes start one at once).
    #[arg(long, env = "FLEETGATE_CLOUD_RECONCILE_INTERVAL", default_value = "10s", value_parser = parse_duration)]
    cloud_reconcile_interval: Duration,
    /// A launched gateway node that has not connected within this, or whose last ping is
    /// older than this, is replaced.
    #[arg(long, env = "FLEETGATE_GATEWAY_NODE_CONNECT_DEADLINE", default_value = "10m", value_parser = parse_duration)]
    gateway_node_connect_deadline: Duration,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum CloudProviderArg {
    Local,
    Aws,
}

impl CloudArgs {
    fn settings(&self, data_dir: &std::path::Path) -> CloudSettings {
        let mut settings = CloudSettings::new(data_dir);
        settings.provider = match self.cloud_provider {
            CloudProviderArg::Local => ProviderChoice::Local,
            CloudProviderArg::Aws => ProviderChoice::Aws,
        };
        settings.aws.default_ami_id = self.aws_ami_id.clone();
        settings.interval = self.cloud_reconcile_interval;
        settings.node_connect_deadline = self.gateway_node_connect_deadline;
        settings
    }
}

#[derive(Debug, Args)]
struct ServeArgs {
    #[command(flatten)]
    store: StoreArgs,
    #[command(flatten)]
    cluster: ClusterArgs,
    #[command(flatten)]
    cluster_tls: ClusterTlsArgs,
    #[command(flatten)]
    analytics: AnalyticsArgs,
    #[command(flatten)]
    cloud: CloudArgs,
    /// Address the REST API listens on.
    #[arg(long, env = "FLEETGATE_API_LISTEN", default_value = "127.0.0.1:8080")]
    api_listen: SocketAddr,
}

#[derive(Debug, Args)]
struct QuickstartArgs {
    #[command(flatten)]
    store: StoreArgs,
    #[command(flatten)]
    cluster: ClusterArgs,
    #[command(flatten)]
    analytics: AnalyticsArgs,
    #[command(flatten)]
    cloud: CloudArgs,
    /// Address the REST API listens on.
    #[arg(long, env = "FLEETGATE_API_LISTEN", default_value = "127.0.0.1:8080")]
    api_listen: SocketAddr,
    /// Name of the organisation to create.
    #[arg(long, env = "FLEETGATE_QUICKSTART_ORG", default_value = "default")]
    org: String,
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Create an API token and print it once (only its hash is stored).
    Create(TokenCreateArgs),
}

#[derive(Debug, Args)]
struct TokenCreateArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// Organisation the token belongs to (created if it does not exist).
    #[arg(long, env = "FLEETGATE_TOKEN_ORG")]
    org: String,
    /// What the token may do.
    #[arg(
        long,
        env = "FLEETGATE_TOKEN_ROLE",
        value_enum,
        default_value = "admin"
    )]
    role: RoleArg,
    /// A name to tell the token apart.
    #[arg(long, env = "FLEETGATE_TOKEN_NAME", default_value = "cli")]
    name: String,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum RoleArg {
    Admin,
    Viewer,
    Operator,
}

impl From<RoleArg> for Role {
    fn from(r: RoleArg) -> Self {
        match r {
            RoleArg::Admin => Role::Admin,
            RoleArg::Viewer => Role::Viewer,
            RoleArg::Operator => Role::Operator,
        }
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("FLEETGATE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Parses the command line and runs it; errors are one line on stderr and exit code 1.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("fleetgate: start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fleetgate: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => {
            let cluster_tls = args.cluster_tls.flags();
            let cluster: ClusterSettings = args.cluster.into();
            let cluster_endpoint = args
                .cluster_tls
                .cluster_endpoint
                .unwrap_or_else(|| cluster.listen.to_string());
            let cloud = args.cloud.settings(&args.store.data_dir);
            server::serve(ServerSettings {
                cloud: Some(cloud),
                data_dir: args.store.data_dir,
                database_url: args.store.database_url,
                api_listen: args.api_listen,
                cluster,
                cluster_tls,
                cluster_endpoint: Some(cluster_endpoint),
                analytics: args.analytics.into(),
            })
            .await
        }
        Command::Token {
            command: TokenCommand::Create(args),
        } => {
            let org_name = args.org.trim();
            anyhow::ensure!(!org_name.is_empty(), "--org must not be empty");
            let store =
                server::open_store(&args.store.data_dir, args.store.database_url.as_deref())
                    .await?;
            let org = store
                .ensure_organization(org_name)
                .await
                .context("create the organization")?;
            let issued =
                crate::auth::issue_token(&store, org.id, &args.name, args.role.into(), None)
                    .await
                    .context("store the token")?;
            store.close().await;
            println!("{}", issued.secret);
            Ok(())
        }
        Command::Quickstart(args) => {
            crate::quickstart::run(crate::quickstart::QuickstartSettings {
                server: ServerSettings {
                    cloud: Some(args.cloud.settings(&args.store.data_dir)),
                    data_dir: args.store.data_dir,
                    database_url: args.store.database_url,
                    api_listen: args.api_listen,
                    cluster: args.cluster.into(),
                    cluster_tls: ClusterTlsFlags::default(),
                    cluster_endpoint: None,
                    analytics: args.analytics.into(),
                },
                org: args.org,
            })
            .await
        }
    }
}
