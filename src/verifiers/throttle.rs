//! What one verifier remembers between logins, and when it may cost Argon2 again (pure; the
//! clock is passed in).
//!
//! - The digest of the password it last accepted: that password is [`Checked::Verified`]
//!   without hashing.
//! - The digests of the last [`WRONG_KEPT`] passwords it refused: those are
//!   [`Checked::Mismatch`] without hashing.
//! - Consecutive refusals: after [`FREE_FAILURES`] of them, no other password is hashed for a
//!   backoff window ([`backoff`]: 1 s, doubling, at most [`MAX_BACKOFF`]); a password it does not
//!   know in that window is [`Checked::Throttled`] (not upgraded). An accepted password ends
//!   the backoff.
//!
//! The executor also runs one check per verifier at a time, so a burst of logins for one set
//! costs one Argon2 run, not one each.

use super::Checked;
use crate::password::Digest;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Refused digests remembered per verifier.
pub const WRONG_KEPT: usize = 8;
/// Refusals in a row that cost no backoff (a mistyped password, a retry).
pub const FREE_FAILURES: u32 = 2;
/// The longest backoff window.
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// How long no unknown password is hashed after `failures` refusals in a row.
pub fn backoff(failures: u32) -> Duration {
    if failures <= FREE_FAILURES {
        return Duration::ZERO;
    }
    let doublings = (failures - FREE_FAILURES - 1).min(16);
    Duration::from_secs(1u64 << doublings).min(MAX_BACKOFF)
}

/// One verifier's memory.
#[derive(Debug, Default)]
pub struct Guard {
    accepted: Option<Digest>,
    wrong: VecDeque<Digest>,
    failures: u32,
    blocked_until: Option<Instant>,
}

impl Guard {
    /// The answer for `digest` without hashing, if there is one; `None`: hash it.
    pub fn answer(&self, digest: &Digest, now: Instant) -> Option<Checked> {
        if self.accepted.as_ref() == Some(digest) {
            return Some(Checked::Verified);
        }
        if self.wrong.contains(digest) {
            return Some(Checked::Mismatch);
        }
        if self.blocked_until.is_some_and(|until| now < until) {
            return Some(Checked::Throttled);
        }
        None
    }

    /// What hashing `digest`'s password found.
    pub fn record(&mut self, digest: Digest, matched: bool, now: Instant) {
        if matched {
            self.wrong.retain(|d| *d != digest);
            self.accepted = Some(digest);
            self.failures = 0;
            self.blocked_until = None;
            return;
        }
        if self.wrong.len() == WRONG_KEPT {
            self.wrong.pop_front();
        }
        self.wrong.push_back(digest);
        self.failures = self.failures.saturating_add(1);
        let wait = backoff(self.failures);
        self.blocked_until = (!wait.is_zero()).then(|| now + wait);
    }

    /// Remember `digest` as accepted without a check of ours (the verifier was just made from
    /// its password).
    pub fn accept(&mut self, digest: Digest) {
        self.record(digest, true, Instant::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::password::{DigestKey, Password};

    fn digests(n: usize) -> (DigestKey, Vec<Digest>) {
        let key = DigestKey::random();
        let d = (0..n)
            .map(|i| key.digest(&Password::new(&format!("pw{i}"))))
            .collect();
        (key, d)
    }

    #[test]
    fn backoff_starts_after_the_free_failures_and_doubles_to_its_cap() {
        assert_eq!(backoff(0), Duration::ZERO);
        assert_eq!(backoff(FREE_FAILURES), Duration::ZERO);
        assert_eq!(backoff(FREE_FAILURES + 1), Duration::from_secs(1));
        assert_eq!(backoff(FREE_FAILURES + 2), Duration::from_secs(2));
        assert_eq!(backoff(FREE_FAILURES + 4), Duration::from_secs(8));
        assert_eq!(backoff(FREE_FAILURES + 7), MAX_BACKOFF);
        assert_eq!(backoff(u32::MAX), MAX_BACKOFF);
    }

    #[test]
    fn known_passwords_are_answered_without_hashing_even_in_a_backoff() {
        let (_, d) = digests(20);
        let t0 = Instant::now();
        let mut g = Guard::default();
        assert_eq!(g.answer(&d[0], t0), None, "unknown: hash it");
        g.record(d[0].clone(), true, t0);
        assert_eq!(g.answer(&d[0], t0), Some(Checked::Verified));
        for wrong in &d[1..=FREE_FAILURES as usize] {
            assert_eq!(g.answer(wrong, t0), None);
            g.record(wrong.clone(), false, t0);
            assert_eq!(g.answer(wrong, t0), Some(Checked::Mismatch));
        }
        // Within the free failures an unknown password is still hashed.
        assert_eq!(g.answer(&d[10], t0), None);
        g.record(d[10].clone(), false, t0);
        // Now a backoff of 1 s: unknown passwords are not hashed, known ones still answered.
        assert_eq!(g.answer(&d[11], t0), Some(Checked::Throttled));
        assert_eq!(g.answer(&d[0], t0), Some(Checked::Verified));
        assert_eq!(g.answer(&d[1], t0), Some(Checked::Mismatch));
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(g.answer(&d[11], t1), None, "the window is over");
        g.record(d[11].clone(), false, t1);
        assert_eq!(
            g.answer(&d[12], t1 + Duration::from_millis(1999)),
            Some(Checked::Throttled),
            "2 s now"
        );
        // The right password ends it.
        let t3 = t1 + Duration::from_secs(2);
        g.record(d[12].clone(), true, t3);
        assert_eq!(g.answer(&d[13], t3), None);
        assert_eq!(g.answer(&d[12], t3), Some(Checked::Verified));
        assert_eq!(
            g.answer(&d[0], t3),
            None,
            "only the last accepted one is kept"
        );
    }

    #[test]
    fn only_the_last_few_wrong_passwords_are_kept() {
        let (_, d) = digests(WRONG_KEPT + 1);
        let t = Instant::now();
        let mut g = Guard::default();
        for wrong in &d {
            g.record(wrong.clone(), false, t);
        }
        let far = t + MAX_BACKOFF * 2;
        assert_eq!(g.answer(&d[0], far), None, "forgotten");
        assert_eq!(g.answer(&d[WRONG_KEPT], far), Some(Checked::Mismatch));
    }
}
