//! Learning a cached session's lifetime (`[token_cache] introspect = true`): Salesforce's token
//! responses carry no `expires_in`, but its introspection endpoint (`POST
//! /services/oauth2/introspect`, RFC 7662) names the session's `exp`, and asking it is not a
//! login (it counts in `grantshift_token_cache_introspections_total`, never in
//! `grantshift_upstream_logins_total`).
//!
//! When: after a miss has filled an entry from a client-credentials login, in a task of its
//! own. The entry is stored with the configured `ttl - margin` first and only shortened when
//! the answer comes ([`TokenCache::limit`](crate::broker::cache::TokenCache::limit)), so the client that logged in (and the logins that
//! waited for it) get their answer without waiting one more round trip to Salesforce. The
//! price: for that round trip a login with the same credentials may be handed the entry even
//! if Salesforce then calls the session inactive, exactly as without introspection.
//!
//! JWT bearer logins are not introspected: the endpoint wants the client's secret, and a JWT
//! bearer login has none; they keep the configured `ttl`. Neither are client-credentials logins
//! whose secret travels in `Authorization: Basic` rather than in the body.

use crate::body::full_body;
use crate::broker::cache::{Entry, Key};
use crate::config::TokenCacheConfig;
use crate::conn::Target;
use crate::forward::to_client;
use crate::state::State;
use crate::token::facts;
use http::header::{ACCEPT, CONTENT_TYPE};
use http::{HeaderValue, Request, Uri};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use zeroize::Zeroizing;

/// Salesforce's token introspection endpoint.
pub const INTROSPECT_PATH: &str = "/services/oauth2/introspect";

/// What an introspection of a session is sent with: the token and the client that asks.
pub struct Ask {
    pub token: Zeroizing<String>,
    pub client_id: String,
    pub client_secret: Zeroizing<String>,
}

impl Ask {
    /// From the upgraded client-credentials body (`client_id`, `client_secret`); `None`
    /// without both.
    pub fn from_body(token: Zeroizing<String>, upgraded_body: &str) -> Option<Ask> {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(upgraded_body).ok()?;
        let pairs = Zeroizing::new(pairs);
        let get = |name: &str| {
            pairs
                .iter()
                .find(|(k, v)| k == name && !v.is_empty())
                .map(|(_, v)| v.clone())
        };
        Some(Ask {
            client_id: get("client_id")?,
            client_secret: Zeroizing::new(get("client_secret")?),
            token,
        })
    }

    /// The form body (RFC 7662 §2.1, client authentication in the body as Salesforce takes it).
    /// It holds secrets: never logged.
    fn form(&self) -> Zeroizing<String> {
        Zeroizing::new(
            serde_urlencoded::to_string([
                ("token", self.token.as_str()),
                ("token_type_hint", "access_token"),
                ("client_id", self.client_id.as_str()),
                ("client_secret", self.client_secret.as_str()),
            ])
            .unwrap_or_default(),
        )
    }
}

/// What Salesforce said of the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Active, ending at `exp` (seconds since the Unix epoch).
    Active { exp: u64 },
    /// Not active (revoked, expired, unknown).
    Inactive,
}

/// Salesforce's answer, read: `None` for anything but a JSON object with a boolean `active`
/// (and, when active, a numeric `exp`).
pub fn verdict(body: &[u8]) -> Option<Verdict> {
    #[derive(serde::Deserialize)]
    struct Answer {
        active: bool,
        exp: Option<serde_json::Number>,
    }
    let answer: Answer = serde_json::from_slice(body).ok()?;
    match (answer.active, answer.exp) {
        (false, _) => Some(Verdict::Inactive),
        (true, Some(exp)) => Some(Verdict::Active {
            exp: exp
                .as_u64()
                .or_else(|| exp.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))?,
        }),
        (true, None) => None,
    }
}

/// How much longer (from `now`, Unix seconds with a fraction) an entry is to be served given
/// the verdict: `exp - margin`, never past `ttl - margin` from now; `None`: not at all (inactive,
/// or an `exp` already past).
pub fn serve_for(verdict: Verdict, now: f64, config: &TokenCacheConfig) -> Option<Duration> {
    let Verdict::Active { exp } = verdict else {
        return None;
    };
    let left = exp as f64 - now;
    if left <= 0.0 {
        return None;
    }
    let until_exp = Duration::from_secs_f64(left).saturating_sub(config.margin);
    Some(until_exp.min(config.serve_for()))
}

/// Ask Salesforce at `target_host` about the session of `entry` (kept under `key`), then
/// shorten or drop the entry. Bounded by `request_timeout`; every failure leaves the entry as
/// it is (the configured `ttl`), logged at debug without secrets.
pub async fn run(
    state: Arc<State>,
    config: TokenCacheConfig,
    target: Target,
    ask: Ask,
    key: Key,
    entry: Arc<Entry>,
) {
    let within = state.upstream.request_timeout();
    let answer = tokio::time::timeout(within, send(&state, &target, &ask, within)).await;
    drop(ask);
    let verdict = match answer {
        Ok(Ok(verdict)) => verdict,
        Ok(Err(why)) => {
            tracing::debug!(target_host = %target.host, %why, "token introspection failed; the entry keeps the configured ttl");
            state.token_cache.metrics.introspected("error");
            return;
        }
        Err(_) => {
            tracing::debug!(target_host = %target.host, after = ?within, "token introspection timed out; the entry keeps the configured ttl");
            state.token_cache.metrics.introspected("error");
            return;
        }
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    let until = match serve_for(verdict, now, &config) {
        Some(left) => {
            state.token_cache.metrics.introspected("ok");
            tokio::time::Instant::now() + left
        }
        None => {
            state.token_cache.metrics.introspected("inactive");
            tokio::time::Instant::now()
        }
    };
    let kept = state.token_cache.limit(key, &entry, until);
    tracing::debug!(target_host = %target.host, ?verdict, kept, "token introspection answered");
}

/// One introspection request through the upstream pool, and its answer read.
async fn send(
    state: &State,
    target: &Target,
    ask: &Ask,
    within: Duration,
) -> Result<Verdict, String> {
    let uri = Uri::builder()
        .scheme("https")
        .authority(target.authority())
        .path_and_query(INTROSPECT_PATH)
        .build()
        .map_err(|e| e.to_string())?;
    let mut req = Request::new(full_body(ask.form().as_bytes().to_vec()));
    *req.method_mut() = http::Method::POST;
    *req.uri_mut() = uri;
    let headers = req.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/x-www-form-urlencoded"),
    );
    headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
    let resp = state
        .upstream
        .send(req, &target.host)
        .await
        .map_err(|e| e.to_string())?;
    let status = resp.status();
    let (_, body) = facts::read_whole(to_client(resp), within)
        .await
        .map_err(|_| "the answer could not be read".to_owned())?;
    if !status.is_success() {
        return Err(format!("status {}", status.as_u16()));
    }
    verdict(&body).ok_or_else(|| "the answer is not an introspection answer".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> TokenCacheConfig {
        TokenCacheConfig::default()
    }

    #[test]
    fn an_answer_is_read_only_when_it_says_active_and_when() {
        assert_eq!(
            verdict(br#"{"active":true,"exp":1700000300,"iat":1700000000,"client_id":"c"}"#),
            Some(Verdict::Active { exp: 1_700_000_300 })
        );
        assert_eq!(verdict(br#"{"active":false}"#), Some(Verdict::Inactive));
        assert_eq!(verdict(br#"{"active":true}"#), None);
        assert_eq!(verdict(br#"{"active":"yes","exp":1}"#), None);
        assert_eq!(verdict(b"<html>maintenance</html>"), None);
        assert_eq!(verdict(br#"{"error":"invalid_client"}"#), None);
    }

    #[test]
    fn an_entry_lives_until_exp_minus_margin_never_past_the_ttl() {
        let now = 1_700_000_000.0;
        // A 5-minute session: 4 minutes with the default 1-minute margin.
        let five = Verdict::Active { exp: 1_700_000_300 };
        assert_eq!(
            serve_for(five, now, &config()),
            Some(Duration::from_secs(240))
        );
        // A 2-hour session: the configured 15m - 1m.
        let two_hours = Verdict::Active { exp: 1_700_007_200 };
        assert_eq!(
            serve_for(two_hours, now, &config()),
            Some(Duration::from_secs(840))
        );
        // Within the margin: zero; past or inactive: not kept.
        let soon = Verdict::Active { exp: 1_700_000_030 };
        assert_eq!(serve_for(soon, now, &config()), Some(Duration::ZERO));
        let past = Verdict::Active { exp: 1_699_999_999 };
        assert_eq!(serve_for(past, now, &config()), None);
        assert_eq!(serve_for(Verdict::Inactive, now, &config()), None);
    }

    #[test]
    fn the_ask_takes_the_client_from_the_upgraded_body_and_needs_its_secret() {
        let token = || Zeroizing::new("00D!AQ.t".to_owned());
        let ask = Ask::from_body(
            token(),
            "grant_type=client_credentials&client_id=3MVG&client_secret=s%26c&format=json",
        )
        .expect("both parts");
        assert_eq!(ask.client_id, "3MVG");
        assert_eq!(ask.client_secret.as_str(), "s&c");
        assert_eq!(
            ask.form().as_str(),
            "token=00D%21AQ.t&token_type_hint=access_token&client_id=3MVG&client_secret=s%26c"
        );
        // The secret in `Authorization: Basic`: not asked.
        assert!(Ask::from_body(token(), "grant_type=client_credentials&client_id=3MVG").is_none());
    }
}
