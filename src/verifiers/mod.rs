//! Credential binding (docs/operating.md, "Password verifiers"): the verifier of each credential
//! set, and the check an upgrade waits for.
//!
//! - A set's verifier is its entry's configured `password_hash`, else the one learned from a
//!   password login Salesforce accepted ([`store`]: the state file).
//! - [`Verifiers::check`] tells whether a login's password matches. Argon2 runs off the async
//!   threads (`spawn_blocking`), at most one run per core at a time, and at most one per
//!   verifier: concurrent logins for one set wait for the run before theirs, whose answer is
//!   often theirs too. What a verifier remembers ([`throttle`]: the last accepted password's
//!   keyed digest, the last refused ones, a backoff after repeated refusals) answers most logins
//!   without Argon2: only the first login per set per process pays for it.
//! - [`Verifiers::learn`] makes a password Salesforce accepted the set's verifier (it replaces
//!   one that no longer matches: the password was changed).
//! - With a cluster ([`fleet`]), a learned verifier is also the fleet's: a replica that has
//!   none for a set, or whose own does not match a login's password, asks Redis and keeps the
//!   fleet's (a password changed and learned through another replica). A configured verifier
//!   never asks Redis.

pub mod fleet;
pub mod store;
pub mod throttle;

pub use store::{SetKey, Store, StoreError};

use crate::cluster::Cluster;
use crate::config::{Config, VerifyPassword};
use crate::password::{Cost, Digest, DigestKey, Password, Verifier};
use crate::policy::Verification;
use crate::telemetry::events::PasswordCheck;
use crate::telemetry::metrics::Metrics;
use crate::telemetry::report::{VerifierSource, VerifierView};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use throttle::Guard;

/// What checking a login's password found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checked {
    /// It matches the set's verifier.
    Verified,
    /// It does not (or the login carried no password).
    Mismatch,
    /// Not checked: the verifier refused too many passwords lately and this one is not known
    /// ([`throttle`]). Treated as a mismatch.
    Throttled,
    /// The set has no verifier.
    NoVerifier,
    /// `verify_password = "off"`: not looked at.
    Off,
}

impl Checked {
    /// The event's `password_check`.
    pub fn password_check(self) -> PasswordCheck {
        match self {
            Checked::Verified => PasswordCheck::Verified,
            Checked::Mismatch | Checked::Throttled => PasswordCheck::Mismatch,
            Checked::NoVerifier => PasswordCheck::None,
            Checked::Off => PasswordCheck::Off,
        }
    }
}

/// What one verifier remembers, and the turn its checks take one at a time.
#[derive(Default)]
struct Slot {
    guard: Guard,
    turn: Arc<tokio::sync::Mutex<()>>,
}

/// The learned verifiers and everything the checks remember.
pub struct Verifiers {
    store: Arc<Store>,
    key: DigestKey,
    /// By verifier (a configured one may serve several sets): bounded by the verifiers there
    /// are, whatever clients send.
    slots: Mutex<HashMap<Verifier, Slot>>,
    /// Argon2 runs at once: one per core.
    hashers: tokio::sync::Semaphore,
    metrics: Arc<Metrics>,
    /// The fleet's shared verifiers (`[cluster]`), if any.
    cluster: Option<Arc<Cluster>>,
    /// Sets the fleet had no verifier for, and when Redis said so: not asked again for
    /// [`ABSENT_FOR`], so a set without one costs no Redis round trip per login.
    absent: Mutex<HashMap<SetKey, std::time::Instant>>,
}

/// How long a set the fleet had no verifier for is not asked about again: another replica's
/// newly learned verifier is enforced here at most this much later.
pub const ABSENT_FOR: std::time::Duration = std::time::Duration::from_secs(5);

/// At most this many sets remembered as absent (beyond it, they are forgotten at once).
const MAX_ABSENT: usize = 10_000;

impl Verifiers {
    pub fn new(store: Store, metrics: Arc<Metrics>) -> Verifiers {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        metrics.learned_verifiers(store.len());
        Verifiers {
            store: Arc::new(store),
            key: DigestKey::random(),
            slots: Mutex::new(HashMap::new()),
            hashers: tokio::sync::Semaphore::new(cores),
            metrics,
            cluster: None,
            absent: Mutex::new(HashMap::new()),
        }
    }

    /// Share learned verifiers through `cluster`.
    pub fn with_cluster(mut self, cluster: Option<Arc<Cluster>>) -> Verifiers {
        self.cluster = cluster;
        self
    }

    /// Redis is back (or up at start): add the verifiers this replica learned that the fleet
    /// lacks (HSETNX: one the fleet has is kept; a login it does not match asks again).
    pub async fn resync(&self) {
        let Some(cluster) = &self.cluster else { return };
        let learned = self.store.entries();
        if let Some(added) = fleet::push_missing(cluster, &learned).await {
            if added > 0 {
                tracing::info!(added, "learned password verifiers added to the fleet's");
            }
        }
    }

    /// The fleet's verifier of `set`, kept as this replica's learned one when it is not
    /// already (`current`).
    async fn adopt(&self, set: &SetKey, current: Option<&Verifier>) -> Option<Verifier> {
        let cluster = self.cluster.as_ref()?;
        let verifier = fleet::fetch(cluster, set).await?;
        if Some(&verifier) == current {
            return None;
        }
        let inserted = {
            let (store, set, verifier) = (self.store.clone(), set.clone(), verifier.clone());
            tokio::task::spawn_blocking(move || store.insert(&set, verifier)).await
        };
        let (replaced, written) = inserted.ok()?;
        if let Some(old) = &replaced {
            self.lock_slots().remove(old);
        }
        self.metrics.learned_verifiers(self.store.len());
        match written {
            Ok(()) => tracing::info!(
                client_id = %set.client_id,
                username = %set.username,
                replaced = replaced.is_some(),
                "took the password verifier another replica learned"
            ),
            Err(e) => tracing::error!(
                client_id = %set.client_id,
                username = %set.username,
                error = %e,
                "cannot write the state file; the fleet's verifier holds until the proxy stops"
            ),
        }
        Some(verifier)
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Check `password` (`None`: the login carried none) for `set` as `verification` says.
    /// Never fails: a problem is a [`Checked::Mismatch`] (not upgraded: the original goes).
    pub async fn check(
        &self,
        set: &SetKey,
        password: Option<&Password>,
        verification: &Verification,
    ) -> Checked {
        if verification.mode == VerifyPassword::Off {
            return Checked::Off;
        }
        let configured = verification.configured.is_some();
        let verifier = match verification
            .configured
            .clone()
            .or_else(|| self.store.get(set))
        {
            Some(v) => v,
            // None here: perhaps another replica learned it (asked at most every
            // ABSENT_FOR per set).
            None if self.recently_absent(set) => return Checked::NoVerifier,
            None => match self.adopt(set, None).await {
                Some(v) => v,
                None => {
                    self.note_absent(set);
                    return Checked::NoVerifier;
                }
            },
        };
        let Some(password) = password else {
            return Checked::Mismatch;
        };
        let (checked, hashed) = self.check_against(&verifier, password).await;
        if !(checked == Checked::Mismatch && hashed) || configured || self.cluster.is_none() {
            return checked;
        }
        // A mismatch that cost an Argon2 run (so as often as the throttle lets wrong passwords
        // through): the password may have changed, learned by another replica.
        match self.adopt(set, Some(&verifier)).await {
            Some(fleet) => self.check_against(&fleet, password).await.0,
            None => checked,
        }
    }

    /// [`check`](Self::check) against one verifier; `true` when it cost an Argon2 run.
    async fn check_against(&self, verifier: &Verifier, password: &Password) -> (Checked, bool) {
        let verifier = verifier.clone();
        let digest = self.key.digest(password);
        if let Some(known) = self.answer(&verifier, &digest) {
            return (known, false);
        }
        let turn = self.turn(&verifier);
        let _turn = turn.lock().await;
        // The run before ours may have answered for this password, or started a backoff.
        if let Some(known) = self.answer(&verifier, &digest) {
            return (known, false);
        }
        let matched = {
            let (verifier, password) = (verifier.clone(), password.clone());
            self.argon2("check", move || verifier.matches(&password))
                .await
                .unwrap_or(false)
        };
        self.slot(&verifier, |s| {
            s.guard.record(digest, matched, Instant::now())
        });
        let checked = if matched {
            Checked::Verified
        } else {
            Checked::Mismatch
        };
        (checked, true)
    }

    /// Salesforce accepted `password` for `set` on a login grantshift forwarded as it came:
    /// make it the set's learned verifier, unless it already is. Writes the state file.
    pub async fn learn(&self, set: &SetKey, password: &Password) {
        let digest = self.key.digest(password);
        if let Some(current) = self.store.get(set) {
            if self.answer(&current, &digest) == Some(Checked::Verified) {
                return;
            }
            let matched = {
                let (verifier, password) = (current.clone(), password.clone());
                self.argon2("learn", move || verifier.matches(&password))
                    .await
                    .unwrap_or(false)
            };
            if matched {
                self.slot(&current, |s| s.guard.accept(digest));
                return;
            }
        }
        let made = {
            let password = password.clone();
            self.argon2("learn", move || Verifier::hash(&password, Cost::OWASP))
                .await
        };
        let Some(verifier) = made else {
            tracing::error!("could not make a password verifier");
            return;
        };
        let inserted = {
            let (store, set, verifier) = (self.store.clone(), set.clone(), verifier.clone());
            tokio::task::spawn_blocking(move || store.insert(&set, verifier)).await
        };
        let Ok((replaced, written)) = inserted else {
            tracing::error!("could not store a password verifier");
            return;
        };
        {
            let mut slots = self.lock_slots();
            if let Some(old) = &replaced {
                slots.remove(old);
            }
            slots
                .entry(verifier.clone())
                .or_default()
                .guard
                .accept(digest);
        }
        self.metrics.learned_verifiers(self.store.len());
        if let Some(cluster) = &self.cluster {
            fleet::publish(cluster, set, &verifier).await;
        }
        match written {
            Ok(()) => tracing::info!(
                client_id = %set.client_id,
                username = %set.username,
                replaced = replaced.is_some(),
                "learned the password verifier of a credential set"
            ),
            Err(e) => tracing::error!(
                client_id = %set.client_id,
                username = %set.username,
                error = %e,
                "cannot write the state file; the learned verifier holds until the proxy stops"
            ),
        }
    }

    /// Forget what is remembered about verifiers that are no longer in use (a reload changed
    /// a `password_hash`).
    pub fn prune(&self, config: &Config) {
        let mut live: std::collections::HashSet<Verifier> =
            self.store.verifiers().into_iter().collect();
        live.extend(
            config
                .credentials
                .iter()
                .filter_map(|c| c.password_hash.clone()),
        );
        self.lock_slots().retain(|v, _| live.contains(v));
    }

    /// What the report shows of each set's verifier under `config`.
    pub fn view<'a>(&'a self, config: &'a Config) -> impl Fn(&str, &str) -> VerifierView + 'a {
        view(config, &self.store)
    }

    fn lock_absent(&self) -> std::sync::MutexGuard<'_, HashMap<SetKey, std::time::Instant>> {
        self.absent.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Redis said within [`ABSENT_FOR`] that the fleet has no verifier for `set`.
    fn recently_absent(&self, set: &SetKey) -> bool {
        self.cluster.is_some()
            && self
                .lock_absent()
                .get(set)
                .is_some_and(|at| at.elapsed() < ABSENT_FOR)
    }

    /// Remember that the fleet had none for `set` (only when Redis answered: while it is down
    /// every login asks, and [`Cluster::call`] answers at once).
    fn note_absent(&self, set: &SetKey) {
        let Some(cluster) = &self.cluster else { return };
        if !cluster.is_up() {
            return;
        }
        let mut absent = self.lock_absent();
        if absent.len() >= MAX_ABSENT {
            absent.retain(|_, at| at.elapsed() < ABSENT_FOR);
            if absent.len() >= MAX_ABSENT {
                return;
            }
        }
        absent.insert(set.clone(), std::time::Instant::now());
    }

    fn lock_slots(&self) -> std::sync::MutexGuard<'_, HashMap<Verifier, Slot>> {
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn slot<T>(&self, verifier: &Verifier, f: impl FnOnce(&mut Slot) -> T) -> T {
        f(self.lock_slots().entry(verifier.clone()).or_default())
    }

    fn answer(&self, verifier: &Verifier, digest: &Digest) -> Option<Checked> {
        self.slot(verifier, |s| s.guard.answer(digest, Instant::now()))
    }

    fn turn(&self, verifier: &Verifier) -> Arc<tokio::sync::Mutex<()>> {
        self.slot(verifier, |s| s.turn.clone())
    }

    /// Run `work` (Argon2) on a blocking thread once a hasher is free; counted in
    /// `grantshift_password_hashes_total{purpose}`. `None` if it panicked.
    async fn argon2<T: Send + 'static>(
        &self,
        purpose: &'static str,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Option<T> {
        let _hasher = self.hashers.acquire().await.ok()?;
        self.metrics.password_hash(purpose);
        tokio::task::spawn_blocking(work).await.ok()
    }
}

/// What the report shows of a set's verifier: its source (configured, learned, none) and the
/// `verify_password` of the entry it matches (with no entry, the client-credentials default).
pub fn view<'a>(config: &'a Config, store: &'a Store) -> impl Fn(&str, &str) -> VerifierView + 'a {
    move |client_id, username| {
        // A SOAP login()'s set names no app (client id ""): its entry is the one naming an
        // app for the username, and its password is always checked.
        let soap = client_id.is_empty();
        let entry = config.credentials.iter().find(|c| match soap {
            true => c.is_for(username) && c.soap_app().is_some(),
            false => c.matches(client_id, username),
        });
        let source = if entry.is_some_and(|c| c.password_hash.is_some()) {
            VerifierSource::Configured
        } else if store.get(&SetKey::new(client_id, username)).is_some() {
            VerifierSource::Learned
        } else {
            VerifierSource::None
        };
        VerifierView {
            source,
            mode: match (soap, entry) {
                (true, Some(_)) => VerifyPassword::Required,
                (_, entry) => entry.map_or(VerifyPassword::IfKnown, |c| c.verify_mode()),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::password::Cost;

    const CHEAP: Cost = Cost::CHEAPEST;

    fn verifiers(dir: &std::path::Path) -> (Verifiers, Arc<Metrics>) {
        let metrics = Arc::new(Metrics::new());
        let v = Verifiers::new(Store::load(dir).unwrap(), metrics.clone());
        (v, metrics)
    }

    fn hashes(metrics: &Metrics, purpose: &str) -> u64 {
        let text = metrics.encode();
        let series = format!("grantshift_password_hashes_total{{purpose=\"{purpose}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&series))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{series} in {text}"))
    }

    fn configured(password: &str, mode: VerifyPassword) -> Verification {
        Verification {
            mode,
            configured: Some(Verifier::hash(&Password::new(password), CHEAP)),
        }
    }

    #[tokio::test]
    async fn only_the_first_check_of_a_password_costs_argon2() {
        let dir = tempfile::tempdir().unwrap();
        let (v, metrics) = verifiers(dir.path());
        let set = SetKey::new("app", "int@acme.com");
        let verification = configured("pw-right", VerifyPassword::Required);
        let right = Password::new("pw-right");
        for _ in 0..5 {
            assert_eq!(
                v.check(&set, Some(&right), &verification).await,
                Checked::Verified
            );
        }
        assert_eq!(hashes(&metrics, "check"), 1);
        let wrong = Password::new("pw-wrong");
        for _ in 0..5 {
            assert_eq!(
                v.check(&set, Some(&wrong), &verification).await,
                Checked::Mismatch
            );
        }
        assert_eq!(
            hashes(&metrics, "check"),
            2,
            "a known wrong password is not hashed again"
        );
        assert_eq!(v.check(&set, None, &verification).await, Checked::Mismatch);
        let off = Verification {
            mode: VerifyPassword::Off,
            ..verification.clone()
        };
        assert_eq!(v.check(&set, Some(&wrong), &off).await, Checked::Off);
        let none = Verification {
            mode: VerifyPassword::Required,
            configured: None,
        };
        assert_eq!(
            v.check(&set, Some(&right), &none).await,
            Checked::NoVerifier
        );
        assert_eq!(hashes(&metrics, "check"), 2);
    }

    #[tokio::test]
    async fn a_flood_of_wrong_passwords_costs_a_bounded_number_of_argon2_runs() {
        let dir = tempfile::tempdir().unwrap();
        let (v, metrics) = verifiers(dir.path());
        let v = Arc::new(v);
        let set = SetKey::new("app", "int@acme.com");
        let verification = configured("pw-right", VerifyPassword::Required);
        let mut tasks = Vec::new();
        for i in 0..200 {
            let (v, set, verification) = (v.clone(), set.clone(), verification.clone());
            tasks.push(tokio::spawn(async move {
                let wrong = Password::new(&format!("pw-wrong-{i}"));
                v.check(&set, Some(&wrong), &verification).await
            }));
        }
        for task in tasks {
            let checked = task.await.unwrap();
            assert!(
                matches!(checked, Checked::Mismatch | Checked::Throttled),
                "{checked:?}"
            );
        }
        // One at a time, and none once the backoff starts (it lasts longer than this test).
        assert_eq!(
            hashes(&metrics, "check"),
            u64::from(throttle::FREE_FAILURES) + 1
        );
        // The right password is still checked once the window is over; a known one at once.
        assert_eq!(
            v.check(&set, Some(&Password::new("pw-wrong-0")), &verification)
                .await,
            Checked::Mismatch
        );
    }

    #[tokio::test]
    async fn a_learned_verifier_is_stored_checked_without_argon2_and_replaced_by_a_new_password() {
        let dir = tempfile::tempdir().unwrap();
        let (v, metrics) = verifiers(dir.path());
        let set = SetKey::new("app", "Int@Acme.com");
        let learned = Verification {
            mode: VerifyPassword::Required,
            configured: None,
        };
        let old = Password::new("pw-old");
        v.learn(&set, &old).await;
        assert_eq!(hashes(&metrics, "learn"), 1);
        let made = v.store().get(&set).expect("learned");
        assert!(made.as_phc().starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert_eq!(v.check(&set, Some(&old), &learned).await, Checked::Verified);
        assert_eq!(
            hashes(&metrics, "check"),
            0,
            "the digest of the learned password is kept"
        );
        v.learn(&set, &old).await;
        assert_eq!(hashes(&metrics, "learn"), 1, "already the verifier");
        assert!(metrics
            .encode()
            .contains("grantshift_password_verifiers{source=\"learned\"} 1"));

        // A wrong password is refused and changes nothing.
        let new = Password::new("pw-new");
        assert_eq!(v.check(&set, Some(&new), &learned).await, Checked::Mismatch);
        assert_eq!(v.store().get(&set), Some(made.clone()));
        // Salesforce accepted the new one: it replaces the old.
        v.learn(&set, &new).await;
        assert_eq!(
            hashes(&metrics, "learn"),
            3,
            "checked against the old one, then made"
        );
        assert_ne!(v.store().get(&set), Some(made));
        assert_eq!(v.check(&set, Some(&new), &learned).await, Checked::Verified);
        assert_eq!(v.check(&set, Some(&old), &learned).await, Checked::Mismatch);

        // A restart reads it back; a configured verifier wins over it.
        let (again, _) = verifiers(dir.path());
        assert_eq!(
            again.check(&set, Some(&new), &learned).await,
            Checked::Verified
        );
        let other = configured("pw-configured", VerifyPassword::Required);
        assert_eq!(
            again.check(&set, Some(&new), &other).await,
            Checked::Mismatch
        );
    }
}
