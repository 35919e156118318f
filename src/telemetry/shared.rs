//! The fleet's report and login rate on Redis (docs/operating.md, "Fleet: the migration
//! report" and "Fleet: the login rate"). Tasks of one replica:
//!
//! - [`publish`]: every event this replica writes is added to the stream `{prefix}events`
//!   (XADD MAXLEN ~ 1000000, the event's JSON in field `e`), with, for a login sent upstream,
//!   INCR + EXPIRE 3700 of `{prefix}logins:{target}\0{identity}:{unix minute}`: one pipeline
//!   per batch, one bounded call. While Redis is down (or the call fails) the batch is counted
//!   in this replica's report at once and kept, at most [`MAX_UNSENT`] events (oldest dropped
//!   first: they stay in the events file), to be added when Redis is back, in order.
//! - [`consume`]: reads the stream from its start (`0-0`), every replica's events, and feeds
//!   them to this replica's report (each event once: [`Dedup`]).
//! - [`fleet_rates`]: the last hour of each (target, identity) summed over the fleet: MGET of
//!   its 60 minute counters.

use super::events::Event;
use super::fleet::Dedup;
use super::login_rate::Rate;
use super::metrics::Metrics;
use super::report::ReportBuilder;
use crate::cluster::Cluster;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;

/// Events kept for the stream while Redis is down.
pub const MAX_UNSENT: usize = 100_000;

/// Events added to the stream in one call.
const BATCH: usize = 500;

/// How long the stream reader waits when it has read everything (it never blocks on the
/// shared connection: XREAD without BLOCK).
const READ_IDLE: Duration = Duration::from_millis(100);

/// The stream's approximate length bound.
const STREAM_MAXLEN: u64 = 1_000_000;

/// A minute counter's time to live: the hour it counts in, and a little more.
const COUNTER_TTL_SECS: u64 = 3_700;

/// The report and what it has counted.
pub struct FleetReport {
    dedup: Mutex<Dedup>,
    report: Arc<Mutex<ReportBuilder>>,
    metrics: Arc<Metrics>,
}

impl FleetReport {
    pub fn new(replica: &str, report: Arc<Mutex<ReportBuilder>>, metrics: Arc<Metrics>) -> Self {
        FleetReport {
            dedup: Mutex::new(Dedup::new(replica)),
            report,
            metrics,
        }
    }

    /// Count `event` in the report unless it was (`local`: this replica's own, Redis down).
    pub fn add(&self, event: &Event, local: bool) {
        // One lock over the check and the count: the two feeds never both count an event.
        let mut dedup = self.dedup.lock().unwrap_or_else(|e| e.into_inner());
        let count = if local {
            event.seq.is_none_or(|seq| dedup.local(seq))
        } else {
            dedup.stream(event)
        };
        if count {
            let dropped = self.report.lock().expect("report lock").add(event);
            self.metrics.report_sets_dropped(dropped);
        }
    }
}

/// The stream's key.
pub fn stream_key(cluster: &Cluster) -> String {
    cluster.key("events")
}

/// The counter of `(target, identity)` at `minute`.
pub fn counter_key(cluster: &Cluster, target: &str, identity: &str, minute: u64) -> String {
    cluster.key(&format!("logins:{target}\0{identity}:{minute}"))
}

/// Add this replica's events (from `events`, in write order) to the stream; see the module.
pub async fn publish(
    cluster: Arc<Cluster>,
    mut events: mpsc::Receiver<Arc<Event>>,
    fleet: Arc<FleetReport>,
    metrics: Arc<Metrics>,
) {
    let mut unsent: VecDeque<Arc<Event>> = VecDeque::new();
    let mut up = cluster.subscribe();
    loop {
        let mut batch = Vec::new();
        tokio::select! {
            got = events.recv_many(&mut batch, BATCH) => if got == 0 { return },
            changed = up.changed() => if changed.is_err() { return },
        }
        // What waited goes first, in order, as soon as Redis takes calls again.
        let waited = !unsent.is_empty();
        while !unsent.is_empty() && cluster.is_up() {
            let n = unsent.len().min(BATCH);
            let chunk: Vec<Arc<Event>> = unsent.iter().take(n).cloned().collect();
            if !send(&cluster, &metrics, &chunk, false).await {
                break;
            }
            unsent.drain(..n);
        }
        if waited && unsent.is_empty() {
            tracing::info!(
                "the events kept while shared state was unavailable are in the shared stream"
            );
        }
        let sent =
            !batch.is_empty() && unsent.is_empty() && send(&cluster, &metrics, &batch, true).await;
        if !batch.is_empty() && !sent {
            // Down, or events still wait: counted here now, sent later (after those waiting).
            for event in batch {
                fleet.add(&event, true);
                unsent.push_back(event);
            }
            while unsent.len() > MAX_UNSENT {
                unsent.pop_front();
                metrics.cluster_event_unsent_dropped();
            }
        }
        metrics.cluster_events_waiting(unsent.len());
    }
}

/// XADD each event of `batch` (and, with `logins`, count its upstream login): one call.
async fn send(cluster: &Cluster, metrics: &Metrics, batch: &[Arc<Event>], logins: bool) -> bool {
    let key = stream_key(cluster);
    let mut pipe = redis::pipe();
    for event in batch {
        let json = serde_json::to_string(&**event).expect("events serialize");
        pipe.cmd("XADD")
            .arg(&key)
            .arg("MAXLEN")
            .arg("~")
            .arg(STREAM_MAXLEN)
            .arg("*")
            .arg("e")
            .arg(json)
            .ignore();
        if let (true, Some((target, identity))) = (logins, metrics.upstream_login_pair(event)) {
            let counter = counter_key(cluster, &target, &identity, unix_minute());
            pipe.cmd("INCR").arg(&counter).ignore();
            pipe.cmd("EXPIRE")
                .arg(&counter)
                .arg(COUNTER_TTL_SECS)
                .ignore();
        }
    }
    cluster
        .call("events_add", |mut conn| async move {
            pipe.query_async::<()>(&mut conn).await
        })
        .await
        .is_some()
}

/// Read the stream from its start and feed every event to `fleet` (and the pairs of its
/// upstream logins to the fleet login rate), while the cluster lives.
pub async fn consume(cluster: std::sync::Weak<Cluster>, fleet: Arc<FleetReport>) {
    let mut last = String::from("0-0");
    loop {
        let Some(c) = cluster.upgrade() else { return };
        if !c.is_up() {
            let mut up = c.subscribe();
            drop(c);
            if up.wait_for(|up| *up).await.is_err() {
                return;
            }
            continue;
        }
        let (key, from) = (stream_key(&c), last.clone());
        let read: Option<redis::Value> = c
            .call("events_read", |mut conn| async move {
                redis::cmd("XREAD")
                    .arg("COUNT")
                    .arg(BATCH)
                    .arg("STREAMS")
                    .arg(key)
                    .arg(from)
                    .query_async(&mut conn)
                    .await
            })
            .await;
        drop(c);
        let entries = read.map(|v| entries(&v)).unwrap_or_default();
        let full = entries.len() >= BATCH;
        for (id, json) in entries {
            last = id;
            match serde_json::from_slice::<Event>(&json) {
                Ok(event) => {
                    fleet.metrics.fleet_login_seen(&event);
                    fleet.add(&event, false);
                }
                Err(_) => tracing::debug!("an entry of the shared events stream is not an event"),
            }
        }
        if !full {
            tokio::time::sleep(READ_IDLE).await;
        }
    }
}

/// `(id, field e)` of each entry of an XREAD reply: RESP2 `[[key, entries]]` or RESP3
/// `{key: entries}`, each entry `[id, [field, value, ...]]`; nil when nothing is new.
fn entries(reply: &redis::Value) -> Vec<(String, Vec<u8>)> {
    use redis::Value;
    fn text(v: &Value) -> Option<&[u8]> {
        match v {
            Value::BulkString(b) => Some(b),
            Value::SimpleString(s) => Some(s.as_bytes()),
            _ => None,
        }
    }
    let lists: Vec<&Value> = match reply {
        Value::Array(streams) => streams
            .iter()
            .filter_map(|s| match s {
                Value::Array(pair) if pair.len() == 2 => Some(&pair[1]),
                _ => None,
            })
            .collect(),
        Value::Map(streams) => streams.iter().map(|(_, list)| list).collect(),
        _ => Vec::new(),
    };
    let mut out = Vec::new();
    for list in lists {
        let Value::Array(list) = list else { continue };
        for entry in list {
            let Value::Array(parts) = entry else { continue };
            let (Some(id), Some(Value::Array(fields))) =
                (parts.first().and_then(text), parts.get(1))
            else {
                continue;
            };
            let json = fields
                .chunks(2)
                .find(|kv| kv.len() == 2 && text(&kv[0]) == Some(b"e".as_slice()))
                .and_then(|kv| text(&kv[1]));
            // An entry without one still moves the reader on.
            let json = json.map(<[u8]>::to_vec).unwrap_or_default();
            out.push((String::from_utf8_lossy(id).into_owned(), json));
        }
    }
    out
}

fn unix_minute() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / 60)
}

/// Each pair's last hour summed over the fleet (MGET of its 60 minute counters, one bounded
/// call for all pairs); `None` when Redis is down: the caller keeps this replica's counts.
pub async fn fleet_rates(cluster: &Cluster, pairs: &[(String, String)]) -> Option<Vec<Rate>> {
    if pairs.is_empty() {
        return Some(Vec::new());
    }
    let now = unix_minute();
    let mut pipe = redis::pipe();
    for (target, identity) in pairs {
        let mut mget = redis::cmd("MGET");
        for minute in now.saturating_sub(59)..=now {
            mget.arg(counter_key(cluster, target, identity, minute));
        }
        pipe.add_command(mget);
    }
    let counts: Vec<Vec<Option<u64>>> = cluster
        .call("login_rate", |mut conn| async move {
            pipe.query_async(&mut conn).await
        })
        .await?;
    Some(
        pairs
            .iter()
            .zip(counts)
            .map(|((target_host, identity), minutes)| Rate {
                target_host: target_host.clone(),
                identity: identity.clone(),
                last_hour: minutes.into_iter().flatten().sum(),
            })
            .collect(),
    )
}

/// Every event in the stream, oldest first, each once ([`Dedup`]): `grantshift report
/// --cluster`. `None` if Redis stopped answering on the way.
pub async fn read_all(cluster: &Cluster, mut each: impl FnMut(Event)) -> Option<u64> {
    let mut dedup = Dedup::new("");
    let mut last = String::from("0-0");
    let mut seen = 0;
    loop {
        let (key, from) = (stream_key(cluster), last.clone());
        let read: redis::Value = cluster
            .call("events_read", |mut conn| async move {
                redis::cmd("XREAD")
                    .arg("COUNT")
                    .arg(BATCH)
                    .arg("STREAMS")
                    .arg(key)
                    .arg(from)
                    .query_async(&mut conn)
                    .await
            })
            .await?;
        let entries = entries(&read);
        if entries.is_empty() {
            return Some(seen);
        }
        for (id, json) in entries {
            last = id;
            if let Ok(event) = serde_json::from_slice::<Event>(&json) {
                if dedup.stream(&event) {
                    seen += 1;
                    each(event);
                }
            }
        }
    }
}
