//! Migration telemetry events (docs/operating.md, "The events file"): one JSON object per token request, appended to
//! `[telemetry].events` once the response has gone back to the client.
//!
//! The request path never touches the file: events go over a bounded queue to one writer
//! thread, which appends and flushes each line and then publishes the event to in-process
//! subscribers (metrics, the report, tests), so a subscriber that sees an event knows its line
//! is on disk. A full queue (the writer stalled: disk full, slow NFS) drops the event and
//! counts it, so the request path never waits for the file.
//!
//! Values clients send are bounded before they get here: a field over its bound is left out
//! and its length recorded in [`Event::oversized`].

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;
use tokio::sync::broadcast;

/// What grantshift did with a token request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Observed,
    Upgraded,
    Fallback,
    Failed,
    Unmapped,
    Skipped,
    Passed,
    /// A revoke of a session shared through the token cache, answered by grantshift (the
    /// other callers keep the session).
    RevokeShielded,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Observed => "observed",
            Action::Upgraded => "upgraded",
            Action::Fallback => "fallback",
            Action::Failed => "failed",
            Action::Unmapped => "unmapped",
            Action::Skipped => "skipped",
            Action::Passed => "passed",
            Action::RevokeShielded => "revoke_shielded",
        }
    }
}

/// What checking the password of a login that was to be upgraded found (docs/operating.md,
/// "Password verifiers").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PasswordCheck {
    /// It matches the credential set's verifier.
    Verified,
    /// It does not (or was not checked: too many wrong passwords lately).
    Mismatch,
    /// The set has no verifier.
    None,
    /// `verify_password = "off"`.
    Off,
}

impl PasswordCheck {
    pub fn as_str(self) -> &'static str {
        match self {
            PasswordCheck::Verified => "verified",
            PasswordCheck::Mismatch => "mismatch",
            PasswordCheck::None => "none",
            PasswordCheck::Off => "off",
        }
    }
}

/// For an upgraded login: what the token cache did (docs/operating.md, "The token cache").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CacheUse {
    /// Answered from the cache: no login went upstream.
    Hit,
    /// Not in the cache: the login went upstream (and its answer was kept if it succeeded).
    Miss,
    /// An upgrade with the same credentials failed moments ago: straight to fallback.
    Negative,
    /// `[token_cache] enabled = false`.
    Off,
}

impl CacheUse {
    pub fn as_str(self) -> &'static str {
        match self {
            CacheUse::Hit => "hit",
            CacheUse::Miss => "miss",
            CacheUse::Negative => "negative",
            CacheUse::Off => "off",
        }
    }
}

/// The failed upgrade attempt carried by `fallback` and `failed` events.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UpstreamErrorInfo {
    /// HTTP status of the attempt; absent when no response came (connect error, timeout).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_description: Option<String>,
}

impl UpstreamErrorInfo {
    /// One line for a person: `HTTP 400 invalid_grant: authentication failure`.
    pub fn describe(&self) -> String {
        let mut out = String::new();
        if let Some(status) = self.status {
            out.push_str(&format!("HTTP {status}"));
        }
        if let Some(error) = &self.error {
            if !out.is_empty() {
                out.push(' ');
            }
            out.push_str(error);
        }
        if let Some(description) = &self.error_description {
            if !out.is_empty() {
                out.push_str(": ");
            }
            out.push_str(description);
        }
        if out.is_empty() {
            out.push_str("no answer");
        }
        out
    }
}

/// One token request. Never holds a password, client secret, access token, assertion,
/// signature or key: there is no field for them. Optional fields are omitted when empty.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Event {
    pub ts: String,
    pub client: String,
    pub host: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grant: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    pub action: Action,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flow: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_host: Option<String>,
    pub status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_error: Option<UpstreamErrorInfo>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub org_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance_url: Option<String>,
    pub latency_ms: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// For a login grantshift was to upgrade: what checking its password found.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_check: Option<PasswordCheck>,
    /// For a login grantshift was to upgrade, past its password check: what the token cache
    /// did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<CacheUse>,
    /// Fields whose value was over its bound (`username`, `client_id`, `grant`, `host`), with
    /// the value's length in characters. Such a field is left out of the event (`host`, which
    /// every event has, keeps its first [`MAX_HOST_CHARS`] characters).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub oversized: BTreeMap<String, u64>,
    /// With a cluster: the replica that wrote it (`cluster.replica`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replica: Option<String>,
    /// With a cluster: its number among the replica's events (grows by one per event, from
    /// the replica's start time in microseconds): with `replica`, counted once in the
    /// fleet's report (docs/operating.md, "Fleet: the migration report").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
}

/// DNS names have at most 253 characters (RFC 1035 §2.3.4, without the trailing dot).
pub const MAX_HOST_CHARS: usize = 253;

/// `value` if it has at most `max_chars` characters, else its length in characters.
pub fn within_bound(value: &str, max_chars: usize) -> Result<&str, u64> {
    // A char is at least one byte: short in bytes is short in characters.
    if value.len() <= max_chars {
        return Ok(value);
    }
    match value.chars().count() {
        n if n <= max_chars => Ok(value),
        n => Err(n as u64),
    }
}

impl Event {
    /// A new event for a token request from `client` to `host` (kept to [`MAX_HOST_CHARS`]).
    pub fn new(client: SocketAddr, host: &str) -> Event {
        let mut oversized = BTreeMap::new();
        let host = match within_bound(host, MAX_HOST_CHARS) {
            Ok(host) => host.to_string(),
            Err(len) => {
                oversized.insert("host".into(), len);
                host.chars().take(MAX_HOST_CHARS).collect()
            }
        };
        Event {
            ts: String::new(),
            client: client.to_string(),
            host,
            grant: None,
            client_id: None,
            username: None,
            action: Action::Passed,
            flow: None,
            target_host: None,
            status: 0,
            upstream_error: None,
            org_id: None,
            user_id: None,
            instance_url: None,
            latency_ms: 0.0,
            reason: None,
            password_check: None,
            cache: None,
            oversized,
            replica: None,
            seq: None,
        }
    }
}

/// What a token response tells about the org and user, from its JSON: `id` is
/// `https://<host>/id/<org18>/<user18>`, Salesforce's identity URL.
#[derive(Debug, Default, PartialEq)]
pub struct ResponseFacts {
    pub org_id: Option<String>,
    pub user_id: Option<String>,
    pub instance_url: Option<String>,
    pub error: Option<String>,
    pub error_description: Option<String>,
}

impl ResponseFacts {
    /// Read only the non-secret fields. The access token, signature and every other field are
    /// skipped by the parser, never copied out of the body.
    pub fn from_json(body: &[u8]) -> ResponseFacts {
        /// The fields read; strings borrow from the body unless they hold escapes.
        #[derive(serde::Deserialize)]
        struct Fields<'a> {
            #[serde(borrow, default)]
            id: Option<std::borrow::Cow<'a, str>>,
            #[serde(borrow, default)]
            instance_url: Option<std::borrow::Cow<'a, str>>,
            #[serde(borrow, default)]
            error: Option<std::borrow::Cow<'a, str>>,
            #[serde(borrow, default)]
            error_description: Option<std::borrow::Cow<'a, str>>,
        }
        let Ok(fields) = serde_json::from_slice::<Fields<'_>>(body) else {
            return ResponseFacts::default();
        };
        let owned = |v: Option<std::borrow::Cow<'_, str>>| v.map(|s| s.into_owned());
        let mut facts = ResponseFacts {
            instance_url: owned(fields.instance_url),
            error: owned(fields.error),
            error_description: owned(fields.error_description),
            ..ResponseFacts::default()
        };
        if let Some(id) = fields.id.as_deref() {
            let mut segments = id.trim_end_matches('/').rsplit('/');
            let user = segments.next();
            let org = segments.next();
            if segments.next() == Some("id") {
                facts.user_id = user.map(str::to_owned);
                facts.org_id = org.map(str::to_owned);
            }
        }
        facts
    }
}

enum Message {
    Event(Box<Event>),
    Reopen(String),
    /// Answered once everything queued before it is written and published.
    Sync(tokio::sync::oneshot::Sender<()>),
}

/// The queue between request tasks and the writer thread. Request tasks only push; they wake
/// the writer only when it is parked on an empty queue. After each batch the writer naps for
/// [`COALESCE`], so under load events gather into batches without one futex wake-up and
/// context switch per login.
struct Inbox {
    queue: Mutex<Queue>,
    wake: Condvar,
    /// Events that may wait at once (`telemetry.events_max_queued`).
    max_queued: AtomicUsize,
    /// Called once per dropped event (the metric).
    on_dropped: Box<dyn Fn() + Send + Sync>,
}

#[derive(Default)]
struct Queue {
    items: Vec<Message>,
    /// How many of `items` are events (reopen and sync messages are never dropped).
    events: usize,
    parked: bool,
    /// Events dropped since the queue last had room: the current burst.
    burst: u64,
}

/// What pushing one event did.
#[derive(Debug, PartialEq, Eq)]
enum Pushed {
    /// Queued; `burst_ended` is how many were dropped just before, if any were.
    Queued { burst_ended: Option<u64> },
    /// The queue was full; `burst_started` on the first drop of a burst.
    Dropped { burst_started: bool },
}

impl Queue {
    fn push_event(&mut self, event: Box<Event>, max_queued: usize) -> Pushed {
        if self.events >= max_queued {
            self.burst += 1;
            return Pushed::Dropped {
                burst_started: self.burst == 1,
            };
        }
        self.items.push(Message::Event(event));
        self.events += 1;
        let dropped = std::mem::take(&mut self.burst);
        Pushed::Queued {
            burst_ended: (dropped > 0).then_some(dropped),
        }
    }

    /// Everything queued, for the writer.
    fn take(&mut self) -> Vec<Message> {
        self.events = 0;
        std::mem::take(&mut self.items)
    }
}

/// How long the writer lets events gather after a batch.
const COALESCE: Duration = Duration::from_millis(1);

/// How the writer's queue is bounded.
pub struct QueueBound {
    /// Events that may wait at once; more are dropped.
    pub max_queued: usize,
    /// Called once per dropped event, on the request path: keep it cheap (a counter).
    pub on_dropped: Box<dyn Fn() + Send + Sync>,
    /// With a cluster: this replica's name; each event then gets `replica` and `seq`.
    pub replica: Option<String>,
}

impl Default for QueueBound {
    fn default() -> Self {
        QueueBound {
            max_queued: crate::config::DEFAULT_EVENTS_MAX_QUEUED,
            on_dropped: Box::new(|| {}),
            replica: None,
        }
    }
}

/// Where events go: the events file (or stdout, or nowhere) and in-process subscribers.
#[derive(Clone)]
pub struct EventSink {
    inbox: Arc<Inbox>,
    published: broadcast::Sender<Arc<Event>>,
}

impl EventSink {
    /// Start the writer thread for `path` (`""` disables the file, `"-"` is stdout).
    /// `on_event` sees every event, in order, right after its line is written (metrics and
    /// the report are fed from here, so they agree with the file).
    pub fn start(
        path: &str,
        bound: QueueBound,
        mut on_event: impl FnMut(&Event) + Send + 'static,
    ) -> std::io::Result<EventSink> {
        let inbox = Arc::new(Inbox {
            queue: Mutex::new(Queue::default()),
            wake: Condvar::new(),
            max_queued: AtomicUsize::new(bound.max_queued),
            on_dropped: bound.on_dropped,
        });
        let (published, _) = broadcast::channel(4096);
        let mut out = open(path)?;
        let mut path = path.to_string();
        let replica = bound.replica;
        let mut seq = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as u64);
        let publish = published.clone();
        // The thread ends once every EventSink is gone (it holds only a weak reference).
        let weak = Arc::downgrade(&inbox);
        std::thread::Builder::new()
            .name("grantshift-events".into())
            .spawn(move || loop {
                let Some(inbox) = weak.upgrade() else {
                    flush(&mut out, &path);
                    return;
                };
                let batch = {
                    let mut queue = inbox.queue.lock().unwrap_or_else(|e| e.into_inner());
                    if queue.items.is_empty() {
                        queue.parked = true;
                        queue = inbox
                            .wake
                            .wait_timeout(queue, Duration::from_millis(250))
                            .unwrap_or_else(|e| e.into_inner())
                            .0;
                        queue.parked = false;
                    }
                    queue.take()
                };
                drop(inbox);
                if batch.is_empty() {
                    continue;
                }
                let mut written: Vec<Box<Event>> = Vec::with_capacity(batch.len());
                let mut synced = Vec::new();
                for message in batch {
                    match message {
                        Message::Reopen(new_path) => {
                            flush(&mut out, &path);
                            match open(&new_path) {
                                Ok(new) => {
                                    out = new;
                                    path = new_path;
                                }
                                Err(e) => tracing::error!(path = %new_path, error = %e, "cannot open the new events file; keeping the old one"),
                            }
                        }
                        Message::Event(mut event) => {
                            // Stamped here, in write order: the file is in time order.
                            event.ts = now_rfc3339();
                            if let Some(replica) = &replica {
                                seq += 1;
                                event.replica = Some(replica.clone());
                                event.seq = Some(seq);
                            }
                            if let Some(file) = out.as_mut() {
                                let mut line = serde_json::to_vec(&event).expect("events serialize");
                                line.push(b'\n');
                                if let Err(e) = file.write_all(&line) {
                                    tracing::error!(%path, error = %e, "cannot write a telemetry event");
                                }
                            }
                            written.push(event);
                        }
                        Message::Sync(done) => synced.push(done),
                    }
                }
                // Flushed once per batch, then published: a subscriber's event is on disk.
                flush(&mut out, &path);
                for event in written {
                    on_event(&event);
                    let _ = publish.send(Arc::new(*event));
                }
                for done in synced {
                    let _ = done.send(());
                }
                std::thread::sleep(COALESCE);
            })?;
        Ok(EventSink { inbox, published })
    }

    /// Release the queue, waking the writer if it is parked.
    fn wake_after(&self, mut queue: std::sync::MutexGuard<'_, Queue>) {
        if queue.parked {
            queue.parked = false;
            drop(queue);
            self.inbox.wake.notify_one();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.inbox.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn push(&self, message: Message) {
        let mut queue = self.lock();
        queue.items.push(message);
        self.wake_after(queue);
    }

    /// Record one event (stamped when written). Never waits for the writer: when
    /// `max_queued` events are already waiting, the event is dropped and counted, with one
    /// warning per burst of drops.
    pub fn record(&self, event: Event) {
        let max_queued = self.inbox.max_queued.load(Ordering::Relaxed);
        let mut queue = self.lock();
        let pushed = queue.push_event(Box::new(event), max_queued);
        match pushed {
            Pushed::Queued { burst_ended } => {
                self.wake_after(queue);
                if let Some(dropped) = burst_ended {
                    tracing::info!(
                        dropped,
                        "telemetry events queue has room again; events were dropped while it was full"
                    );
                }
            }
            Pushed::Dropped { burst_started } => {
                drop(queue);
                (self.inbox.on_dropped)();
                if burst_started {
                    tracing::warn!(
                        max_queued,
                        "telemetry events queue is full (the events writer is stalled): dropping events until it catches up"
                    );
                }
            }
        }
    }

    /// Change how many events may wait (config reload); events already queued stay.
    pub fn set_max_queued(&self, max_queued: usize) {
        self.inbox.max_queued.store(max_queued, Ordering::Relaxed);
    }

    /// Switch to the events file at `path` (config reload, log rotation: the same path opens
    /// the file now there). Events recorded before go to the old file, flushed; those after
    /// to the new one.
    pub fn reopen(&self, path: &str) {
        self.push(Message::Reopen(path.to_string()));
    }

    /// Wait until every event recorded so far is written and published (shutdown).
    pub async fn sync(&self) {
        let (done, wait) = tokio::sync::oneshot::channel();
        self.push(Message::Sync(done));
        let _ = wait.await;
    }

    /// Events as they are written.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.published.subscribe()
    }
}

fn flush(out: &mut Option<Box<dyn Write + Send>>, path: &str) {
    if let Some(file) = out.as_mut() {
        if let Err(e) = file.flush() {
            tracing::error!(%path, error = %e, "cannot write telemetry events");
        }
    }
}

/// Can the events file `path` be opened for appending? Checked without creating anything: an
/// existing file is opened for appending (and closed), a missing one needs its directory.
/// `""` (off) and `"-"` (stdout) always can.
pub fn check_path(path: &str) -> std::io::Result<()> {
    if matches!(path, "" | "-") {
        return Ok(());
    }
    let named =
        |e: std::io::Error| std::io::Error::new(e.kind(), format!("telemetry.events: {path}: {e}"));
    let file = std::path::Path::new(path);
    if file.exists() {
        return std::fs::OpenOptions::new()
            .append(true)
            .open(file)
            .map(drop)
            .map_err(named);
    }
    let dir = file
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    match std::fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => Ok(()),
        Ok(_) => Err(named(std::io::Error::new(
            std::io::ErrorKind::NotADirectory,
            format!("{} is not a directory", dir.display()),
        ))),
        Err(e) => Err(named(std::io::Error::new(
            e.kind(),
            format!("its directory {}: {e}", dir.display()),
        ))),
    }
}

fn open(path: &str) -> std::io::Result<Option<Box<dyn Write + Send>>> {
    Ok(match path {
        "" => None,
        "-" => Some(Box::new(std::io::stdout())),
        path => {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| {
                    std::io::Error::new(e.kind(), format!("telemetry.events: {path}: {e}"))
                })?;
            Some(Box::new(std::io::BufWriter::new(file)))
        }
    })
}

/// RFC 3339 in UTC with a fixed six-digit fraction, so timestamps from several event files
/// sort chronologically as plain strings.
fn now_rfc3339() -> String {
    const FORMAT: &[time::format_description::BorrowedFormatItem<'_>] = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z"
    );
    time::OffsetDateTime::now_utc()
        .format(FORMAT)
        .unwrap_or_default()
}

/// Read events from JSON-lines files (several replicas' files merge), in time order. Lines
/// that are not events are counted, not fatal: a file being appended to may end mid-line.
/// Feed every event of the file at `path` to `each`, in file order, one line at a time (an
/// events file grows without bound: it is never held in memory whole). Returns the number of
/// lines that were not events.
pub fn for_each_event(
    path: &std::path::Path,
    mut each: impl FnMut(Event),
) -> std::io::Result<usize> {
    use std::io::BufRead;
    let named =
        |e: std::io::Error| std::io::Error::new(e.kind(), format!("{}: {e}", path.display()));
    let mut reader = std::io::BufReader::new(std::fs::File::open(path).map_err(named)?);
    let mut line = Vec::new();
    let mut bad = 0;
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line).map_err(named)? == 0 {
            return Ok(bad);
        }
        if line.iter().all(|b| b.is_ascii_whitespace()) {
            continue;
        }
        match serde_json::from_slice::<Event>(&line) {
            Ok(event) => each(event),
            Err(_) => bad += 1,
        }
    }
}

pub fn read_event_files(paths: &[std::path::PathBuf]) -> std::io::Result<(Vec<Event>, usize)> {
    let mut events = Vec::new();
    let mut bad = 0;
    for path in paths {
        bad += for_each_event(path, |event| events.push(event))?;
    }
    // Fixed-width UTC timestamps sort chronologically as strings; the sort is stable, so
    // events of one file with equal stamps keep their order.
    events.sort_by(|a, b| a.ts.cmp(&b.ts));
    Ok((events, bad))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> Box<Event> {
        Box::new(Event::new(
            "127.0.0.1:1".parse().unwrap(),
            "login.salesforce.com",
        ))
    }

    #[test]
    fn a_full_queue_drops_events_and_reports_each_burst_once() {
        let mut q = Queue::default();
        let queued = Pushed::Queued { burst_ended: None };
        assert_eq!(q.push_event(event(), 2), queued);
        assert_eq!(q.push_event(event(), 2), queued);
        // Full: the first drop starts a burst, the next ones do not.
        assert_eq!(
            q.push_event(event(), 2),
            Pushed::Dropped {
                burst_started: true
            }
        );
        for _ in 0..3 {
            assert_eq!(
                q.push_event(event(), 2),
                Pushed::Dropped {
                    burst_started: false
                }
            );
        }
        // Reopen and sync messages do not count against the bound and are never dropped.
        q.items.push(Message::Reopen(String::new()));
        assert_eq!(q.take().len(), 3);
        // The writer took the batch: room again, and the burst's size is told once.
        assert_eq!(
            q.push_event(event(), 2),
            Pushed::Queued {
                burst_ended: Some(4)
            }
        );
        assert_eq!(q.push_event(event(), 2), queued);
        assert!(matches!(
            q.push_event(event(), 2),
            Pushed::Dropped {
                burst_started: true
            }
        ));
    }

    #[test]
    fn values_over_their_bound_are_measured_in_characters() {
        assert_eq!(within_bound("abc", 3), Ok("abc"));
        assert_eq!(within_bound("abcd", 3), Err(4));
        // Three characters, six bytes: within a bound of three characters.
        assert_eq!(within_bound("ééé", 3), Ok("ééé"));
        assert_eq!(within_bound("éééé", 3), Err(4));
    }

    #[test]
    fn an_over_long_host_is_cut_to_a_dns_name_length_and_measured() {
        let long = format!("{}.my.salesforce.com", "a".repeat(1000));
        let e = Event::new("127.0.0.1:1".parse().unwrap(), &long);
        assert_eq!(e.host.len(), MAX_HOST_CHARS);
        assert_eq!(e.oversized["host"], long.len() as u64);
        let json = serde_json::to_string(&e).unwrap();
        assert!(json.contains(r#""oversized":{"host":1018}"#), "{json}");
        let short = Event::new("127.0.0.1:1".parse().unwrap(), "login.salesforce.com");
        let json = serde_json::to_string(&short).unwrap();
        assert!(!json.contains("oversized"), "{json}");
    }

    #[test]
    fn facts_come_from_id_and_instance_url_and_nothing_secret_is_kept() {
        let body = br#"{"access_token":"00Dx!AR8AQsecret","instance_url":"https://acme.my.salesforce.com","id":"https://login.salesforce.com/id/00Dx0000000BV7zEAG/005x00000012Q9PAAU","token_type":"Bearer","signature":"sig"}"#;
        let facts = ResponseFacts::from_json(body);
        assert_eq!(facts.org_id.as_deref(), Some("00Dx0000000BV7zEAG"));
        assert_eq!(facts.user_id.as_deref(), Some("005x00000012Q9PAAU"));
        assert_eq!(
            facts.instance_url.as_deref(),
            Some("https://acme.my.salesforce.com")
        );
        assert!(!format!("{facts:?}").contains("secret"));
    }

    #[test]
    fn facts_skip_other_fields_of_any_shape_and_unescape_their_own() {
        let body = br#"{"access_token":"00Dx!AR8\u0041secret","issued_at":1700000000000,"scope":["api","id"],"nested":{"a":[1,{"b":null}]},"instance_url":"https:\/\/acme.my.salesforce.com","id":"https://login.salesforce.com/id/00Dx0000000BV7zEAG/005x00000012Q9PAAU"}"#;
        let facts = ResponseFacts::from_json(body);
        assert_eq!(
            facts.instance_url.as_deref(),
            Some("https://acme.my.salesforce.com")
        );
        assert_eq!(facts.user_id.as_deref(), Some("005x00000012Q9PAAU"));
        assert_eq!(
            ResponseFacts::from_json(b"not json"),
            ResponseFacts::default()
        );
    }

    #[test]
    fn error_bodies_give_error_and_description() {
        let facts = ResponseFacts::from_json(br#"{"error":"invalid_grant","error_description":"no client credentials user enabled"}"#);
        assert_eq!(facts.error.as_deref(), Some("invalid_grant"));
        assert_eq!(
            facts.error_description.as_deref(),
            Some("no client credentials user enabled")
        );
        assert_eq!(
            ResponseFacts::from_json(b"<html>"),
            ResponseFacts::default()
        );
    }

    #[test]
    fn check_path_needs_the_directory_and_creates_nothing() {
        let dir = tempfile::tempdir().unwrap();
        for ok in ["", "-"] {
            check_path(ok).unwrap();
        }
        let fresh = dir.path().join("events.jsonl");
        check_path(fresh.to_str().unwrap()).unwrap();
        assert!(!fresh.exists(), "checking creates nothing");
        std::fs::write(&fresh, "").unwrap();
        check_path(fresh.to_str().unwrap()).unwrap();
        let missing = dir.path().join("logs/events.jsonl");
        let err = check_path(missing.to_str().unwrap())
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("telemetry.events: "), "{err}");
        assert!(err.contains("its directory"), "{err}");
        let under_a_file = fresh.join("events.jsonl");
        let err = check_path(under_a_file.to_str().unwrap())
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a directory"), "{err}");
    }
}
