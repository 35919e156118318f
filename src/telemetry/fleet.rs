//! The fleet's report (docs/operating.md, "Fleet: the migration report"): which events a
//! replica's report counts when its events reach it twice, from its own events file's writer
//! and from the shared stream. Pure.
//!
//! Every event of a replica with a cluster carries `replica` and `seq`: `seq` starts at the
//! Unix time in microseconds when the replica started and grows by one per event, so a
//! replica's events are numbered in the order it wrote them, across restarts. One task per
//! replica adds them to the stream in that order (a timed-out add is sent again, in order,
//! when Redis returns), so in the stream each replica's events come in `seq` order, but an
//! event may come twice. While Redis is down a replica counts its own events at once
//! ([`Dedup::local`]); the stream brings them again later ([`Dedup::stream`]). Each event is
//! counted once:
//!
//! - from the stream: counted unless it was counted locally, or its `seq` is at most the
//!   highest counted from the stream for its replica (a second copy);
//! - locally: counted unless the stream already brought it (an add that timed out after Redis
//!   had taken it).

use super::events::Event;
use std::collections::{BTreeSet, HashMap};

/// At most this many of the replica's own events wait, counted locally, for the stream.
pub const MAX_LOCAL: usize = 100_000;

#[derive(Debug, Default)]
pub struct Dedup {
    /// This replica's name.
    me: String,
    /// The highest `seq` counted from the stream, per replica.
    high: HashMap<String, u64>,
    /// This replica's events counted locally, not yet seen in the stream.
    local: BTreeSet<u64>,
}

impl Dedup {
    pub fn new(me: &str) -> Dedup {
        Dedup {
            me: me.to_owned(),
            ..Dedup::default()
        }
    }

    /// This replica's event, to be counted at once (Redis down). `true`: count it.
    pub fn local(&mut self, seq: u64) -> bool {
        if self.high.get(&self.me).is_some_and(|h| seq <= *h) {
            return false;
        }
        self.local.insert(seq);
        while self.local.len() > MAX_LOCAL {
            self.local.pop_first();
        }
        true
    }

    /// An event read from the stream. `true`: count it.
    pub fn stream(&mut self, event: &Event) -> bool {
        let (Some(replica), Some(seq)) = (event.replica.as_deref(), event.seq) else {
            // Not numbered (written by hand, or by an older grantshift): counted as it comes.
            return true;
        };
        let high = self.high.entry(replica.to_owned()).or_insert(0);
        let first = seq > *high;
        *high = (*high).max(seq);
        if replica == self.me {
            let high = *high;
            let was_local = self.local.remove(&seq);
            // Counted locally and passed in the stream: never coming (it was not sent).
            while self.local.first().is_some_and(|s| *s < high) {
                self.local.pop_first();
            }
            if was_local {
                return false;
            }
        }
        first
    }

    /// How many of this replica's own events were counted locally and wait for the stream.
    pub fn waiting(&self) -> usize {
        self.local.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(replica: &str, seq: u64) -> Event {
        let mut e = Event::new("127.0.0.1:1".parse().unwrap(), "login.salesforce.com");
        e.replica = Some(replica.into());
        e.seq = Some(seq);
        e
    }

    #[test]
    fn each_replicas_events_count_once_from_the_stream() {
        let mut d = Dedup::new("a");
        assert!(d.stream(&ev("b", 10)));
        assert!(d.stream(&ev("b", 11)));
        assert!(!d.stream(&ev("b", 11)), "a second copy");
        assert!(d.stream(&ev("a", 5)));
        assert!(d.stream(&ev("b", 12)));
        let mut unnumbered = ev("b", 1);
        unnumbered.seq = None;
        assert!(d.stream(&unnumbered));
    }

    #[test]
    fn own_events_counted_during_an_outage_are_skipped_when_the_stream_brings_them() {
        let mut d = Dedup::new("a");
        assert!(d.stream(&ev("a", 1)));
        // Redis down: 2 and 3 counted locally; 2's add had reached Redis before it timed out.
        assert!(d.local(2));
        assert!(d.local(3));
        assert_eq!(d.waiting(), 2);
        assert!(!d.stream(&ev("a", 2)));
        // Sent again on resume, then 3, then a new one.
        assert!(!d.stream(&ev("a", 2)));
        assert!(!d.stream(&ev("a", 3)));
        assert!(d.stream(&ev("a", 4)));
        assert_eq!(d.waiting(), 0);
    }

    #[test]
    fn an_own_event_the_stream_brought_first_is_not_counted_again_locally() {
        let mut d = Dedup::new("a");
        assert!(d.stream(&ev("a", 7)));
        assert!(
            !d.local(7),
            "the add timed out after Redis took it, and was read"
        );
        assert!(d.local(8));
    }

    #[test]
    fn local_events_never_sent_are_forgotten_once_the_stream_passes_them() {
        let mut d = Dedup::new("a");
        assert!(d.local(2));
        assert!(d.stream(&ev("a", 9)), "a restart lost 2's buffer");
        assert_eq!(d.waiting(), 0);
    }
}
