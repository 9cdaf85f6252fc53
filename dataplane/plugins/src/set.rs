//! [`PluginSet`]: the compiled plugins of one configuration version, and the access and
//! response phases that run them in Kong's priority order.

use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use fleetgate_config::plugins::{
    CorsConfig, KeyAuthConfig, RateLimitingConfig, RequestSizeLimitingConfig,
};
use fleetgate_config::{GatewayConfig, Plugin};
use http::{HeaderMap, Response};
use serde::de::DeserializeOwned;

use crate::cors::{CorsAccess, CorsPlugin};
use crate::counters::{unix_secs, RateLimitCounters};
use crate::key_auth::{Identities, KeyAuthPlugin};
use crate::rate_limiting::{Client, RateLimitPlugin};
use crate::scope::{Instance, ScopeKey, Scoped};
use crate::size_limit::SizeLimitPlugin;
use crate::{AccessOutcome, AccessRequest, PluginContext, PluginError};

/// Compiled plugins of one config version; immutable, Send + Sync, built off the hot path.
#[derive(Debug)]
pub struct PluginSet {
    identities: Identities,
    cors: Scoped<Arc<CorsPlugin>>,
    key_auth: Scoped<KeyAuthPlugin>,
    size_limit: Scoped<SizeLimitPlugin>,
    rate_limit: Scoped<RateLimitPlugin>,
}

/// Deserializes a plugin's (defaults-filled) config into its typed form.
fn typed<T: DeserializeOwned + Default>(plugin: &Plugin) -> Result<T, PluginError> {
    if plugin.config.is_null() {
        return Ok(T::default());
    }
    T::deserialize(&plugin.config).map_err(|e| invalid(plugin, e.to_string()))
}

fn invalid(plugin: &Plugin, reason: String) -> PluginError {
    PluginError::InvalidConfig {
        id: plugin.id,
        name: plugin.name.clone(),
        reason,
    }
}

fn add<T>(scoped: &mut Scoped<T>, plugin: &Plugin, compiled: T) -> Result<(), PluginError> {
    scoped
        .insert(ScopeKey::of(plugin), Instance::new(plugin, compiled))
        .map_err(|first| PluginError::DuplicateScope {
            name: plugin.name.clone(),
            first,
            second: plugin.id,
        })
}

impl PluginSet {
    /// Compiles every enabled plugin of `config`. `counters` are shared with previous and
    /// later sets so limits carry over config swaps (counters are keyed by plugin id).
    pub fn build(
        config: &GatewayConfig,
        counters: Arc<RateLimitCounters>,
    ) -> Result<PluginSet, PluginError> {
        let identities = Identities::build(config);
        let mut set = PluginSet {
            cors: Scoped::default(),
            key_auth: Scoped::default(),
            size_limit: Scoped::default(),
            rate_limit: Scoped::default(),
            identities,
        };
        for plugin in config.plugins.iter().filter(|p| p.enabled) {
            match plugin.name.as_str() {
                "cors" => {
                    let compiled = CorsPlugin::new(typed::<CorsConfig>(plugin)?)
                        .map_err(|e| invalid(plugin, e))?;
                    add(&mut set.cors, plugin, Arc::new(compiled))?;
                }
                "key-auth" => {
                    let compiled =
                        KeyAuthPlugin::new(typed::<KeyAuthConfig>(plugin)?, &set.identities)
                            .map_err(|e| invalid(plugin, e))?;
                    add(&mut set.key_auth, plugin, compiled)?;
                }
                "request-size-limiting" => {
                    let conf = typed::<RequestSizeLimitingConfig>(plugin)?;
                    add(&mut set.size_limit, plugin, SizeLimitPlugin::new(&conf))?;
                }
                "rate-limiting" => {
                    let conf = typed::<RateLimitingConfig>(plugin)?;
                    let compiled = RateLimitPlugin::new(plugin.id, conf, counters.clone())
                        .map_err(|e| invalid(plugin, e))?;
                    add(&mut set.rate_limit, plugin, compiled)?;
                }
                _ => {
                    return Err(PluginError::UnknownPlugin {
                        id: plugin.id,
                        name: plugin.name.clone(),
                    })
                }
            }
        }
        Ok(set)
    }

    /// No plugin is configured at all: the access phase would change nothing and answer
    /// nothing, so the proxy may skip it (and the header map it needs).
    pub fn is_empty(&self) -> bool {
        self.cors.is_empty()
            && self.key_auth.is_empty()
            && self.size_limit.is_empty()
            && self.rate_limit.is_empty()
    }

    /// Runs the access phase for a request that matched `route_id`/`service_id` (None when
    /// unknown).
    pub fn access(&self, req: &mut AccessRequest<'_>) -> AccessOutcome {
        // The clock is read only when a rate limit runs: most requests need no time.
        self.access_with_clock(req, SystemTime::now)
    }

    /// [`Self::access`] with an explicit clock for rate-limit windows and key expiry (tests,
    /// replays).
    pub fn access_at(&self, req: &mut AccessRequest<'_>, now: SystemTime) -> AccessOutcome {
        self.access_with_clock(req, || now)
    }

    fn access_with_clock(
        &self,
        req: &mut AccessRequest<'_>,
        clock: impl Fn() -> SystemTime,
    ) -> AccessOutcome {
        // Read the clock at most once per request, and only if a plugin needs it (a key with
        // an expiry, a rate limit).
        let read = std::cell::OnceCell::new();
        let now = || *read.get_or_init(|| unix_secs(clock()));
        let mut ctx = PluginContext::default();
        let https = req.scheme_is_https;
        let (route, service) = (req.route_id, req.service_id);

        // Kong PRIORITY order, highest first: cors 2000, key-auth 1250,
        // request-size-limiting 951, rate-limiting 910. Plugins before key-auth are
        // resolved without a consumer, like Kong's collecting iterator.
        if let Some(cors) = self.cors.lookup(route, service, None) {
            if cors.runs_on(https) {
                match cors.plugin.access(req) {
                    CorsAccess::Preflight(response) => return self.respond(response, ctx),
                    CorsAccess::Continue(state) => ctx.cors = state,
                }
            }
        }

        if let Some(key_auth) = self.key_auth.lookup(route, service, None) {
            if key_auth.runs_on(https) {
                match key_auth.plugin.access(&self.identities, req, &now) {
                    Ok(Some(who)) => {
                        ctx.consumer_id = Some(who.consumer);
                        ctx.credential_id = who.credential;
                    }
                    Ok(None) => {}
                    Err(response) => return self.respond(*response, ctx),
                }
            }
        }

        // From here on consumer-scoped instances apply.
        let consumer = ctx.consumer_id;
        if let Some(size) = self.size_limit.lookup(route, service, consumer) {
            if size.runs_on(https) {
                match size.plugin.access(req.headers) {
                    Ok(max) => ctx.max_body_bytes = Some(max),
                    Err(response) => return self.respond(*response, ctx),
                }
            }
        }

        if let Some(limit) = self.rate_limit.lookup(route, service, consumer) {
            if limit.runs_on(https) {
                let client = Client {
                    consumer,
                    credential: ctx.credential_id,
                };
                match limit.plugin.access(req, client, now()) {
                    Ok(headers) => ctx.rate_limit = headers,
                    Err(response) => return self.respond(*response, ctx),
                }
            }
        }

        AccessOutcome::Continue(ctx)
    }

    /// Adds response headers (CORS, RateLimit-*) to the upstream's response. Idempotent.
    pub fn response(&self, ctx: &PluginContext, headers: &mut HeaderMap) {
        if let Some(limits) = &ctx.rate_limit {
            limits.apply(headers);
        }
        if let Some(cors) = &ctx.cors {
            cors.apply(headers);
        }
    }

    /// A short-circuit answer: like Kong, the response phase of the plugins that already
    /// ran (cors) still applies to it.
    fn respond(&self, mut response: Response<Bytes>, ctx: PluginContext) -> AccessOutcome {
        self.response(&ctx, response.headers_mut());
        AccessOutcome::Respond(response, ctx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync + 'static>() {}

    #[test]
    fn shared_types_are_thread_safe() {
        // The proxy shares sets and counters across worker threads and moves contexts
        // between tasks.
        assert_send_sync::<PluginSet>();
        assert_send_sync::<RateLimitCounters>();
        assert_send_sync::<PluginContext>();
    }

    #[test]
    fn empty_config_builds_and_passes_everything() {
        let set = PluginSet::build(&GatewayConfig::default(), Arc::default());
        let Ok(set) = set else {
            panic!("empty config must build");
        };
        let (mut headers, mut query) = (HeaderMap::new(), None);
        let mut req = AccessRequest {
            route_id: None,
            service_id: None,
            method: &http::Method::POST,
            headers: &mut headers,
            query: &mut query,
            client_ip: std::net::IpAddr::from([127, 0, 0, 1]),
            path: "/",
            scheme_is_https: true,
        };
        let AccessOutcome::Continue(ctx) = set.access(&mut req) else {
            panic!("nothing may refuse");
        };
        assert_eq!(ctx.max_body_bytes, None);
        let mut response = HeaderMap::new();
        set.response(&ctx, &mut response);
        assert!(response.is_empty());
    }
}
