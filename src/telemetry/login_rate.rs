//! The login-rate watch: logins grantshift sent upstream per (target host, Run As identity)
//! over the last hour. Salesforce refuses logins past 3,600 an hour for one user, and after
//! the upgrade every integration of a connected app logs in as that app's one Run As user.
//! Pure: the caller says what minute it is.
//!
//! One counter per minute for each pair, so "the last hour" slides minute by minute. The
//! pairs are the metric label values (bounded by the metrics' identity cap), so the watch is
//! bounded too.

use std::collections::HashMap;

/// Salesforce's limit on logins per user per hour.
pub const SALESFORCE_LOGINS_PER_HOUR: u64 = 3_600;

/// A WARN is logged when a pair's last hour reaches this share of the limit (80%).
pub const WARN_AT: u64 = SALESFORCE_LOGINS_PER_HOUR * 8 / 10;

/// ... and again only after it fell below this (72%): a rate that hovers at 80% as the hour
/// slides warns once.
pub const REARM_BELOW: u64 = WARN_AT * 9 / 10;

const MINUTES: usize = 60;

/// The last hour of one pair, a slot per minute.
#[derive(Debug, Clone)]
struct Window {
    /// `slots[m % 60]` counts minute `m` when `minute_of[m % 60] == m`.
    slots: [u32; MINUTES],
    minute_of: [u64; MINUTES],
    /// A WARN was logged and the count has not dropped below [`REARM_BELOW`] since.
    warned: bool,
}

impl Window {
    fn new() -> Window {
        Window {
            slots: [0; MINUTES],
            minute_of: [u64::MAX; MINUTES],
            warned: false,
        }
    }

    fn add(&mut self, minute: u64) {
        let i = (minute % MINUTES as u64) as usize;
        if self.minute_of[i] != minute {
            self.minute_of[i] = minute;
            self.slots[i] = 0;
        }
        self.slots[i] = self.slots[i].saturating_add(1);
    }

    /// Logins in the 60 minutes ending with `minute`.
    fn last_hour(&self, minute: u64) -> u64 {
        self.minute_of
            .iter()
            .zip(&self.slots)
            .filter(|(m, _)| **m != u64::MAX && **m <= minute && minute - **m < MINUTES as u64)
            .map(|(_, n)| *n as u64)
            .sum()
    }
}

/// One pair's last hour, for the metric and the admin page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rate {
    pub target_host: String,
    pub identity: String,
    pub last_hour: u64,
}

#[derive(Debug, Default)]
pub struct LoginRate {
    windows: HashMap<(String, String), Window>,
}

impl LoginRate {
    /// One login sent upstream at `minute` (minutes since the Unix epoch). `Some(count)` the
    /// first time the pair's last hour reaches [`WARN_AT`] (again only after it fell below
    /// [`REARM_BELOW`]).
    pub fn add(&mut self, target_host: &str, identity: &str, minute: u64) -> Option<u64> {
        let window = self
            .windows
            .entry((target_host.to_owned(), identity.to_owned()))
            .or_insert_with(Window::new);
        window.add(minute);
        let count = window.last_hour(minute);
        if count < REARM_BELOW {
            window.warned = false;
            None
        } else if count < WARN_AT {
            None
        } else if !window.warned {
            window.warned = true;
            Some(count)
        } else {
            None
        }
    }

    /// The pairs seen in the last hour (or once more at 0).
    pub fn pairs(&self) -> impl Iterator<Item = (String, String)> + '_ {
        self.windows.keys().cloned()
    }

    /// Every pair's last hour at `minute`, busiest first. A pair idle for the whole hour is
    /// in it once more, at 0 (so a gauge set from it goes to 0), then forgotten.
    pub fn rates(&mut self, minute: u64) -> Vec<Rate> {
        let mut rates: Vec<Rate> = self
            .windows
            .iter()
            .map(|((target_host, identity), w)| Rate {
                target_host: target_host.clone(),
                identity: identity.clone(),
                last_hour: w.last_hour(minute),
            })
            .collect();
        self.windows.retain(|_, w| w.last_hour(minute) > 0);
        rates.sort_by(|a, b| {
            b.last_hour
                .cmp(&a.last_hour)
                .then_with(|| (&a.target_host, &a.identity).cmp(&(&b.target_host, &b.identity)))
        });
        rates
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hour_slides_minute_by_minute() {
        let mut rate = LoginRate::default();
        let t0 = 29_000_000;
        for _ in 0..3 {
            rate.add("acme.my.salesforce.com", "app", t0);
        }
        rate.add("acme.my.salesforce.com", "app", t0 + 30);
        let at = |rate: &mut LoginRate, minute| {
            rate.rates(minute).first().map_or(0, |r: &Rate| r.last_hour)
        };
        assert_eq!(at(&mut rate, t0 + 30), 4);
        assert_eq!(at(&mut rate, t0 + 59), 4, "minute t0 is still in the hour");
        assert_eq!(at(&mut rate, t0 + 60), 1, "minute t0 has left it");
        assert_eq!(at(&mut rate, t0 + 89), 1);
        assert_eq!(at(&mut rate, t0 + 90), 0, "idle: said once at 0");
        assert!(rate.rates(t0 + 90).is_empty(), "then forgotten");
    }

    #[test]
    fn a_slot_reused_an_hour_later_starts_from_zero() {
        let mut rate = LoginRate::default();
        rate.add("h", "app", 100);
        rate.add("h", "app", 160);
        assert_eq!(rate.rates(160)[0].last_hour, 1);
    }

    #[test]
    fn the_warning_comes_once_at_80_percent_and_again_after_it_fell_below() {
        let mut rate = LoginRate::default();
        let mut warnings = Vec::new();
        // 48 logins a minute: 2,880 (80% of 3,600) within the 60th minute.
        for minute in 0..120u64 {
            for _ in 0..48 {
                if let Some(n) = rate.add("h", "app", 1_000 + minute) {
                    warnings.push((minute, n));
                }
            }
        }
        assert_eq!(
            warnings,
            [(59, WARN_AT)],
            "once, while it stays at the rate"
        );
        // A quiet hour, then the same rate again: a second warning.
        for minute in 240..300u64 {
            for _ in 0..48 {
                if let Some(n) = rate.add("h", "app", 1_000 + minute) {
                    warnings.push((minute, n));
                }
            }
        }
        assert_eq!(warnings.len(), 2, "{warnings:?}");
    }

    #[test]
    fn pairs_are_apart_and_the_busiest_comes_first() {
        let mut rate = LoginRate::default();
        rate.add("a.my.salesforce.com", "app1", 5);
        for _ in 0..3 {
            rate.add("a.my.salesforce.com", "app2", 5);
        }
        rate.add("b.my.salesforce.com", "app1", 5);
        let rates = rate.rates(5);
        assert_eq!(rates.len(), 3);
        assert_eq!(
            (rates[0].identity.as_str(), rates[0].last_hour),
            ("app2", 3)
        );
    }
}
