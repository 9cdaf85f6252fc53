//! What a provisioned gateway node is told at boot: the `fleetgate-dp` settings (docs/architecture.md
//! key names) and, for cloud instances, the user-data script that downloads and checks the
//! node binary, writes the settings and starts the node under systemd (so a stock image does).
//!
//! No private key ever goes in here. The node generates its own key at first start and trades
//! the single-use, short-lived `cluster_join_token` plus a CSR for its cluster certificate.
//! [`render_dp_settings`] refuses any input that contains PEM private-key material, so a
//! mistake upstream cannot leak a key into user-data (which EC2 shows to anyone allowed to
//! describe the instance).

use crate::types::{DpDownload, NodeBootstrap};

/// Where the node keeps its settings, CA and cache.
pub const NODE_CONFIG_DIR: &str = "/etc/fleetgate";
/// The node's `prefix` (working dir and config cache).
pub const NODE_PREFIX: &str = "/var/lib/fleetgate-dp";
/// Proxy port the node listens on (opened in the network's security group).
pub const NODE_PROXY_PORT: u16 = 8000;
/// HTTPS proxy port (opened in the network's security group).
pub const NODE_PROXY_TLS_PORT: u16 = 8443;

/// Input a bootstrap cannot carry safely.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BootstrapError {
    /// Private-key material was passed where only public data belongs.
    #[error("{field} contains a private key; node bootstrap data must never carry one")]
    PrivateKey {
        /// The offending input.
        field: &'static str,
    },
    /// A value that must be one line had a line break or control character.
    #[error("{field} must be a single line without control characters")]
    NotOneLine {
        /// The offending input.
        field: &'static str,
    },
    /// A value that goes into the script outside a heredoc has a character that is not inert
    /// there (or is empty, or not the expected shape).
    #[error("{field} has characters that cannot go into the boot script")]
    Unsafe {
        /// The offending input.
        field: &'static str,
    },
    /// The CA certificate is not a PEM certificate.
    #[error("cluster_ca_cert_pem is not a PEM certificate (no BEGIN CERTIFICATE line)")]
    NotACertificate,
}

/// Where a node keeps its state and which addresses it listens on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeLayout {
    /// The node's `prefix` (working dir and config cache).
    pub prefix: String,
    /// `proxy_listen`.
    pub proxy_listen: String,
    /// `proxy_listen_tls`; `None` leaves HTTPS off.
    pub proxy_listen_tls: Option<String>,
    /// `status_listen`; `None` keeps the node's default (`127.0.0.1:8100`).
    pub status_listen: Option<String>,
}

impl NodeLayout {
    /// A cloud instance: [`NODE_PREFIX`], proxy ports 8000 and 8443 on every interface.
    pub fn cloud_instance() -> Self {
        Self {
            prefix: NODE_PREFIX.into(),
            proxy_listen: format!("0.0.0.0:{NODE_PROXY_PORT}"),
            proxy_listen_tls: Some(format!("0.0.0.0:{NODE_PROXY_TLS_PORT}")),
            status_listen: None,
        }
    }
}

/// The `fleetgate-dp` TOML settings for a cloud instance (the CA certificate is referenced by
/// path).
pub fn render_dp_settings(
    bootstrap: &NodeBootstrap,
    join_token: &str,
    ca_cert_path: &str,
) -> Result<String, BootstrapError> {
    render_dp_settings_with(
        bootstrap,
        join_token,
        ca_cert_path,
        &NodeLayout::cloud_instance(),
    )
}

/// The `fleetgate-dp` TOML settings for a node with the given layout (the local provider puts
/// each node in its own prefix on its own loopback ports).
pub fn render_dp_settings_with(
    bootstrap: &NodeBootstrap,
    join_token: &str,
    ca_cert_path: &str,
    layout: &NodeLayout,
) -> Result<String, BootstrapError> {
    check_public(bootstrap, join_token)?;
    for (field, value) in [
        ("prefix", Some(layout.prefix.as_str())),
        ("proxy_listen", Some(layout.proxy_listen.as_str())),
        ("proxy_listen_tls", layout.proxy_listen_tls.as_deref()),
        ("status_listen", layout.status_listen.as_deref()),
        ("cluster_ca_cert", Some(ca_cert_path)),
    ] {
        if let Some(value) = value {
            one_line(field, value)?;
        }
    }
    let mut out = String::new();
    out.push_str("# Written at boot by the Fleetgate provisioner. No private key here: the node\n");
    out.push_str(
        "# makes its own and trades the single-use join token and a CSR for a certificate.\n",
    );
    out.push_str(&toml_line(
        "cluster_control_plane",
        &bootstrap.cluster_endpoint,
    ));
    out.push_str(&toml_line(
        "cluster_server_name",
        &bootstrap.cluster_server_name,
    ));
    out.push_str(&toml_line("cluster_ca_cert", ca_cert_path));
    out.push_str(&toml_line("cluster_join_token", join_token));
    out.push_str(&toml_line("prefix", &layout.prefix));
    out.push_str(&toml_line("proxy_listen", &layout.proxy_listen));
    if let Some(tls) = &layout.proxy_listen_tls {
        out.push_str(&toml_line("proxy_listen_tls", tls));
    }
    if let Some(status) = &layout.status_listen {
        out.push_str(&toml_line("status_listen", status));
    }
    Ok(out)
}

/// One `key = "value"` settings line.
pub(crate) fn toml_line(key: &str, value: &str) -> String {
    format!("{key} = {}\n", toml_string(value))
}

/// Where the user-data script installs a downloaded `fleetgate-dp` (the systemd unit runs
/// it from there).
pub const NODE_DP_BINARY: &str = "/usr/local/bin/fleetgate-dp";

/// The cloud-init user-data script for an instance on a stock image: writes the CA
/// certificate; when `bootstrap.dp_download` is set, downloads `fleetgate-dp` from the control
/// plane's cluster endpoint (the cluster CA pinned with `curl --cacert`, the server name
/// checked through `--connect-to`), checks its SHA-256 and installs it at `dp_binary`; then
/// writes the settings and a systemd unit that keeps the node running, and starts it.
///
/// Two environment switches let a test run the script unprivileged (cloud-init sets neither):
/// `FLEETGATE_BOOT_ROOT` puts every file under that directory, and
/// `FLEETGATE_BOOT_NO_SYSTEMD=1` skips the `systemctl` calls.
pub fn render_user_data(
    bootstrap: &NodeBootstrap,
    join_token: &str,
    dp_binary: &str,
) -> Result<String, BootstrapError> {
    shell_safe("dp_binary", dp_binary, |c| {
        c.is_ascii_alphanumeric() || matches!(c, '/' | '.' | '_' | '-')
    })?;
    if !dp_binary.starts_with('/') {
        return Err(BootstrapError::Unsafe { field: "dp_binary" });
    }
    let ca_path = format!("{NODE_CONFIG_DIR}/cluster-ca.pem");
    let settings = render_dp_settings(bootstrap, join_token, &ca_path)?;
    let ca = bootstrap.cluster_ca_cert_pem.trim_end();
    let download = match &bootstrap.dp_download {
        Some(download) => render_download(bootstrap, download, &ca_path, dp_binary)?,
        None => format!("# fleetgate-dp is expected on the image at {dp_binary}.\n"),
    };
    // Quoted heredoc delimiters: the shell expands nothing inside. The inputs are checked to be
    // a certificate and single-line values, so none of them can contain a delimiter line; the
    // values outside heredocs are checked to hold only characters that are inert in quotes.
    Ok(format!(
        r#"#!/bin/bash
# Fleetgate gateway node bootstrap (generated by the provisioner). Boots a stock image: no
# private key here; the node makes its own and trades the join token and a CSR for a
# certificate.
set -euo pipefail
umask 077
root="${{FLEETGATE_BOOT_ROOT:-}}"
install -d -m 0700 "$root{NODE_CONFIG_DIR}" "$root{NODE_PREFIX}"
cat > "$root{ca_path}" <<'FLEETGATE_CA_EOF'
{ca}
FLEETGATE_CA_EOF
{download}cat > "$root{NODE_CONFIG_DIR}/dp.toml" <<'FLEETGATE_SETTINGS_EOF'
{settings}FLEETGATE_SETTINGS_EOF
install -d -m 0755 "$root/etc/systemd/system"
cat > "$root/etc/systemd/system/fleetgate-dp.service" <<'FLEETGATE_UNIT_EOF'
[Unit]
Description=Fleetgate data-plane node
Wants=network-online.target
After=network-online.target

[Service]
ExecStart={dp_binary} --conf {NODE_CONFIG_DIR}/dp.toml
Restart=always
RestartSec=2

[Install]
WantedBy=multi-user.target
FLEETGATE_UNIT_EOF
if [ -z "${{FLEETGATE_BOOT_NO_SYSTEMD:-}}" ]; then
  systemctl daemon-reload
  systemctl enable --now fleetgate-dp.service
fi
"#
    ))
}

/// The download-and-check part of the user data.
fn render_download(
    bootstrap: &NodeBootstrap,
    download: &DpDownload,
    ca_path: &str,
    dp_binary: &str,
) -> Result<String, BootstrapError> {
    let url = download_url(bootstrap, download)?;
    let (host, port) =
        bootstrap
            .cluster_endpoint
            .rsplit_once(':')
            .ok_or(BootstrapError::Unsafe {
                field: "cluster_endpoint",
            })?;
    let server_name = &bootstrap.cluster_server_name;
    let sha256 = &download.sha256;
    if sha256.len() != 64 || !sha256.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(BootstrapError::Unsafe {
            field: "dp_download.sha256",
        });
    }
    // curl checks the certificate against the server name in the URL and sends it as SNI,
    // while --connect-to dials the endpoint's address: the same checks the node makes.
    Ok(format!(
        r#"dp_url='{url}'
dp_sha256='{sha256}'
install -d -m 0755 "$(dirname "$root{dp_binary}")"
dp_tmp="$(mktemp "$root{dp_binary}.download.XXXXXX")"
trap 'rm -f "$dp_tmp"' EXIT
curl --fail --silent --show-error --retry 30 --retry-delay 5 --retry-all-errors \
  --connect-timeout 10 --proto '=https' --cacert "$root{ca_path}" \
  --connect-to '{server_name}:{port}:{host}:{port}' --output "$dp_tmp" "$dp_url"
if ! echo "$dp_sha256  $dp_tmp" | sha256sum --check --status; then
  echo "fleetgate-dp from $dp_url does not have SHA-256 $dp_sha256; not installing it" >&2
  exit 1
fi
chmod 0755 "$dp_tmp"
mv -f "$dp_tmp" "$root{dp_binary}"
trap - EXIT
"#
    ))
}

/// `https://<server name>:<endpoint port><path>`: the address a booting node downloads
/// `fleetgate-dp` from (dialled at the endpoint's host).
pub fn download_url(
    bootstrap: &NodeBootstrap,
    download: &DpDownload,
) -> Result<String, BootstrapError> {
    let (host, port) =
        bootstrap
            .cluster_endpoint
            .rsplit_once(':')
            .ok_or(BootstrapError::Unsafe {
                field: "cluster_endpoint",
            })?;
    shell_safe("cluster_endpoint", host, |c| {
        c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']')
    })?;
    if port.is_empty() || !port.chars().all(|c| c.is_ascii_digit()) {
        return Err(BootstrapError::Unsafe {
            field: "cluster_endpoint",
        });
    }
    shell_safe("cluster_server_name", &bootstrap.cluster_server_name, |c| {
        c.is_ascii_alphanumeric() || matches!(c, '.' | '-')
    })?;
    shell_safe("dp_download.path", &download.path, |c| {
        c.is_ascii_alphanumeric() || matches!(c, '/' | '.' | '_' | '-')
    })?;
    if !download.path.starts_with('/') {
        return Err(BootstrapError::Unsafe {
            field: "dp_download.path",
        });
    }
    Ok(format!(
        "https://{}:{port}{}",
        bootstrap.cluster_server_name, download.path
    ))
}

/// Refuses an empty value or one with a character outside `allowed`.
fn shell_safe(
    field: &'static str,
    value: &str,
    allowed: impl Fn(char) -> bool,
) -> Result<(), BootstrapError> {
    if value.is_empty() || !value.chars().all(allowed) {
        Err(BootstrapError::Unsafe { field })
    } else {
        Ok(())
    }
}

fn check_public(bootstrap: &NodeBootstrap, join_token: &str) -> Result<(), BootstrapError> {
    for (field, value) in [
        ("cluster_endpoint", bootstrap.cluster_endpoint.as_str()),
        (
            "cluster_server_name",
            bootstrap.cluster_server_name.as_str(),
        ),
        ("join_token", join_token),
    ] {
        no_private_key(field, value)?;
        one_line(field, value)?;
    }
    let ca = bootstrap.cluster_ca_cert_pem.as_str();
    no_private_key("cluster_ca_cert_pem", ca)?;
    if !ca.contains("-----BEGIN CERTIFICATE-----") {
        return Err(BootstrapError::NotACertificate);
    }
    // Each line of the PEM must be PEM: no shell heredoc delimiter can hide in base64.
    let pem_line = |l: &str| {
        l.starts_with("-----")
            || l.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '=' | ' ' | '\r'))
    };
    if !ca.lines().all(pem_line) {
        return Err(BootstrapError::NotACertificate);
    }
    Ok(())
}

fn no_private_key(field: &'static str, value: &str) -> Result<(), BootstrapError> {
    if value.contains("PRIVATE KEY") {
        Err(BootstrapError::PrivateKey { field })
    } else {
        Ok(())
    }
}

fn one_line(field: &'static str, value: &str) -> Result<(), BootstrapError> {
    if value.chars().any(char::is_control) {
        Err(BootstrapError::NotOneLine { field })
    } else {
        Ok(())
    }
}

/// A TOML basic string (quotes and backslashes escaped; control characters were refused).
fn toml_string(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const CA: &str =
        "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIU\nAbC+/=\n-----END CERTIFICATE-----\n";

    fn bootstrap() -> NodeBootstrap {
        NodeBootstrap {
            cluster_endpoint: "cp.example.internal:8005".into(),
            cluster_server_name: "1234.cluster.fleetgate.internal".into(),
            cluster_ca_cert_pem: CA.into(),
            dp_download: None,
        }
    }

    const SHA: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn with_download() -> NodeBootstrap {
        NodeBootstrap {
            dp_download: Some(DpDownload {
                path: "/v1/artifacts/fleetgate-dp".into(),
                sha256: SHA.into(),
            }),
            ..bootstrap()
        }
    }

    #[test]
    fn user_data_on_a_stock_image_downloads_checks_and_installs_the_binary() {
        let script = render_user_data(&with_download(), "fgjt_x", NODE_DP_BINARY).expect("renders");
        assert!(script.contains(
            "dp_url='https://1234.cluster.fleetgate.internal:8005/v1/artifacts/fleetgate-dp'"
        ));
        assert!(script.contains(&format!("dp_sha256='{SHA}'")));
        assert!(script.contains("--cacert \"$root/etc/fleetgate/cluster-ca.pem\""));
        assert!(script.contains(
            "--connect-to '1234.cluster.fleetgate.internal:8005:cp.example.internal:8005'"
        ));
        assert!(script.contains("sha256sum --check --status"));
        assert!(script.contains("mv -f \"$dp_tmp\" \"$root/usr/local/bin/fleetgate-dp\""));
        // The CA is written before the download that needs it, the unit after the binary.
        let ca = script.find("FLEETGATE_CA_EOF\n").expect("ca");
        let curl = script.find("curl ").expect("curl");
        let unit = script.find("fleetgate-dp.service").expect("unit");
        assert!(ca < curl && curl < unit, "{script}");
        assert!(!script.contains("PRIVATE KEY"));
    }

    #[test]
    fn values_outside_heredocs_must_be_inert_in_the_shell() {
        let mut bad_sha = with_download();
        if let Some(d) = bad_sha.dp_download.as_mut() {
            d.sha256 = "abc'; rm -rf /; '".into();
        }
        assert_eq!(
            render_user_data(&bad_sha, "t", NODE_DP_BINARY),
            Err(BootstrapError::Unsafe {
                field: "dp_download.sha256"
            })
        );
        let mut bad_name = with_download();
        bad_name.cluster_server_name = "a'b".into();
        assert_eq!(
            render_user_data(&bad_name, "t", NODE_DP_BINARY),
            Err(BootstrapError::Unsafe {
                field: "cluster_server_name"
            })
        );
        assert_eq!(
            render_user_data(&bootstrap(), "t", "/bin/$(reboot)"),
            Err(BootstrapError::Unsafe { field: "dp_binary" })
        );
        assert_eq!(
            render_user_data(&bootstrap(), "t", "relative/dp"),
            Err(BootstrapError::Unsafe { field: "dp_binary" })
        );
    }

    #[test]
    fn user_data_starts_the_node_pointed_at_the_control_plane_with_the_join_token() {
        let script = render_user_data(&bootstrap(), "fgjt_abc\"123", "/usr/local/bin/fleetgate-dp")
            .expect("renders");
        assert!(script.starts_with("#!/bin/bash\n"));
        assert!(script.contains("cluster_control_plane = \"cp.example.internal:8005\""));
        assert!(script.contains("cluster_server_name = \"1234.cluster.fleetgate.internal\""));
        assert!(script.contains("cluster_join_token = \"fgjt_abc\\\"123\""));
        assert!(script.contains("cluster_ca_cert = \"/etc/fleetgate/cluster-ca.pem\""));
        assert!(script.contains("MIIBszCCAVmgAwIBAgIU"));
        assert!(
            script.contains("ExecStart=/usr/local/bin/fleetgate-dp --conf /etc/fleetgate/dp.toml")
        );
        assert!(script.contains("systemctl enable --now fleetgate-dp.service"));
        assert!(script.contains("# fleetgate-dp is expected on the image"));
        assert!(!script.contains("curl "));
        assert!(!script.contains("PRIVATE KEY"));
        assert!(!script.contains("cluster_cert_key"));
    }

    #[test]
    fn settings_parse_as_toml_with_the_dp_key_names() {
        let toml = render_dp_settings(&bootstrap(), "tok\\en", "/ca.pem").expect("renders");
        let expected = [
            ("cluster_control_plane", "cp.example.internal:8005"),
            ("cluster_join_token", "tok\\en"),
            ("cluster_ca_cert", "/ca.pem"),
            ("prefix", NODE_PREFIX),
            ("proxy_listen", "0.0.0.0:8000"),
        ];
        for (key, value) in expected {
            let line = toml
                .lines()
                .find(|l| l.starts_with(&format!("{key} = ")))
                .unwrap_or_else(|| panic!("{key} missing in {toml}"));
            let quoted = line.split_once(" = ").map(|(_, v)| v).unwrap_or_default();
            let unescaped = quoted
                .trim_matches('"')
                .replace("\\\\", "\\")
                .replace("\\\"", "\"");
            assert_eq!(unescaped, value, "{key}");
        }
    }

    #[test]
    fn private_keys_and_multi_line_values_are_refused() {
        let mut with_key = bootstrap();
        with_key.cluster_ca_cert_pem =
            format!("{CA}-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n");
        assert_eq!(
            render_user_data(&with_key, "t", "/bin/dp"),
            Err(BootstrapError::PrivateKey {
                field: "cluster_ca_cert_pem"
            })
        );
        assert_eq!(
            render_user_data(&bootstrap(), "-----BEGIN EC PRIVATE KEY-----", "/bin/dp"),
            Err(BootstrapError::PrivateKey {
                field: "join_token"
            })
        );
        assert_eq!(
            render_user_data(&bootstrap(), "tok\nFLEETGATE_SETTINGS_EOF", "/bin/dp"),
            Err(BootstrapError::NotOneLine {
                field: "join_token"
            })
        );
        let mut sneaky_ca = bootstrap();
        sneaky_ca.cluster_ca_cert_pem = format!("{CA}FLEETGATE_CA_EOF\nrm -rf /\n");
        assert_eq!(
            render_user_data(&sneaky_ca, "t", "/bin/dp"),
            Err(BootstrapError::NotACertificate)
        );
        let mut not_pem = bootstrap();
        not_pem.cluster_ca_cert_pem = "hello".into();
        assert_eq!(
            render_user_data(&not_pem, "t", "/bin/dp"),
            Err(BootstrapError::NotACertificate)
        );
    }
}
