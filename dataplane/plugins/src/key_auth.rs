//! `key-auth` (Kong priority 1250): authenticate consumers by API key from a header or the
//! query string, following Kong's `kong/plugins/key-auth/handler.lua`.

use std::collections::HashMap;
use std::sync::Arc;

use fleetgate_config::plugins::KeyAuthConfig;
use fleetgate_config::GatewayConfig;
use http::header::WWW_AUTHENTICATE;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use uuid::Uuid;

use crate::query::{self, QueryValue};
use crate::response::{json_error, Refusal};
use crate::AccessRequest;

const X_CONSUMER_ID: HeaderName = HeaderName::from_static("x-consumer-id");
const X_CONSUMER_USERNAME: HeaderName = HeaderName::from_static("x-consumer-username");
const X_CONSUMER_CUSTOM_ID: HeaderName = HeaderName::from_static("x-consumer-custom-id");
const X_CREDENTIAL_IDENTIFIER: HeaderName = HeaderName::from_static("x-credential-identifier");
const X_ANONYMOUS_CONSUMER: HeaderName = HeaderName::from_static("x-anonymous-consumer");

/// A consumer with its upstream header values prepared at build time.
#[derive(Debug)]
pub(crate) struct ConsumerInfo {
    id: Uuid,
    id_header: HeaderValue,
    /// `None` when unset or not representable as a header value.
    username: Option<HeaderValue>,
    custom_id: Option<HeaderValue>,
}

/// A key-auth credential.
#[derive(Debug)]
struct Credential {
    id: Uuid,
    id_header: HeaderValue,
    consumer: Arc<ConsumerInfo>,
    /// Unix seconds from which the key is refused (Kong's `ttl`, made absolute by the
    /// control plane); `None`: never.
    expires_at: Option<i64>,
}

/// Consumers and keys of one configuration, shared by every key-auth instance.
#[derive(Debug, Default)]
pub(crate) struct Identities {
    by_key: HashMap<String, Credential>,
    by_id: HashMap<Uuid, Arc<ConsumerInfo>>,
    by_username: HashMap<String, Arc<ConsumerInfo>>,
}

impl Identities {
    /// Indexes consumers and credentials. Credentials of unknown consumers are dropped
    /// (config validation already refuses them). Expired keys stay indexed: expiry is
    /// checked per request, so a key stops working at its second without a new config.
    pub fn build(config: &GatewayConfig) -> Self {
        let mut ids = Self::default();
        for c in &config.consumers {
            let info = Arc::new(ConsumerInfo {
                id: c.id,
                id_header: uuid_header(c.id),
                username: c.username.as_deref().and_then(header_value),
                custom_id: c.custom_id.as_deref().and_then(header_value),
            });
            if let Some(name) = &c.username {
                ids.by_username.insert(name.clone(), info.clone());
            }
            ids.by_id.insert(c.id, info);
        }
        for cred in &config.keyauth_credentials {
            let Some(consumer) = cred.consumer.and_then(|r| ids.by_id.get(&r.id)).cloned() else {
                continue;
            };
            ids.by_key.insert(
                cred.key.clone(),
                Credential {
                    id: cred.id,
                    id_header: uuid_header(cred.id),
                    consumer,
                    expires_at: cred.expires_at,
                },
            );
        }
        ids
    }

    /// Kong's `load_consumer(x, true)`: by id when `x` is a UUID, else by username.
    fn consumer(&self, id_or_username: &str) -> Option<Arc<ConsumerInfo>> {
        if let Ok(id) = Uuid::parse_str(id_or_username) {
            if let Some(c) = self.by_id.get(&id) {
                return Some(c.clone());
            }
        }
        self.by_username.get(id_or_username).cloned()
    }
}

fn uuid_header(id: Uuid) -> HeaderValue {
    // A hyphenated UUID is always a valid header value.
    HeaderValue::from_str(&id.to_string()).unwrap_or_else(|_| HeaderValue::from_static(""))
}

fn header_value(s: &str) -> Option<HeaderValue> {
    HeaderValue::from_str(s).ok()
}

/// The configured anonymous consumer.
#[derive(Debug)]
enum Anonymous {
    Consumer(Arc<ConsumerInfo>),
    /// Configured but absent from the config: Kong answers 500 for it.
    Missing,
}

/// A compiled key-auth instance.
#[derive(Debug)]
pub(crate) struct KeyAuthPlugin {
    /// Key names, each with its header name when it is a valid one.
    key_names: Vec<(String, Option<HeaderName>)>,
    key_in_header: bool,
    key_in_query: bool,
    hide_credentials: bool,
    run_on_preflight: bool,
    anonymous: Option<Anonymous>,
    www_authenticate: HeaderValue,
}

/// Who the request is, after key-auth ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Authenticated {
    pub consumer: Uuid,
    /// `None` for the anonymous consumer.
    pub credential: Option<Uuid>,
}

/// Why authentication failed (each maps to Kong's 401 message).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    NoKey,
    Duplicate,
    Invalid,
}

impl Failure {
    fn message(self) -> &'static str {
        match self {
            Failure::NoKey => "No API key found in request",
            Failure::Duplicate => "Duplicate API key found",
            Failure::Invalid => "Invalid authentication credentials",
        }
    }
}

impl KeyAuthPlugin {
    /// Compiles a config; `identities` resolves `anonymous`.
    pub fn new(conf: KeyAuthConfig, identities: &Identities) -> Result<Self, String> {
        let realm = conf.realm.as_deref().unwrap_or("kong");
        let www_authenticate = HeaderValue::from_str(&format!("Key realm=\"{realm}\""))
            .map_err(|_| format!("realm {realm:?} is not a valid header value"))?;
        let anonymous =
            conf.anonymous
                .as_deref()
                .filter(|a| !a.is_empty())
                .map(|a| match identities.consumer(a) {
                    Some(c) => Anonymous::Consumer(c),
                    None => Anonymous::Missing,
                });
        Ok(Self {
            key_names: conf
                .key_names
                .into_iter()
                .map(|n| {
                    let header = HeaderName::from_bytes(n.as_bytes()).ok();
                    (n, header)
                })
                .collect(),
            key_in_header: conf.key_in_header,
            key_in_query: conf.key_in_query,
            hide_credentials: conf.hide_credentials,
            run_on_preflight: conf.run_on_preflight,
            anonymous,
            www_authenticate,
        })
    }

    /// Runs the access phase: `Ok(None)` when skipped (preflight), `Ok(Some)` with who the
    /// request is, `Err` with the response to send. `now` (Unix seconds) is read only when
    /// the presented key has an expiry.
    pub fn access(
        &self,
        ids: &Identities,
        req: &mut AccessRequest<'_>,
        now: &dyn Fn() -> i64,
    ) -> Result<Option<Authenticated>, Refusal> {
        // Kong skips any OPTIONS request here, not only true CORS preflights.
        if !self.run_on_preflight && req.method == Method::OPTIONS {
            return Ok(None);
        }
        match self.authenticate(ids, req, now) {
            Ok(cred) => {
                set_consumer(req.headers, &cred.consumer, Some(cred));
                Ok(Some(Authenticated {
                    consumer: cred.consumer.id,
                    credential: Some(cred.id),
                }))
            }
            Err(failure) => match &self.anonymous {
                Some(Anonymous::Consumer(consumer)) => {
                    set_consumer(req.headers, consumer, None);
                    Ok(Some(Authenticated {
                        consumer: consumer.id,
                        credential: None,
                    }))
                }
                Some(Anonymous::Missing) => Err(Box::new(json_error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "An unexpected error occurred",
                ))),
                None => {
                    // Kong 3.7+ sends the challenge with every 401, not only "no key".
                    let mut response = json_error(StatusCode::UNAUTHORIZED, failure.message());
                    response
                        .headers_mut()
                        .insert(WWW_AUTHENTICATE, self.www_authenticate.clone());
                    Err(Box::new(response))
                }
            },
        }
    }

    /// Kong's `do_authentication`: the first key name with a value wins, header before
    /// query; with hide_credentials the key is removed from both places even when invalid.
    fn authenticate<'i>(
        &self,
        ids: &'i Identities,
        req: &mut AccessRequest<'_>,
        now: &dyn Fn() -> i64,
    ) -> Result<&'i Credential, Failure> {
        // Look the key up while the request is only borrowed (no copy of the key), then
        // hide it.
        let lookup = |key: &str| -> Result<&'i Credential, Failure> {
            if key.is_empty() {
                return Err(Failure::NoKey);
            }
            match ids.by_key.get(key) {
                // An expired key is answered exactly like an unknown one (Kong's DB-less
                // lookup no longer finds it).
                Some(cred) if cred.expires_at.is_some_and(|at| now() >= at) => {
                    Err(Failure::Invalid)
                }
                Some(cred) => Ok(cred),
                None => Err(Failure::Invalid),
            }
        };
        let mut found = None;
        for (name, header) in &self.key_names {
            let mut result = None;
            if self.key_in_header {
                if let Some(header) = header {
                    let mut values = req.headers.get_all(header).iter();
                    if let Some(first) = values.next() {
                        if values.next().is_some() {
                            return Err(Failure::Duplicate);
                        }
                        // A key that is not UTF-8 cannot match any stored key.
                        result = Some(
                            std::str::from_utf8(first.as_bytes())
                                .map_err(|_| Failure::Invalid)
                                .and_then(lookup),
                        );
                    }
                }
            }
            if result.is_none() && self.key_in_query {
                match req.query.as_deref().map(|q| query::lookup(q, name)) {
                    Some(QueryValue::One(v)) => result = Some(lookup(&v)),
                    Some(QueryValue::Many) => return Err(Failure::Duplicate),
                    // A bare `?apikey` is not a string in Kong: try the next name.
                    Some(QueryValue::Flag | QueryValue::Absent) | None => {}
                }
            }
            if let Some(result) = result {
                found = Some((name, header, result));
                break;
            }
        }
        let (name, header, result) = found.ok_or(Failure::NoKey)?;
        if self.hide_credentials {
            if let Some(header) = header {
                req.headers.remove(header);
            }
            if let Some(q) = req.query.as_deref() {
                *req.query = query::remove(q, name);
            }
        }
        result
    }
}

/// Kong's `set_consumer`: sets or clears every identity header so a client cannot spoof
/// them; `X-Anonymous-Consumer` is set only without a credential.
fn set_consumer(headers: &mut HeaderMap, consumer: &ConsumerInfo, credential: Option<&Credential>) {
    headers.insert(X_CONSUMER_ID, consumer.id_header.clone());
    set_or_clear(headers, X_CONSUMER_CUSTOM_ID, consumer.custom_id.as_ref());
    set_or_clear(headers, X_CONSUMER_USERNAME, consumer.username.as_ref());
    set_or_clear(
        headers,
        X_CREDENTIAL_IDENTIFIER,
        credential.map(|c| &c.id_header),
    );
    if credential.is_some() {
        headers.remove(X_ANONYMOUS_CONSUMER);
    } else {
        headers.insert(X_ANONYMOUS_CONSUMER, HeaderValue::from_static("true"));
    }
}

fn set_or_clear(headers: &mut HeaderMap, name: HeaderName, value: Option<&HeaderValue>) {
    match value {
        Some(v) => {
            headers.insert(name, v.clone());
        }
        None => {
            headers.remove(name);
        }
    }
}
