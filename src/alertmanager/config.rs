//! `[alerting]` in `config/pulse.toml`: where firing and resolved alerts are sent, shaped
//! like Prometheus' `alerting.alertmanagers`, plus plain webhooks.

use std::num::{NonZeroU64, NonZeroUsize};
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::{Deserialize, Serialize};

/// Where alerts go, and how often they are re-sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertingConfig {
    /// Alertmanagers by base URL (`http://127.0.0.1:9093`, a path prefix allowed), with the
    /// defaults below. `PULSE_ALERTMANAGER_URLS` (comma-separated) sets it.
    pub alertmanager_urls: Vec<String>,
    /// Alertmanagers in Prometheus' shape, each with its own settings.
    pub alertmanagers: Vec<AlertmanagerConfig>,
    /// URLs that get Alertmanager's webhook payload (version 4) directly, without an
    /// Alertmanager: chat bridges and incident tools take it. `PULSE_ALERTING_WEBHOOK_URLS`.
    pub webhooks: Vec<String>,
    /// A firing alert is sent again this long after it was last sent (Prometheus'
    /// `--rules.alert.resend-delay`); a resolved one is re-sent for 15 minutes.
    pub resend_delay_ms: NonZeroU64,
    /// Alerts held per destination while it is unreachable; past this the oldest are
    /// dropped, counted (Prometheus' `--alertmanager.notification-queue-capacity`).
    pub queue_capacity: NonZeroUsize,
    /// Alerts per POST (Prometheus sends at most 64).
    pub max_batch: NonZeroUsize,
    /// Acknowledging an alert creates a silence of exactly it in each Alertmanager,
    /// removed when it resolves. `PULSE_ALERTING_SILENCE_ON_ACK`.
    pub silence_on_ack: bool,
    /// The longest such a silence lasts.
    pub silence_max_ms: NonZeroU64,
    /// How often Alertmanager's silences are read back (an expired one clears its
    /// acknowledgement; active ones mark the alerts they match as silenced).
    pub silence_sync_ms: NonZeroU64,
    /// CA certificates (PEM) trusted for `https` Alertmanagers and webhooks, beside the
    /// public roots built in (Prometheus' `tls_config.ca_file`, here for every
    /// destination). `PULSE_ALERTING_CA_FILE`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<String>,
    /// A client certificate (PEM, with its chain) and its key (PEM), presented to `https`
    /// destinations that ask for one (mutual TLS; Prometheus' `tls_config.cert_file` and
    /// `key_file`). Both or neither. `PULSE_ALERTING_CERT_FILE`, `PULSE_ALERTING_KEY_FILE`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert_file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_file: Option<String>,
}

impl Default for AlertingConfig {
    fn default() -> Self {
        AlertingConfig {
            alertmanager_urls: Vec::new(),
            alertmanagers: Vec::new(),
            webhooks: Vec::new(),
            resend_delay_ms: NonZeroU64::new(60_000).unwrap(),
            queue_capacity: NonZeroUsize::new(10_000).unwrap(),
            max_batch: NonZeroUsize::new(64).unwrap(),
            silence_on_ack: false,
            silence_max_ms: NonZeroU64::new(24 * 3600 * 1000).unwrap(),
            silence_sync_ms: NonZeroU64::new(5_000).unwrap(),
            ca_file: None,
            cert_file: None,
            key_file: None,
        }
    }
}

/// One Alertmanager (or several with the same settings), as Prometheus configures it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertmanagerConfig {
    /// `host:port` of each Alertmanager (Prometheus' `static_configs.targets`).
    pub targets: Vec<String>,
    /// `http` or `https` (trusting the public roots and `alerting.ca_file`).
    pub scheme: String,
    /// Prefix of the API path (`/alertmanager` behind a proxy).
    pub path_prefix: String,
    /// Per POST.
    pub timeout_ms: NonZeroU64,
    /// `v2`, the only API Alertmanager 0.25 and later serve for alerts.
    pub api_version: String,
    /// Sent as `Authorization: Bearer ...`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bearer_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub basic_auth: Option<BasicAuth>,
}

impl Default for AlertmanagerConfig {
    fn default() -> Self {
        AlertmanagerConfig {
            targets: Vec::new(),
            scheme: "http".to_string(),
            path_prefix: String::new(),
            timeout_ms: NonZeroU64::new(10_000).unwrap(),
            api_version: "v2".to_string(),
            bearer_token: None,
            basic_auth: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicAuth {
    pub username: String,
    pub password: String,
}

/// What a destination expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// `POST /api/v2/alerts` with a list of alerts.
    AlertmanagerV2,
    /// Alertmanager's webhook payload, version 4.
    Webhook,
}

/// One place alerts are POSTed to.
#[derive(Debug, Clone, PartialEq)]
pub struct Destination {
    /// The full URL posted to.
    pub url: String,
    pub protocol: Protocol,
    pub timeout_ms: u64,
    /// The `Authorization` header, if any.
    pub authorization: Option<String>,
    /// The TLS client for `https` when `alerting.ca_file` adds roots (None: the public
    /// roots alone).
    pub tls: Option<TlsClient>,
}

/// A TLS client configuration, shared by every destination (compared by identity).
#[derive(Clone)]
pub struct TlsClient(pub Arc<rustls::ClientConfig>);

impl PartialEq for TlsClient {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl std::fmt::Debug for TlsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsClient")
    }
}

/// The certificates in a PEM file, at least one.
fn pem_certificates(path: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect())
        .map_err(|e| format!("{path:?}: {e}"))?;
    if certs.is_empty() {
        return Err(format!("{path:?}: no PEM certificate in it"));
    }
    Ok(certs)
}

impl TlsClient {
    /// The public roots plus those of `ca_file`, presenting `client` (certificate file, key
    /// file) when a server asks. The error names the setting at fault.
    pub fn new(
        ca_file: Option<&str>,
        client: Option<(&str, &str)>,
    ) -> Result<TlsClient, (&'static str, String)> {
        let mut roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        if let Some(ca_file) = ca_file {
            for cert in pem_certificates(ca_file).map_err(|e| ("ca_file", e))? {
                roots.add(cert).map_err(|e| {
                    let e = format!("{ca_file:?}: not a CA certificate rustls accepts: {e}");
                    ("ca_file", e)
                })?;
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| ("ca_file", e.to_string()))?
            .with_root_certificates(roots);
        let config = match client {
            None => builder.with_no_client_auth(),
            Some((cert_file, key_file)) => {
                let chain = pem_certificates(cert_file).map_err(|e| ("cert_file", e))?;
                let key = PrivateKeyDer::from_pem_file(key_file)
                    .map_err(|e| ("key_file", format!("{key_file:?}: {e}")))?;
                builder.with_client_auth_cert(chain, key).map_err(|e| {
                    let e = format!("{cert_file:?} with {key_file:?}: {e}");
                    ("key_file", e)
                })?
            }
        };
        Ok(TlsClient(Arc::new(config)))
    }
}

impl Destination {
    /// An Alertmanager's base URL (`http://host:port[/prefix]`): where its other APIs are.
    pub fn base(&self) -> &str {
        self.url.trim_end_matches("/api/v2/alerts")
    }

    /// An HTTP client with this destination's timeout, kept for all its calls (it pools
    /// connections).
    pub fn agent(&self) -> ureq::Agent {
        http_agent(self.timeout_ms, self.tls.as_ref())
    }

    /// The name in status and `/metrics`: the URL without credentials.
    pub fn name(&self) -> String {
        match self.protocol {
            Protocol::AlertmanagerV2 => format!("alertmanager {}", self.url),
            Protocol::Webhook => format!("webhook {}", self.url),
        }
    }
}

/// An HTTP client that gives up after `timeout_ms`, reaching `https` through `tls` where
/// given (else ureq's own TLS with the public roots).
pub fn http_agent(timeout_ms: u64, tls: Option<&TlsClient>) -> ureq::Agent {
    let agent = ureq::AgentBuilder::new().timeout(std::time::Duration::from_millis(timeout_ms));
    match tls {
        Some(tls) => agent.tls_config(tls.0.clone()).build(),
        None => agent.build(),
    }
}

fn is_http(url: &str) -> Result<(), String> {
    if url.starts_with("http://") || url.starts_with("https://") {
        Ok(())
    } else {
        Err(format!("{url:?}: not an http:// or https:// URL"))
    }
}

impl AlertingConfig {
    /// Pulse's TLS client for https calls where any of its settings is given: the public
    /// roots plus `ca_file`, presenting `cert_file` / `key_file` when asked (`None`: ureq's
    /// own, with the public roots). The error names the field.
    pub fn tls_client(&self) -> Result<Option<TlsClient>, String> {
        let client = match (&self.cert_file, &self.key_file) {
            (Some(cert), Some(key)) => Some((cert.as_str(), key.as_str())),
            (None, None) if self.ca_file.is_none() => return Ok(None),
            (None, None) => None,
            (Some(_), None) => return Err("alerting.key_file: cert_file needs it".into()),
            (None, Some(_)) => return Err("alerting.cert_file: key_file needs it".into()),
        };
        TlsClient::new(self.ca_file.as_deref(), client)
            .map(Some)
            .map_err(|(field, e)| format!("alerting.{field}: {e}"))
    }

    /// Every destination, checked: the error names the field and the value.
    pub fn destinations(&self) -> Result<Vec<Destination>, String> {
        let mut out = Vec::new();
        let timeout_ms = AlertmanagerConfig::default().timeout_ms.get();
        let tls = self.tls_client()?;
        for base in &self.alertmanager_urls {
            is_http(base).map_err(|e| format!("alerting.alertmanager_urls: {e}"))?;
            out.push(Destination {
                url: format!("{}/api/v2/alerts", base.trim_end_matches('/')),
                protocol: Protocol::AlertmanagerV2,
                timeout_ms,
                authorization: None,
                tls: tls.clone(),
            });
        }
        for (i, am) in self.alertmanagers.iter().enumerate() {
            let at = format!("alerting.alertmanagers[{i}]");
            if am.api_version != "v2" {
                return Err(format!(
                    "{at}.api_version: {:?} is not supported (v2 only; Alertmanager removed v1 in 0.27)",
                    am.api_version
                ));
            }
            if am.targets.is_empty() {
                return Err(format!("{at}.targets: empty"));
            }
            let authorization = match (&am.bearer_token, &am.basic_auth) {
                (Some(_), Some(_)) => {
                    return Err(format!("{at}: bearer_token and basic_auth are exclusive"))
                }
                (Some(t), None) => Some(format!("Bearer {t}")),
                (None, Some(b)) => Some(format!(
                    "Basic {}",
                    base64_encode(format!("{}:{}", b.username, b.password).as_bytes())
                )),
                (None, None) => None,
            };
            let prefix = am.path_prefix.trim_matches('/');
            for target in &am.targets {
                let base = format!("{}://{target}", am.scheme);
                is_http(&base).map_err(|e| format!("{at}.scheme: {e}"))?;
                let path = if prefix.is_empty() {
                    "/api/v2/alerts".to_string()
                } else {
                    format!("/{prefix}/api/v2/alerts")
                };
                out.push(Destination {
                    url: format!("{base}{path}"),
                    protocol: Protocol::AlertmanagerV2,
                    timeout_ms: am.timeout_ms.get(),
                    authorization: authorization.clone(),
                    tls: tls.clone(),
                });
            }
        }
        for url in &self.webhooks {
            is_http(url).map_err(|e| format!("alerting.webhooks: {e}"))?;
            out.push(Destination {
                url: url.clone(),
                protocol: Protocol::Webhook,
                timeout_ms,
                authorization: None,
                tls: tls.clone(),
            });
        }
        Ok(out)
    }
}

/// Standard base64 with padding (for basic auth).
fn base64_encode(bytes: &[u8]) -> String {
    const TABLE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(TABLE[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations_from_urls_prometheus_entries_and_webhooks() {
        let config = AlertingConfig {
            alertmanager_urls: vec!["http://127.0.0.1:9093/".into()],
            alertmanagers: vec![AlertmanagerConfig {
                targets: vec!["am-0:9093".into(), "am-1:9093".into()],
                path_prefix: "/alertmanager/".into(),
                basic_auth: Some(BasicAuth {
                    username: "pulse".into(),
                    password: "secret".into(),
                }),
                ..AlertmanagerConfig::default()
            }],
            webhooks: vec!["http://chat.example/hook".into()],
            ..AlertingConfig::default()
        };
        let d = config.destinations().unwrap();
        assert_eq!(d.len(), 4);
        assert_eq!(d[0].url, "http://127.0.0.1:9093/api/v2/alerts");
        assert_eq!(d[1].url, "http://am-0:9093/alertmanager/api/v2/alerts");
        assert_eq!(
            d[1].authorization.as_deref(),
            Some("Basic cHVsc2U6c2VjcmV0")
        );
        assert_eq!(d[3].protocol, Protocol::Webhook);
        assert_eq!(d[3].name(), "webhook http://chat.example/hook");
    }

    #[test]
    fn bad_settings_name_the_field() {
        let ftp = AlertingConfig {
            alertmanager_urls: vec!["ftp://am:9093".into()],
            ..AlertingConfig::default()
        };
        assert!(ftp
            .destinations()
            .unwrap_err()
            .contains("alerting.alertmanager_urls"));
        let missing_ca = AlertingConfig {
            alertmanager_urls: vec!["https://am:9093".into()],
            ca_file: Some("/nonexistent/ca.pem".into()),
            ..AlertingConfig::default()
        };
        let half_client = AlertingConfig {
            alertmanager_urls: vec!["https://am:9093".into()],
            cert_file: Some("/etc/pulse/client.pem".into()),
            ..AlertingConfig::default()
        };
        let e = half_client.destinations().unwrap_err();
        assert!(e.starts_with("alerting.key_file"), "{e}");
        let e = missing_ca.destinations().unwrap_err();
        assert!(
            e.starts_with("alerting.ca_file: \"/nonexistent/ca.pem\""),
            "{e}"
        );
        let v1 = AlertingConfig {
            alertmanagers: vec![AlertmanagerConfig {
                targets: vec!["am:9093".into()],
                api_version: "v1".into(),
                ..AlertmanagerConfig::default()
            }],
            ..AlertingConfig::default()
        };
        assert!(v1
            .destinations()
            .unwrap_err()
            .contains("alertmanagers[0].api_version"));
        assert_eq!(base64_encode(b"ab"), "YWI=");
    }
}
