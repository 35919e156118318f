//! The token cache (docs/operating.md, "The token cache"): upgraded token responses, kept in
//! memory and handed to the next login with the same credentials, so that the connected
//! app's one Run As user is not asked to log in once per caller.
//!
//! - **Key**: a keyed digest (HMAC-SHA-256 under a key made at start, never stored) of
//!   everything that shapes the answer: the target host, the flow, the rewritten request's
//!   shape ([`Rewrite::shape`]: client id, client secret and every other parameter; for JWT
//!   the issuer, subject and `format`), and the `Accept` and `Authorization` fields. Not the
//!   username of a client-credentials login: every username of one app shares the app's Run
//!   As user's session, which is the point. Only a login presenting the same client id and
//!   secret can compute the same key: two digests are compared, never two secrets.
//! - **Value**: the upstream's exact response (status, fields, body), wiped when it goes.
//! - **Single flight**: concurrent misses for one key send one upstream request; the others
//!   wait for its answer.
//! - **Negative entries**: a failed upgrade is never cached, but for `negative_ttl` the next
//!   logins with the same key go straight to fallback instead of asking again.
//!
//! The password was checked before a login gets here ([`crate::token::plan::gate`]).
//!
//! [`Rewrite::shape`]: crate::token::plan::Rewrite#structfield.shape

use crate::config::{Flow, TokenCacheConfig};
use crate::telemetry::events::UpstreamErrorInfo;
pub use crate::telemetry::metrics::CacheMetrics;
use bytes::Bytes;
use hmac::{Hmac, Mac};
use http::{HeaderMap, StatusCode};
use quick_cache::sync::{Cache, PlaceholderGuard};
use quick_cache::{DefaultHashBuilder, Lifecycle, Weighter};
use sha2::Sha256;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use zeroize::Zeroizing;

/// A cache key: a keyed digest, never the secrets it was made from.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Key([u8; 32]);

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(<digest>)")
    }
}

/// What a key is made of.
pub struct KeyParts<'a> {
    pub target_host: &'a str,
    pub flow: Flow,
    /// [`Rewrite::shape`](crate::token::plan::Rewrite#structfield.shape) (secret).
    pub shape: &'a str,
    pub accept: Option<&'a [u8]>,
    /// `Authorization` as sent (it may carry the client secret, `Basic`).
    pub authorization: Option<&'a [u8]>,
    /// `Accept-Encoding` as sent: Salesforce compresses the answer for a client that accepts
    /// gzip (every real client library does), and the cached bytes are that answer.
    pub accept_encoding: Option<&'a [u8]>,
}

/// One cached token response.
pub struct Entry {
    pub status: StatusCode,
    pub headers: HeaderMap,
    body: Zeroizing<Vec<u8>>,
    /// Keyed digest of the access token in the body: what a revoke or a refused API call
    /// names.
    token: [u8; 32],
    /// Until when it is served: `ttl - margin` after it was stored, perhaps shortened later
    /// by an introspection ([`TokenCache::limit`]; never lengthened).
    expires: std::sync::Mutex<Instant>,
    /// The `[[credentials]]` entry of the login that filled it (a reload that changes that
    /// entry drops it).
    credential: Option<[u8; 32]>,
}

impl Entry {
    /// A copy of the body for one client.
    pub fn body(&self) -> Bytes {
        Bytes::copy_from_slice(&self.body)
    }

    fn expires(&self) -> Instant {
        *self.expires.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn live_at(&self, now: Instant) -> bool {
        self.expires() > now
    }

    fn weight(&self) -> u64 {
        let headers: usize = self
            .headers
            .iter()
            .map(|(k, v)| k.as_str().len() + v.len() + 32)
            .sum();
        (self.body.len() + headers + std::mem::size_of::<Entry>()) as u64
    }
}

/// Why an entry left the cache (the `reason` label of `grantshift_token_cache_evictions_total`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Eviction {
    /// Its time ran out (`ttl - margin`).
    Expired,
    /// Room was needed (`max_entries`, `max_bytes`).
    Capacity,
    /// An API call that carried its token was refused (401).
    Unauthorized,
    /// A client revoked its token.
    Revoked,
    /// A reload changed or removed its `[[credentials]]` entry, or turned the cache off.
    Reload,
}

impl Eviction {
    /// One of [`CACHE_EVICTION_REASONS`](crate::telemetry::metrics::CACHE_EVICTION_REASONS).
    pub fn as_str(self) -> &'static str {
        match self {
            Eviction::Expired => "expired",
            Eviction::Capacity => "capacity",
            Eviction::Unauthorized => "unauthorized",
            Eviction::Revoked => "revoked",
            Eviction::Reload => "reload",
        }
    }
}

/// Entries weigh their bytes, and at least `max_bytes / max_entries`: so neither bound is
/// passed.
#[derive(Clone)]
struct ByBytes {
    floor: u64,
}

impl Weighter<Key, Arc<Entry>> for ByBytes {
    fn weight(&self, _key: &Key, entry: &Arc<Entry>) -> u64 {
        entry.weight().max(self.floor)
    }
}

/// Counts entries pushed out for room.
#[derive(Clone)]
struct CountEvictions {
    metrics: CacheMetrics,
}

impl Lifecycle<Key, Arc<Entry>> for CountEvictions {
    type RequestState = ();

    fn begin_request(&self) -> Self::RequestState {}

    fn on_evict(&self, _state: &mut (), _key: Key, _entry: Arc<Entry>) {
        self.metrics.evicted(Eviction::Capacity.as_str());
    }
}

type Entries = Cache<Key, Arc<Entry>, ByBytes, DefaultHashBuilder, CountEvictions>;

/// A failed upgrade, remembered for `negative_ttl`.
pub struct Negative {
    pub info: UpstreamErrorInfo,
    expires: Instant,
}

/// The right to send the one upstream request for a key: the others wait for it. Dropped
/// without [`TokenCache::store`], it lets the next waiter try.
pub struct Flight<'a> {
    guard:
        Option<PlaceholderGuard<'a, Key, Arc<Entry>, ByBytes, DefaultHashBuilder, CountEvictions>>,
}

impl Flight<'_> {
    /// A flight nobody waits for (the cache was not asked, or waiting took too long).
    pub fn alone() -> Self {
        Flight { guard: None }
    }
}

/// What the cache has for a login.
pub enum Lookup<'a> {
    /// A live entry (`waited`: it came from another login's request, after waiting).
    Hit { entry: Arc<Entry>, waited: bool },
    /// An upgrade with this key failed moments ago.
    Negative(Arc<Negative>),
    /// Nothing: send the request, then [`TokenCache::store`] or [`TokenCache::failed`].
    Miss(Flight<'a>),
}

pub struct TokenCache {
    secret: Zeroizing<[u8; 32]>,
    entries: Entries,
    negative: Cache<Key, Arc<Negative>>,
    pub metrics: CacheMetrics,
}

impl TokenCache {
    pub fn new(config: &TokenCacheConfig, metrics: CacheMetrics) -> TokenCache {
        let mut secret = Zeroizing::new([0u8; 32]);
        getrandom::getrandom(&mut secret[..]).expect("the OS has random bytes");
        let max_entries = config.max_entries.max(1);
        let entries = Cache::with(
            max_entries,
            config.max_bytes.max(1),
            ByBytes {
                floor: (config.max_bytes / max_entries as u64).max(1),
            },
            DefaultHashBuilder::default(),
            CountEvictions {
                metrics: metrics.clone(),
            },
        );
        TokenCache {
            secret,
            entries,
            negative: Cache::new(max_entries),
            metrics,
        }
    }

    fn mac(&self) -> Hmac<Sha256> {
        Hmac::<Sha256>::new_from_slice(&self.secret[..]).expect("HMAC takes any key length")
    }

    /// The key for a login's upgrade.
    pub fn key(&self, parts: &KeyParts<'_>) -> Key {
        let mut mac = self.mac();
        let mut field = |bytes: &[u8]| {
            // Length-prefixed: no two different inputs make the same byte string.
            mac.update(&(bytes.len() as u64).to_be_bytes());
            mac.update(bytes);
        };
        field(b"token-cache-key");
        field(parts.target_host.to_ascii_lowercase().as_bytes());
        field(parts.flow.as_str().as_bytes());
        field(parts.shape.as_bytes());
        field(parts.accept.unwrap_or(b"\0none"));
        field(parts.authorization.unwrap_or(b"\0none"));
        field(parts.accept_encoding.unwrap_or(b"\0none"));
        Key(mac.finalize().into_bytes().into())
    }

    fn token_digest(&self, token: &str) -> [u8; 32] {
        let mut mac = self.mac();
        mac.update(b"token-cache-token\0");
        mac.update(token.as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// What the cache has for `key`. A miss waits (at most `wait`) while another login's
    /// request for the same key is out, then takes its answer; past `wait`, or when that
    /// request failed, it is a miss of its own.
    pub async fn lookup(&self, key: Key, wait: Duration) -> Lookup<'_> {
        if let Some(entry) = self.live(&key) {
            self.metrics.hits.inc();
            return Lookup::Hit {
                entry,
                waited: false,
            };
        }
        if let Some(negative) = self.negative_for(&key) {
            self.metrics.negative_hits.inc();
            return Lookup::Negative(negative);
        }
        self.metrics.waiting.inc();
        let waited = tokio::time::timeout(wait, self.entries.get_value_or_guard_async(&key)).await;
        self.metrics.waiting.dec();
        match waited {
            Ok(Ok(entry)) if entry.live_at(Instant::now()) => {
                self.metrics.hits.inc();
                self.metrics.waits.inc();
                Lookup::Hit {
                    entry,
                    waited: true,
                }
            }
            Ok(Ok(_expired)) => {
                self.metrics.misses.inc();
                Lookup::Miss(Flight::alone())
            }
            Ok(Err(guard)) => {
                // The request before this one may have just failed.
                if let Some(negative) = self.negative_for(&key) {
                    self.metrics.negative_hits.inc();
                    self.metrics.waits.inc();
                    return Lookup::Negative(negative);
                }
                self.metrics.misses.inc();
                Lookup::Miss(Flight { guard: Some(guard) })
            }
            Err(_waited_too_long) => {
                self.metrics.misses.inc();
                Lookup::Miss(Flight::alone())
            }
        }
    }

    /// The entry for `key` if it has time left; an expired one is removed.
    fn live(&self, key: &Key) -> Option<Arc<Entry>> {
        let entry = self.entries.get(key)?;
        if entry.live_at(Instant::now()) {
            return Some(entry);
        }
        if self
            .entries
            .remove_if(key, |e| Arc::ptr_eq(e, &entry))
            .is_some()
        {
            self.metrics.evicted(Eviction::Expired.as_str());
        }
        self.update_gauges();
        None
    }

    fn negative_for(&self, key: &Key) -> Option<Arc<Negative>> {
        let negative = self.negative.get(key)?;
        if negative.expires > Instant::now() {
            return Some(negative);
        }
        self.negative.remove_if(key, |n| Arc::ptr_eq(n, &negative));
        None
    }

    /// Keep a successful upgraded response (`body`: all of it, as it came, perhaps
    /// compressed; `plain`: the same decoded of its `Content-Encoding`, where the access token
    /// is looked for) for `serve_for`. A response whose access token cannot be found is not
    /// kept (a revoke could not name it); the flight ends either way. The entry kept, if one
    /// was.
    #[allow(clippy::too_many_arguments)]
    pub fn store(
        &self,
        flight: Flight<'_>,
        key: Key,
        status: StatusCode,
        headers: &HeaderMap,
        body: &[u8],
        plain: &[u8],
        serve_for: Duration,
        credential: Option<[u8; 32]>,
    ) -> Option<Arc<Entry>> {
        let token = access_token(plain)?;
        let entry = Arc::new(Entry {
            status,
            headers: headers.clone(),
            body: Zeroizing::new(body.to_vec()),
            token: self.token_digest(&token),
            expires: std::sync::Mutex::new(Instant::now() + serve_for),
            credential,
        });
        drop(token);
        match flight.guard {
            Some(guard) => {
                let _ = guard.insert(entry.clone());
            }
            None => self.entries.insert(key, entry.clone()),
        }
        self.negative.remove(&key);
        self.sweep();
        Some(entry)
    }

    /// Serve `entry` (kept under `key`) until `until` at the latest: an introspection found
    /// when its session ends. Never lengthens it; one whose time is then over is removed at
    /// once (`expired`). Whether it is still kept.
    pub fn limit(&self, key: Key, entry: &Arc<Entry>, until: Instant) -> bool {
        {
            let mut expires = entry.expires.lock().unwrap_or_else(|e| e.into_inner());
            if until < *expires {
                *expires = until;
            }
        }
        if entry.live_at(Instant::now()) {
            return true;
        }
        if self
            .entries
            .remove_if(&key, |e| Arc::ptr_eq(e, entry))
            .is_some()
        {
            self.metrics.evicted(Eviction::Expired.as_str());
        }
        self.update_gauges();
        false
    }

    /// The upgrade for `key` failed: for `negative_ttl`, logins with the key fall back without
    /// asking (`0`: remember nothing). Ends the flight, so a waiter sees the failure.
    pub fn failed(
        &self,
        flight: Flight<'_>,
        key: Key,
        info: &UpstreamErrorInfo,
        negative_ttl: Duration,
    ) {
        if !negative_ttl.is_zero() {
            self.negative.insert(
                key,
                Arc::new(Negative {
                    info: info.clone(),
                    expires: Instant::now() + negative_ttl,
                }),
            );
        }
        drop(flight);
    }

    /// Remove every entry whose access token is `token`; whether there was one.
    pub fn evict_token(&self, token: &str, why: Eviction) -> bool {
        if self.entries.is_empty() {
            return false;
        }
        let digest = self.token_digest(token);
        self.evict_where(why, |e| subtle_eq(&e.token, &digest)) > 0
    }

    /// Is `token` one the cache handed out (and still holds)?
    pub fn holds_token(&self, token: &str) -> bool {
        if self.entries.is_empty() {
            return false;
        }
        let digest = self.token_digest(token);
        self.entries
            .iter()
            .any(|(_, e)| subtle_eq(&e.token, &digest))
    }

    /// After a reload: drop the entries of `[[credentials]]` entries that changed or went
    /// (`keep` says which fingerprints remain), or every entry (`keep` is `None`: the cache
    /// was turned off). Failures remembered before it are forgotten: the reload may have
    /// fixed what failed (a route, a host), so the next login tries again.
    pub fn reload(&self, keep: Option<&std::collections::HashSet<[u8; 32]>>) -> usize {
        self.negative.clear();
        match keep {
            None => self.evict_where(Eviction::Reload, |_| true),
            Some(keep) => self.evict_where(Eviction::Reload, |e| {
                e.credential.is_some_and(|c| !keep.contains(&c))
            }),
        }
    }

    /// Remove expired entries (and negative ones), so that no session outlives its time in
    /// memory.
    pub fn sweep(&self) {
        let now = Instant::now();
        self.evict_where(Eviction::Expired, |e| !e.live_at(now));
        self.negative.retain(|_, n| n.expires > now);
    }

    fn evict_where(&self, why: Eviction, mut remove: impl FnMut(&Entry) -> bool) -> usize {
        let doomed: Vec<Key> = self
            .entries
            .iter()
            .filter(|(_, e)| remove(e))
            .map(|(k, _)| k)
            .collect();
        let mut n = 0;
        for key in doomed {
            if self.entries.remove(&key).is_some() {
                self.metrics.evicted(why.as_str());
                n += 1;
            }
        }
        self.update_gauges();
        n
    }

    fn update_gauges(&self) {
        self.metrics.entries.set(self.entries.len() as i64);
        self.metrics
            .bytes
            .set(self.entries.iter().map(|(_, e)| e.weight()).sum::<u64>() as i64);
    }

    /// Entries held now.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl Drop for TokenCache {
    fn drop(&mut self) {
        // Entries wipe their bodies when the last reference goes.
        self.entries.clear();
    }
}

fn subtle_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    use subtle::ConstantTimeEq;
    a.ct_eq(b).into()
}

/// The access token of a (decoded) token response body: JSON (`access_token`) or
/// Salesforce's XML (`<access_token>…</access_token>`). `None` for one without it.
pub(crate) fn access_token(body: &[u8]) -> Option<Zeroizing<String>> {
    #[derive(serde::Deserialize)]
    struct Token<'a> {
        #[serde(borrow)]
        access_token: Option<std::borrow::Cow<'a, str>>,
    }
    if let Ok(Token {
        access_token: Some(token),
    }) = serde_json::from_slice::<Token<'_>>(body)
    {
        return Some(Zeroizing::new(token.into_owned()));
    }
    let text = std::str::from_utf8(body).ok()?;
    let start = text.find("<access_token>")? + "<access_token>".len();
    let len = text[start..].find("</access_token>")?;
    let token = text[start..start + len].trim();
    (!token.is_empty() && !token.contains('<')).then(|| Zeroizing::new(token.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> TokenCacheConfig {
        TokenCacheConfig::default()
    }

    fn parts<'a>(shape: &'a str, accept: Option<&'a [u8]>) -> KeyParts<'a> {
        KeyParts {
            target_host: "acme.my.salesforce.com",
            flow: Flow::ClientCredentials,
            shape,
            accept,
            authorization: None,
            accept_encoding: None,
        }
    }

    const BODY: &[u8] = br#"{"access_token":"00D!AQ.secret-token","instance_url":"https://acme.my.salesforce.com","id":"https://acme.my.salesforce.com/id/00D5g000004AcmeEAA/0055g00000RunAsAAA","token_type":"Bearer"}"#;

    fn json_headers() -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("content-type", "application/json".parse().unwrap());
        h
    }

    async fn fill(cache: &TokenCache, key: Key, serve_for: Duration) {
        fill_for(cache, key, serve_for, None).await
    }

    /// A miss for `key`, then its answer stored as filled by the `credential` entry's login.
    async fn fill_for(
        cache: &TokenCache,
        key: Key,
        serve_for: Duration,
        credential: Option<[u8; 32]>,
    ) {
        let Lookup::Miss(flight) = cache.lookup(key, Duration::from_secs(1)).await else {
            panic!("expected a miss");
        };
        assert!(cache
            .store(
                flight,
                key,
                StatusCode::OK,
                &json_headers(),
                BODY,
                BODY,
                serve_for,
                credential
            )
            .is_some());
    }

    #[test]
    fn keys_differ_in_every_part_and_are_not_the_secret() {
        let cache = TokenCache::new(&config(), CacheMetrics::default());
        let base = cache.key(&parts("client_id=a&client_secret=s", None));
        assert_eq!(base, cache.key(&parts("client_id=a&client_secret=s", None)));
        assert_ne!(base, cache.key(&parts("client_id=a&client_secret=t", None)));
        assert_ne!(
            base,
            cache.key(&parts("client_id=a&client_secret=s&format=xml", None))
        );
        assert_ne!(
            base,
            cache.key(&parts(
                "client_id=a&client_secret=s",
                Some(b"application/xml")
            ))
        );
        let mut other_host = parts("client_id=a&client_secret=s", None);
        other_host.target_host = "beta.my.salesforce.com";
        assert_ne!(base, cache.key(&other_host));
        let mut jwt = parts("client_id=a&client_secret=s", None);
        jwt.flow = Flow::JwtBearer;
        assert_ne!(base, cache.key(&jwt));
        let mut basic = parts("client_id=a&client_secret=s", None);
        basic.authorization = Some(b"Basic YTpz");
        assert_ne!(base, cache.key(&basic));
        let mut gzip = parts("client_id=a&client_secret=s", None);
        gzip.accept_encoding = Some(b"gzip");
        assert_ne!(base, cache.key(&gzip));
        // Another process (another HMAC key) makes other keys.
        let other = TokenCache::new(&config(), CacheMetrics::default());
        assert_ne!(base, other.key(&parts("client_id=a&client_secret=s", None)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_stored_response_is_served_until_its_time_ends() {
        let metrics = CacheMetrics::default();
        let cache = TokenCache::new(&config(), metrics.clone());
        let key = cache.key(&parts("s", None));
        fill(&cache, key, Duration::from_secs(840)).await;
        tokio::time::advance(Duration::from_secs(839)).await;
        let Lookup::Hit { entry, waited } = cache.lookup(key, Duration::from_secs(1)).await else {
            panic!("expected a hit");
        };
        assert!(!waited);
        assert_eq!(&entry.body()[..], BODY);
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(matches!(
            cache.lookup(key, Duration::from_secs(1)).await,
            Lookup::Miss(_)
        ));
        assert_eq!(metrics.hits.get(), 1);
        assert_eq!(metrics.misses.get(), 2);
        assert_eq!(metrics.evictions("expired"), 1, "expired");
        assert_eq!(metrics.entries.get(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn an_introspected_entry_is_shortened_never_lengthened_and_dropped_when_over() {
        let metrics = CacheMetrics::default();
        let cache = TokenCache::new(&config(), metrics.clone());
        let key = cache.key(&parts("s", None));
        let Lookup::Miss(flight) = cache.lookup(key, Duration::from_secs(1)).await else {
            panic!("expected a miss");
        };
        let entry = cache
            .store(
                flight,
                key,
                StatusCode::OK,
                &json_headers(),
                BODY,
                BODY,
                Duration::from_secs(840),
                None,
            )
            .expect("kept");
        // A 5-minute session, 1-minute margin: served 4 minutes, not 14.
        assert!(cache.limit(key, &entry, Instant::now() + Duration::from_secs(240)));
        assert!(cache.limit(key, &entry, Instant::now() + Duration::from_secs(3600)));
        tokio::time::advance(Duration::from_secs(239)).await;
        assert!(matches!(
            cache.lookup(key, Duration::from_secs(1)).await,
            Lookup::Hit { .. }
        ));
        tokio::time::advance(Duration::from_secs(31)).await;
        assert!(matches!(
            cache.lookup(key, Duration::from_secs(1)).await,
            Lookup::Miss(_)
        ));
        // An inactive session: gone at once.
        let other = cache.key(&parts("t", None));
        let Lookup::Miss(flight) = cache.lookup(other, Duration::from_secs(1)).await else {
            panic!("expected a miss");
        };
        let entry = cache
            .store(
                flight,
                other,
                StatusCode::OK,
                &json_headers(),
                BODY,
                BODY,
                Duration::from_secs(840),
                None,
            )
            .expect("kept");
        assert!(!cache.limit(other, &entry, Instant::now()));
        assert!(cache.is_empty());
        assert_eq!(metrics.evictions("expired"), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_misses_wait_for_the_first_and_take_its_answer() {
        let metrics = CacheMetrics::default();
        let cache = Arc::new(TokenCache::new(&config(), metrics.clone()));
        let key = cache.key(&parts("s", None));
        let Lookup::Miss(flight) = cache.lookup(key, Duration::from_secs(30)).await else {
            panic!("expected a miss");
        };
        let waiters: Vec<_> = (0..10)
            .map(|_| {
                let cache = cache.clone();
                tokio::spawn(async move {
                    match cache.lookup(key, Duration::from_secs(30)).await {
                        Lookup::Hit { waited, .. } => waited,
                        _ => panic!("a waiter got no hit"),
                    }
                })
            })
            .collect();
        tokio::task::yield_now().await;
        assert!(cache
            .store(
                flight,
                key,
                StatusCode::OK,
                &json_headers(),
                BODY,
                BODY,
                Duration::from_secs(60),
                None
            )
            .is_some());
        for w in waiters {
            assert!(w.await.unwrap(), "it waited for the first login's answer");
        }
        assert_eq!(metrics.misses.get(), 1);
        assert_eq!(metrics.waits.get(), 10);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failure_is_not_cached_but_remembered_for_negative_ttl() {
        let cache = Arc::new(TokenCache::new(&config(), CacheMetrics::default()));
        let key = cache.key(&parts("s", None));
        let Lookup::Miss(flight) = cache.lookup(key, Duration::from_secs(30)).await else {
            panic!("expected a miss");
        };
        let waiter = {
            let cache = cache.clone();
            tokio::spawn(async move {
                matches!(
                    cache.lookup(key, Duration::from_secs(30)).await,
                    Lookup::Negative(_)
                )
            })
        };
        tokio::task::yield_now().await;
        let info = UpstreamErrorInfo {
            status: Some(400),
            error: Some("invalid_grant".into()),
            error_description: None,
        };
        cache.failed(flight, key, &info, Duration::from_secs(5));
        assert!(waiter.await.unwrap(), "the waiter sees the failure");
        assert!(cache.is_empty());
        match cache.lookup(key, Duration::from_secs(1)).await {
            Lookup::Negative(n) => assert_eq!(n.info, info),
            _ => panic!("expected the negative entry"),
        }
        tokio::time::advance(Duration::from_secs(5)).await;
        assert!(matches!(
            cache.lookup(key, Duration::from_secs(1)).await,
            Lookup::Miss(_)
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn a_token_is_found_and_evicted_by_its_value_only() {
        let metrics = CacheMetrics::default();
        let cache = TokenCache::new(&config(), metrics.clone());
        let key = cache.key(&parts("s", None));
        fill(&cache, key, Duration::from_secs(60)).await;
        assert!(cache.holds_token("00D!AQ.secret-token"));
        assert!(!cache.holds_token("00D!AQ.other"));
        assert!(!cache.evict_token("00D!AQ.other", Eviction::Revoked));
        assert!(cache.evict_token("00D!AQ.secret-token", Eviction::Revoked));
        assert!(cache.is_empty());
        assert_eq!(metrics.evictions("revoked"), 1, "revoked");
    }

    #[tokio::test(start_paused = true)]
    async fn reload_drops_the_entries_of_changed_credentials_only() {
        let cache = TokenCache::new(&config(), CacheMetrics::default());
        for (shape, credential) in [("a", Some([1; 32])), ("b", Some([2; 32])), ("c", None)] {
            let key = cache.key(&parts(shape, None));
            fill_for(&cache, key, Duration::from_secs(60), credential).await;
        }
        let keep: std::collections::HashSet<[u8; 32]> = [[1; 32]].into();
        assert_eq!(cache.reload(Some(&keep)), 1);
        assert_eq!(cache.len(), 2);
        assert_eq!(cache.reload(None), 2);
        assert!(cache.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn the_bounds_hold() {
        let metrics = CacheMetrics::default();
        let config = TokenCacheConfig {
            max_entries: 64,
            max_bytes: 64 * 1024,
            ..TokenCacheConfig::default()
        };
        let cache = TokenCache::new(&config, metrics.clone());
        for i in 0..1_000 {
            let shape = format!("secret-{i}");
            let key = cache.key(&parts(&shape, None));
            fill_for(&cache, key, Duration::from_secs(60), None).await;
        }
        assert!(cache.len() <= 64, "{}", cache.len());
        assert!(metrics.bytes.get() <= 64 * 1024, "{}", metrics.bytes.get());
        assert!(
            metrics.evictions("capacity") >= 1000 - 64,
            "capacity evictions"
        );
    }

    #[test]
    fn the_access_token_is_found_in_json_and_xml() {
        assert_eq!(
            access_token(BODY).as_deref().map(String::as_str),
            Some("00D!AQ.secret-token")
        );
        let xml = b"<?xml version=\"1.0\" encoding=\"UTF-8\"?><OAuth><access_token>00D!AQ.x</access_token><id>i</id></OAuth>";
        assert_eq!(
            access_token(xml).as_deref().map(String::as_str),
            Some("00D!AQ.x")
        );
        assert!(access_token(br#"{"error":"invalid_grant"}"#).is_none());
        assert!(access_token(b"\x1f\x8b\x08\0compressed").is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn a_compressed_answer_is_kept_as_it_came_for_logins_accepting_the_same_encoding() {
        let cache = TokenCache::new(&config(), CacheMetrics::default());
        let gzip = |accept_encoding| KeyParts {
            accept_encoding,
            ..parts("s", None)
        };
        let key = cache.key(&gzip(Some(b"gzip, deflate")));
        let Lookup::Miss(flight) = cache.lookup(key, Duration::from_secs(1)).await else {
            panic!("expected a miss");
        };
        let mut headers = json_headers();
        headers.insert("content-encoding", "gzip".parse().unwrap());
        let compressed = b"\x1f\x8b\x08\0as-it-came";
        assert!(cache
            .store(
                flight,
                key,
                StatusCode::OK,
                &headers,
                compressed,
                BODY,
                Duration::from_secs(60),
                None
            )
            .is_some());
        let Lookup::Hit { entry, .. } = cache.lookup(key, Duration::from_secs(1)).await else {
            panic!("expected a hit");
        };
        assert_eq!(&entry.body()[..], compressed);
        assert_eq!(entry.headers["content-encoding"], "gzip");
        assert!(cache.evict_token("00D!AQ.secret-token", Eviction::Revoked));
    }
}
