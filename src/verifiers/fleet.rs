//! The fleet's learned verifiers (docs/operating.md, "Fleet: password verifiers"): the hash
//! `{prefix}verifiers`, field the hex SHA-256 of `client_id \0 username` (lower case), value
//! the PHC verifier string sealed with the fleet's key, then base64. A verifier that does not
//! open (another key, changed) or parse is ignored. Every call is bounded
//! ([`Cluster::call`]); `None`/no-op when Redis is down.

use super::SetKey;
use crate::cluster::Cluster;
use crate::password::Verifier;
use base64::Engine;
use sha2::{Digest, Sha256};

const KEY: &str = "verifiers";

/// The hash field of `set`: names no client id or username in Redis.
pub fn field(set: &SetKey) -> String {
    let mut h = Sha256::new();
    h.update(set.client_id.as_bytes());
    h.update([0]);
    h.update(set.username.as_bytes());
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

fn seal(cluster: &Cluster, verifier: &Verifier) -> String {
    base64::engine::general_purpose::STANDARD.encode(cluster.seal(verifier.as_phc().as_bytes()))
}

fn open(cluster: &Cluster, value: &str) -> Option<Verifier> {
    let sealed = base64::engine::general_purpose::STANDARD
        .decode(value.trim())
        .ok()?;
    let plain = cluster.open(&sealed)?;
    Verifier::parse(std::str::from_utf8(&plain).ok()?).ok()
}

/// The fleet's verifier of `set` (HGET).
pub async fn fetch(cluster: &Cluster, set: &SetKey) -> Option<Verifier> {
    let (key, field) = (cluster.key(KEY), field(set));
    let value: Option<String> = cluster
        .call("verifier_get", |mut conn| async move {
            redis::cmd("HGET")
                .arg(key)
                .arg(field)
                .query_async(&mut conn)
                .await
        })
        .await?;
    open(cluster, &value?)
}

/// Make `verifier` the fleet's verifier of `set` (HSET: a newer one replaces the old).
pub async fn publish(cluster: &Cluster, set: &SetKey, verifier: &Verifier) -> bool {
    let (key, field, value) = (cluster.key(KEY), field(set), seal(cluster, verifier));
    cluster
        .call("verifier_set", |mut conn| async move {
            redis::cmd("HSET")
                .arg(key)
                .arg(field)
                .arg(value)
                .query_async::<i64>(&mut conn)
                .await
        })
        .await
        .is_some()
}

/// After an outage: add each of `learned` the fleet does not have (HSETNX, pipelined, in
/// chunks: each chunk one bounded call). How many Redis did not have.
pub async fn push_missing(cluster: &Cluster, learned: &[(SetKey, Verifier)]) -> Option<u64> {
    let key = cluster.key(KEY);
    let mut added = 0;
    for chunk in learned.chunks(500) {
        let mut pipe = redis::pipe();
        for (set, verifier) in chunk {
            pipe.cmd("HSETNX")
                .arg(&key)
                .arg(field(set))
                .arg(seal(cluster, verifier));
        }
        let done: Vec<i64> = cluster
            .call("verifier_resync", |mut conn| async move {
                pipe.query_async(&mut conn).await
            })
            .await?;
        added += done.iter().filter(|n| **n == 1).count() as u64;
    }
    Some(added)
}

/// The fleet's verifiers of `sets` (HMGET, in chunks), for those Redis has.
pub async fn fetch_many(cluster: &Cluster, sets: &[SetKey]) -> Option<Vec<(SetKey, Verifier)>> {
    let key = cluster.key(KEY);
    let mut found = Vec::new();
    for chunk in sets.chunks(500) {
        let mut cmd = redis::cmd("HMGET");
        cmd.arg(&key);
        for set in chunk {
            cmd.arg(field(set));
        }
        let values: Vec<Option<String>> = cluster
            .call("verifier_resync", |mut conn| async move {
                cmd.query_async(&mut conn).await
            })
            .await?;
        for (set, value) in chunk.iter().zip(values) {
            if let Some(v) = value.and_then(|v| open(cluster, &v)) {
                found.push((set.clone(), v));
            }
        }
    }
    Some(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_field_is_a_digest_of_the_set_and_hides_its_names() {
        let f = field(&SetKey::new("3MVGapp", "Int@Acme.com"));
        assert_eq!(f.len(), 64);
        assert_eq!(f, field(&SetKey::new("3MVGapp", "int@acme.com")));
        assert_ne!(f, field(&SetKey::new("3MVGapp2", "int@acme.com")));
        // client_id and username are apart: "a\0bc" is not "ab\0c".
        assert_ne!(
            field(&SetKey::new("a", "bc")),
            field(&SetKey::new("ab", "c"))
        );
        assert!(!f.contains("acme"));
    }
}
