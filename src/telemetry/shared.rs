//! The fleet's report and login rate on Redis (docs/operating.md, "Fleet: the migration
//! report" and "Fleet: the login rate"). Tasks of one replica:
//!
//! - [`publish`]: every event this replica writes is added to the stream `{prefix}events`
//!   (XADD MAXLEN ~ 1000000, the event's JSON in field `e`), with, for a login sent upstream,
//!   INCR + EXPIRE 3700 of `{prefix}logins:{target}\0{identity}:{unix minute}`: one script
//!   per batch, one bounded call, which first checks that Redis still holds the stream this
//!   replica added to (`Stream`). A batch is what arrived within 10 ms of its first event
//!   (`LINGER`), at most 500. While Redis is down (or the call fails) the batch is counted
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

/// How long the first event of a batch waits for others before the add: the fleet's report
/// is this much later, and a busy replica makes one Redis call per this time, not per login.
const LINGER: Duration = Duration::from_millis(10);

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
    let mut stream = Stream::default();
    let mut up = cluster.subscribe();
    loop {
        let mut batch = Vec::new();
        tokio::select! {
            got = events.recv_many(&mut batch, BATCH) => if got == 0 { return },
            changed = up.changed() => if changed.is_err() { return },
        }
        if !batch.is_empty() && batch.len() < BATCH {
            // Let a busy replica's events gather: one add per LINGER, not one per login.
            tokio::time::sleep(LINGER).await;
            while batch.len() < BATCH {
                match events.try_recv() {
                    Ok(event) => batch.push(event),
                    Err(_) => break,
                }
            }
        }
        // What waited goes first, in order, as soon as Redis takes calls again.
        let waited = !unsent.is_empty();
        while !unsent.is_empty() && cluster.is_up() {
            let n = unsent.len().min(BATCH);
            let chunk: Vec<Arc<Event>> = unsent.iter().take(n).cloned().collect();
            if !stream.send(&cluster, &metrics, &chunk, false).await {
                break;
            }
            unsent.drain(..n);
        }
        if waited && unsent.is_empty() {
            tracing::info!(
                "the events kept while shared state was unavailable are in the shared stream"
            );
        }
        let sent = !batch.is_empty()
            && unsent.is_empty()
            && stream.send(&cluster, &metrics, &batch, true).await;
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

/// How long this replica keeps the events it added, to add them again if Redis loses its data
/// (another replica may not have read them yet) ...
const RETAIN: Duration = Duration::from_secs(30);
/// ... and at most this many of them.
const MAX_RETAINED: usize = 20_000;

/// One replica's side of the stream: which instance of it ("epoch") its adds went to, and
/// the events it added lately. Redis keeps `{prefix}events-epoch`, a random value set by the
/// first add after it started empty; an add checks it (one script: the check and the adds
/// are atomic). A changed or missing epoch means Redis lost the stream (a restart without
/// persistence, a flush, a failover to an empty replica): the events added lately are added
/// again first (readers count each once, [`Dedup`]), so no replica misses what was in flight.
#[derive(Default)]
struct Stream {
    epoch: Option<String>,
    /// Redis lost its data: the retained events go again before anything newer.
    replay: bool,
    retained: VecDeque<(std::time::Instant, Arc<Event>)>,
}

/// What one add found.
enum Added {
    /// Added; the epoch it went to.
    Yes(String),
    /// Refused whole (nothing written): the stream is not the one this replica knew.
    Reset(String),
}

impl Stream {
    /// Add `batch` (after the retained events, if Redis lost them); `false` if Redis did not
    /// take it (down, slow, or lost again on the way): it is sent again later.
    async fn send(
        &mut self,
        cluster: &Cluster,
        metrics: &Metrics,
        batch: &[Arc<Event>],
        logins: bool,
    ) -> bool {
        loop {
            if self.replay {
                let again: Vec<Arc<Event>> = self.retained.iter().map(|(_, e)| e.clone()).collect();
                for chunk in again.chunks(BATCH) {
                    // Their upstream logins were counted in the lost counters: not again.
                    match add(cluster, metrics, self.epoch.as_deref(), chunk, false).await {
                        Some(Added::Yes(_)) => {}
                        Some(Added::Reset(epoch)) => {
                            self.epoch = Some(epoch);
                            return false;
                        }
                        None => return false,
                    }
                }
                self.replay = false;
            }
            match add(cluster, metrics, self.epoch.as_deref(), batch, logins).await {
                None => return false,
                Some(Added::Yes(epoch)) => {
                    self.epoch = Some(epoch);
                    self.retain(batch);
                    return true;
                }
                Some(Added::Reset(epoch)) => {
                    tracing::warn!(
                        retained = self.retained.len(),
                        "the shared events stream was lost (Redis restarted empty or was flushed); adding this replica's latest events again"
                    );
                    metrics.cluster_stream_reset();
                    self.epoch = Some(epoch);
                    self.replay = true;
                }
            }
        }
    }

    fn retain(&mut self, batch: &[Arc<Event>]) {
        let now = std::time::Instant::now();
        self.retained.extend(batch.iter().map(|e| (now, e.clone())));
        while self.retained.len() > MAX_RETAINED
            || self
                .retained
                .front()
                .is_some_and(|(at, _)| now.duration_since(*at) > RETAIN)
        {
            self.retained.pop_front();
        }
    }
}

/// The add, in one script: `KEYS[1]` the epoch, `KEYS[2]` the stream, `KEYS[3..]` login
/// counters to INCR (+ EXPIRE `ARGV[4]`); `ARGV[1]` the epoch the caller knows (`""`: none
/// yet), `ARGV[2]` a new one in case Redis has none, `ARGV[3]` MAXLEN, `ARGV[5..]` the
/// events' JSON. Returns `{1, epoch}` (added) or `{0, epoch}` (refused: another epoch).
const ADD_SCRIPT: &str = r#"
local epoch = redis.call('GET', KEYS[1])
if not epoch then
  redis.call('SET', KEYS[1], ARGV[2])
  epoch = ARGV[2]
end
if ARGV[1] ~= '' and ARGV[1] ~= epoch then
  return {0, epoch}
end
for i = 5, #ARGV do
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*', 'e', ARGV[i])
end
for i = 3, #KEYS do
  redis.call('INCR', KEYS[i])
  redis.call('EXPIRE', KEYS[i], ARGV[4])
end
return {1, epoch}
"#;

static ADD: std::sync::LazyLock<redis::Script> =
    std::sync::LazyLock::new(|| redis::Script::new(ADD_SCRIPT));

/// XADD each event of `batch` (and, with `logins`, count its upstream login) if the stream
/// is still the one of `epoch`: one bounded call. `None`: Redis did not answer.
async fn add(
    cluster: &Cluster,
    metrics: &Metrics,
    epoch: Option<&str>,
    batch: &[Arc<Event>],
    logins: bool,
) -> Option<Added> {
    let mut keys = vec![cluster.key("events-epoch"), stream_key(cluster)];
    let minute = unix_minute();
    for event in batch {
        if let (true, Some((target, identity))) = (logins, metrics.upstream_login_pair(event)) {
            keys.push(counter_key(cluster, &target, &identity, minute));
        }
    }
    let mut fresh = [0u8; 16];
    getrandom::getrandom(&mut fresh).expect("the OS has random bytes");
    let mut args = vec![
        epoch.unwrap_or("").to_owned(),
        hex(&fresh),
        STREAM_MAXLEN.to_string(),
        COUNTER_TTL_SECS.to_string(),
    ];
    args.extend(
        batch
            .iter()
            .map(|e| serde_json::to_string(&**e).expect("events serialize")),
    );
    let (added, epoch): (i64, String) = cluster
        .call("events_add", |mut conn| async move {
            let mut invocation = ADD.prepare_invoke();
            for key in &keys {
                invocation.key(key);
            }
            for arg in &args {
                invocation.arg(arg);
            }
            invocation.invoke_async(&mut conn).await
        })
        .await?;
    Some(if added == 1 {
        Added::Yes(epoch)
    } else {
        Added::Reset(epoch)
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
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
        let read = read_after(&c, &last).await;
        drop(c);
        let entries = read.unwrap_or_default();
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

/// The next (at most [`BATCH`]) entries of the stream after the id `last`: one bounded XREAD
/// without BLOCK. `None`: Redis did not answer.
async fn read_after(cluster: &Cluster, last: &str) -> Option<Vec<(String, Vec<u8>)>> {
    let (key, from) = (stream_key(cluster), last.to_owned());
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
    Some(entries(&read))
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
        let entries = read_after(cluster, &last).await?;
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
