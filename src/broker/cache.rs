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

use crate::cluster::Cluster;
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
    /// Stored in the fleet's Redis too: a local hit checks it is still there (another
    /// replica may have evicted it), at most once per [`SHARED_RECHECK`].
    shared: bool,
    /// When Redis last said it still holds this entry.
    confirmed: std::sync::Mutex<Option<Instant>>,
}

/// How long after Redis said a shared entry is still the fleet's a local hit serves it without
/// asking again: a session another replica evicted is served here at most this much longer,
/// and hits on a busy key cost one EXISTS per this time, not one each.
pub const SHARED_RECHECK: Duration = Duration::from_millis(100);

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
    /// The fleet's lock for the key, held (its Redis key and random value).
    lock: Option<(Arc<Cluster>, String, String)>,
}

impl Flight<'_> {
    /// A flight nobody waits for (the cache was not asked, or waiting took too long).
    pub fn alone() -> Self {
        Flight {
            guard: None,
            lock: None,
        }
    }
}

impl Drop for Flight<'_> {
    fn drop(&mut self) {
        // Ended without an answer stored: let another replica's waiter try at once.
        if let Some((cluster, lock, value)) = self.lock.take() {
            tokio::spawn(async move { unlock(&cluster, lock, value).await });
        }
    }
}

/// Delete the fleet lock `lock` if it still holds `value` (not another replica's lock taken
/// after ours expired).
async fn unlock(cluster: &Cluster, lock: String, value: String) {
    const SCRIPT: &str =
        "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end";
    cluster
        .call("cache_unlock", |mut conn| async move {
            redis::Script::new(SCRIPT)
                .key(lock)
                .arg(value)
                .invoke_async::<i64>(&mut conn)
                .await
        })
        .await;
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
    /// The fleet's Redis, shared by every replica (`[cluster]`).
    cluster: Option<Arc<Cluster>>,
    entries: Entries,
    negative: Cache<Key, Arc<Negative>>,
    pub metrics: CacheMetrics,
}

impl TokenCache {
    pub fn new(config: &TokenCacheConfig, metrics: CacheMetrics) -> TokenCache {
        TokenCache::shared(config, metrics, None)
    }

    /// A cache shared through `cluster` (when there is one): its keys are digests under a key
    /// every replica derives from the fleet's, so every replica finds the same entries.
    pub fn shared(
        config: &TokenCacheConfig,
        metrics: CacheMetrics,
        cluster: Option<Arc<Cluster>>,
    ) -> TokenCache {
        let secret = match &cluster {
            Some(cluster) => cluster.derive("token-cache"),
            None => {
                let mut secret = Zeroizing::new([0u8; 32]);
                getrandom::getrandom(&mut secret[..]).expect("the OS has random bytes");
                secret
            }
        };
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
            cluster,
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
            if entry.shared && !self.still_shared(&key, &entry).await {
                return Box::pin(self.lookup(key, wait)).await;
            }
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
                let mut flight = Flight {
                    guard: Some(guard),
                    lock: None,
                };
                if let Some(cluster) = &self.cluster {
                    match self.ask_fleet(cluster, &key, &mut flight, wait).await {
                        Fleet::Hit(entry, waited) => {
                            if let Some(guard) = flight.guard.take() {
                                let _ = guard.insert(entry.clone());
                            }
                            self.update_gauges();
                            self.metrics.hits.inc();
                            if waited {
                                self.metrics.waits.inc();
                            }
                            return Lookup::Hit { entry, waited };
                        }
                        Fleet::Miss => {}
                    }
                }
                self.metrics.misses.inc();
                Lookup::Miss(flight)
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
        let mut flight = flight;
        let token = access_token(plain)?;
        let shared = self.cluster.as_ref().is_some_and(|c| c.is_up());
        let entry = Arc::new(Entry {
            status,
            headers: headers.clone(),
            body: Zeroizing::new(body.to_vec()),
            token: self.token_digest(&token),
            expires: std::sync::Mutex::new(Instant::now() + serve_for),
            credential,
            shared,
            confirmed: std::sync::Mutex::new(None),
        });
        drop(token);
        if let (Some(cluster), true) = (&self.cluster, shared) {
            self.publish(cluster.clone(), key, &entry, serve_for, flight.lock.take());
        }
        match flight.guard.take() {
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
        let mut unshare = Vec::new();
        for key in doomed {
            if let Some((_, entry)) = self.entries.remove(&key) {
                self.metrics.evicted(why.as_str());
                n += 1;
                if entry.shared && why != Eviction::Expired {
                    unshare.push((key, entry.token));
                }
            }
        }
        self.update_gauges();
        if let (Some(cluster), false) = (&self.cluster, unshare.is_empty()) {
            let cluster = cluster.clone();
            tokio::spawn(async move {
                let keys: Vec<String> = unshare
                    .iter()
                    .flat_map(|(key, token)| {
                        [
                            cluster.key(&format!("tc:{}", hex(&key.0))),
                            cluster.key(&format!("tc-token:{}", hex(token))),
                        ]
                    })
                    .collect();
                cluster
                    .call("cache_del", |mut conn| async move {
                        redis::cmd("DEL")
                            .arg(keys)
                            .query_async::<i64>(&mut conn)
                            .await
                    })
                    .await;
            });
        }
        n
    }

    /// A local entry marked shared: is it still in Redis (asked at most once per
    /// [`SHARED_RECHECK`])? No (another replica evicted it): it goes here too. Redis
    /// unavailable: yes, serve it.
    async fn still_shared(&self, key: &Key, entry: &Arc<Entry>) -> bool {
        let Some(cluster) = &self.cluster else {
            return true;
        };
        let lock = || entry.confirmed.lock().unwrap_or_else(|e| e.into_inner());
        if lock().is_some_and(|at| at.elapsed() < SHARED_RECHECK) {
            return true;
        }
        let name = cluster.key(&format!("tc:{}", hex(&key.0)));
        let exists = cluster
            .call("cache_exists", |mut conn| async move {
                redis::cmd("EXISTS")
                    .arg(name)
                    .query_async::<i64>(&mut conn)
                    .await
            })
            .await;
        if exists != Some(0) {
            if exists.is_some() {
                *lock() = Some(Instant::now());
            }
            return true;
        }
        // Gone from the fleet (revoked, refused, reloaded elsewhere): not counted here, the
        // replica that evicted it counted it.
        self.entries.remove_if(key, |e| Arc::ptr_eq(e, entry));
        self.update_gauges();
        false
    }

    /// The fleet's entry for `key`, or its answer after another replica's login (waiting at
    /// most `wait`), or the fleet's lock taken into `flight`: this replica logs in.
    async fn ask_fleet(
        &self,
        cluster: &Arc<Cluster>,
        key: &Key,
        flight: &mut Flight<'_>,
        wait: Duration,
    ) -> Fleet {
        let name = cluster.key(&format!("tc:{}", hex(&key.0)));
        if let Some(entry) = self.fetch(cluster, &name).await {
            return Fleet::Hit(entry, false);
        }
        if !cluster.is_up() {
            return Fleet::Miss;
        }
        let lock = cluster.key(&format!("tc-lock:{}", hex(&key.0)));
        let value = {
            let mut bytes = [0u8; 16];
            getrandom::getrandom(&mut bytes).expect("the OS has random bytes");
            hex(&bytes)
        };
        let ms = wait.as_millis().clamp(1, u64::MAX as u128) as u64;
        let (l, v) = (lock.clone(), value.clone());
        let taken = cluster
            .call("cache_lock", |mut conn| async move {
                redis::cmd("SET")
                    .arg(l)
                    .arg(v)
                    .arg("NX")
                    .arg("PX")
                    .arg(ms)
                    .query_async::<Option<String>>(&mut conn)
                    .await
            })
            .await;
        match taken {
            Some(Some(_ok)) => {
                flight.lock = Some((cluster.clone(), lock, value));
                Fleet::Miss
            }
            Some(None) => {
                // Another replica is logging in with these credentials: its answer comes
                // through Redis.
                let deadline = Instant::now() + wait;
                self.metrics.waiting.inc();
                let mut found = None;
                while Instant::now() < deadline && cluster.is_up() {
                    tokio::time::sleep(FLEET_POLL).await;
                    if let Some(entry) = self.fetch(cluster, &name).await {
                        found = Some(entry);
                        break;
                    }
                }
                self.metrics.waiting.dec();
                match found {
                    Some(entry) => Fleet::Hit(entry, true),
                    None => Fleet::Miss,
                }
            }
            None => Fleet::Miss,
        }
    }

    /// GET, open and decode the fleet's entry `name`, with the time Redis has left on it.
    async fn fetch(&self, cluster: &Cluster, name: &str) -> Option<Arc<Entry>> {
        let n = name.to_owned();
        let (value, pttl) = cluster
            .call("cache_get", |mut conn| async move {
                redis::pipe()
                    .cmd("GET")
                    .arg(&n)
                    .cmd("PTTL")
                    .arg(&n)
                    .query_async::<(Option<Vec<u8>>, i64)>(&mut conn)
                    .await
            })
            .await?;
        let value = Zeroizing::new(value?);
        if pttl <= 0 {
            return None;
        }
        let plain = cluster.open(&value)?;
        let entry = decode(&plain, Duration::from_millis(pttl as u64))?;
        Some(Arc::new(entry))
    }

    /// SET the entry (sealed) in Redis for `serve_for`, its token → key mapping, then release
    /// the fleet lock (in the background: the login does not wait for Redis).
    fn publish(
        &self,
        cluster: Arc<Cluster>,
        key: Key,
        entry: &Entry,
        serve_for: Duration,
        lock: Option<(Arc<Cluster>, String, String)>,
    ) {
        let sealed = cluster.seal(&encode(entry));
        let name = cluster.key(&format!("tc:{}", hex(&key.0)));
        let by_token = cluster.key(&format!("tc-token:{}", hex(&entry.token)));
        let ms = serve_for.as_millis().clamp(1, u64::MAX as u128) as u64;
        let key_hex = hex(&key.0);
        tokio::spawn(async move {
            cluster
                .call("cache_set", |mut conn| async move {
                    redis::pipe()
                        .cmd("SET")
                        .arg(&name)
                        .arg(sealed)
                        .arg("PX")
                        .arg(ms)
                        .ignore()
                        .cmd("SET")
                        .arg(&by_token)
                        .arg(key_hex)
                        .arg("PX")
                        .arg(ms)
                        .ignore()
                        .query_async::<()>(&mut conn)
                        .await
                })
                .await;
            if let Some((cluster, lock, value)) = lock {
                unlock(&cluster, lock, value).await;
            }
        });
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

/// How often a replica waiting for another replica's login looks in Redis.
const FLEET_POLL: Duration = Duration::from_millis(25);

/// What the fleet had for a local miss.
enum Fleet {
    /// Its entry (`true`: after waiting for another replica's login).
    Hit(Arc<Entry>, bool),
    /// Nothing: log in (holding the fleet's lock, if it could be had).
    Miss,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// An entry as the fleet keeps it (before sealing): status (2 bytes), token digest (32),
/// credential fingerprint (1 + 32), header count (4), each header name and value
/// (length-prefixed, 4 bytes each), then the body.
fn encode(entry: &Entry) -> Zeroizing<Vec<u8>> {
    let mut out = Zeroizing::new(Vec::with_capacity(entry.body.len() + 512));
    out.extend_from_slice(&entry.status.as_u16().to_be_bytes());
    out.extend_from_slice(&entry.token);
    match entry.credential {
        Some(c) => {
            out.push(1);
            out.extend_from_slice(&c);
        }
        None => out.extend_from_slice(&[0u8; 33]),
    }
    out.extend_from_slice(&(entry.headers.len() as u32).to_be_bytes());
    for (name, value) in &entry.headers {
        for part in [name.as_str().as_bytes(), value.as_bytes()] {
            out.extend_from_slice(&(part.len() as u32).to_be_bytes());
            out.extend_from_slice(part);
        }
    }
    out.extend_from_slice(&entry.body);
    out
}

/// [`encode`]'s output back to an entry served for `serve_for`; `None` if malformed.
fn decode(bytes: &[u8], serve_for: Duration) -> Option<Entry> {
    fn take<'a>(bytes: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
        if bytes.len() < n {
            return None;
        }
        let (head, rest) = bytes.split_at(n);
        *bytes = rest;
        Some(head)
    }
    fn len(bytes: &mut &[u8]) -> Option<usize> {
        Some(u32::from_be_bytes(take(bytes, 4)?.try_into().ok()?) as usize)
    }
    let mut rest = bytes;
    let status =
        StatusCode::from_u16(u16::from_be_bytes(take(&mut rest, 2)?.try_into().ok()?)).ok()?;
    let token: [u8; 32] = take(&mut rest, 32)?.try_into().ok()?;
    let has_credential = take(&mut rest, 1)?[0] == 1;
    let credential: [u8; 32] = take(&mut rest, 32)?.try_into().ok()?;
    let mut headers = HeaderMap::new();
    for _ in 0..len(&mut rest)? {
        let n = len(&mut rest)?;
        let name = http::HeaderName::from_bytes(take(&mut rest, n)?).ok()?;
        let n = len(&mut rest)?;
        let value = http::HeaderValue::from_bytes(take(&mut rest, n)?).ok()?;
        headers.append(name, value);
    }
    Some(Entry {
        status,
        headers,
        body: Zeroizing::new(rest.to_vec()),
        token,
        expires: std::sync::Mutex::new(Instant::now() + serve_for),
        credential: has_credential.then_some(credential),
        shared: true,
        confirmed: std::sync::Mutex::new(None),
    })
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
