//! The report in one line (docs/operating.md, "The report and the admin page"): credential
//! sets by verdict, the share of password logins upgraded over the last 24 hours, and the days
//! left until Salesforce's deadlines. Pure: `now` is a parameter (the admin server and
//! `grantshift report` pass the wall clock, tests a fixed time).

use super::report::{LoginGrant, Report, Verdict};
use serde::Serialize;
use time::{Date, OffsetDateTime};

/// A deadline Salesforce has announced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Deadline {
    /// What ends (`username-password flow`, `SOAP login()`).
    pub what: &'static str,
    /// The day it ends, `YYYY-MM-DD`.
    pub date: String,
    /// How people name the day (`20 Feb 2027`, `Summer '27 (1 Jun 2027)`).
    pub label: &'static str,
    /// Whole days from today (UTC) to that day; absent once it has passed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub days_left: Option<i64>,
    pub passed: bool,
}

/// The `what` of the SOAP `login()` deadline.
const SOAP_LOGIN: &str = "SOAP login()";

/// When the username-password flow is enforced off, and when SOAP `login()` retires
/// (announced for Summer '27; 1 June 2027 is taken as its day).
const DEADLINES: [(&str, Date, &str); 2] = [
    (
        "username-password flow",
        time::macros::date!(2027 - 02 - 20),
        "20 Feb 2027",
    ),
    (
        SOAP_LOGIN,
        time::macros::date!(2027 - 06 - 01),
        "Summer '27 (1 Jun 2027)",
    ),
];

/// Password logins of the last 24 hours (the current hour and the 23 before it, by event
/// timestamp).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Last24h {
    pub password_logins: u64,
    pub upgraded: u64,
    /// `upgraded / password_logins`; absent when there were none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upgraded_share: Option<f64>,
}

/// How many credential sets have one verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct VerdictCount {
    pub verdict: Verdict,
    pub sets: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    /// `now`, RFC 3339 UTC.
    pub generated_at: String,
    pub sets: u64,
    /// Verdicts with at least one set, most urgent first.
    pub by_verdict: Vec<VerdictCount>,
    pub last_24h: Last24h,
    pub deadlines: Vec<Deadline>,
    /// Credential sets that log in through SOAP `login()`, and how many of them are not
    /// upgraded yet (absent when there are none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub soap_login_sets: Option<SoapSets>,
    /// All of the above as one line of text.
    pub line: String,
}

/// The credential sets that log in through SOAP `login()`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SoapSets {
    pub sets: u64,
    /// Not `upgraded`: still logging in to Salesforce through SOAP `login()`, which stops
    /// working at its deadline.
    pub not_upgraded: u64,
}

/// The summary of `report` at `now`.
pub fn summary(report: &Report, now: OffsetDateTime) -> Summary {
    let now = now.to_offset(time::UtcOffset::UTC);
    let mut by_verdict: Vec<VerdictCount> = Vec::new();
    for row in &report.credentials {
        match by_verdict.iter_mut().find(|c| c.verdict == row.verdict) {
            Some(c) => c.sets += 1,
            None => by_verdict.push(VerdictCount {
                verdict: row.verdict,
                sets: 1,
            }),
        }
    }
    by_verdict.sort_by_key(|c| c.verdict);
    let now_hour = now.unix_timestamp().div_euclid(3600);
    let window = report.trend.sum(now_hour - 23, now_hour);
    let last_24h = Last24h {
        password_logins: window.total(),
        upgraded: window.upgraded,
        upgraded_share: (window.total() > 0)
            .then(|| window.upgraded as f64 / window.total() as f64),
    };
    let soap: Vec<_> = report
        .credentials
        .iter()
        .filter(|r| r.grant == LoginGrant::SoapLogin)
        .collect();
    let soap_login_sets = (!soap.is_empty()).then(|| SoapSets {
        sets: soap.len() as u64,
        not_upgraded: soap
            .iter()
            .filter(|r| r.verdict != Verdict::Upgraded)
            .count() as u64,
    });
    let today = now.date();
    let deadlines: Vec<Deadline> = DEADLINES
        .iter()
        .map(|&(what, date, label)| {
            let days = (date - today).whole_days();
            Deadline {
                what,
                date: date.to_string(),
                label,
                days_left: (days >= 0).then_some(days),
                passed: days < 0,
            }
        })
        .collect();
    let mut s = Summary {
        generated_at: now
            .replace_nanosecond(0)
            .unwrap_or(now)
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default(),
        sets: report.credentials.len() as u64,
        by_verdict,
        last_24h,
        deadlines,
        soap_login_sets,
        line: String::new(),
    };
    s.line = s.parts().join("; ");
    s
}

impl Summary {
    /// The line's parts, each readable alone: a narrow terminal wraps between them.
    pub fn parts(&self) -> Vec<String> {
        let mut parts = vec![self.sets_text()];
        parts.push(self.last_24h_text());
        parts.extend(self.deadlines.iter().map(|d| self.deadline_text(d)));
        parts
    }

    /// [`deadline_text`], and for SOAP `login()` how many sets still log in through it
    /// (when there are SOAP sets).
    pub fn deadline_text(&self, d: &Deadline) -> String {
        let text = deadline_text(d);
        match self.soap_login_sets {
            Some(soap) if d.what == SOAP_LOGIN => format!(
                "{text} ({} of {} SOAP login() credential set{} not upgraded yet)",
                soap.not_upgraded,
                soap.sets,
                plural(soap.sets)
            ),
            _ => text,
        }
    }

    /// `50 credential sets: 5 needs-jwt, 45 ready`.
    pub fn sets_text(&self) -> String {
        if self.sets == 0 {
            return "no credential sets yet".into();
        }
        let counts: Vec<String> = self
            .by_verdict
            .iter()
            .map(|c| format!("{} {}", c.sets, c.verdict.as_str()))
            .collect();
        format!(
            "{} credential set{}: {}",
            self.sets,
            plural(self.sets),
            counts.join(", ")
        )
    }

    /// `last 24 h: 12% of 80 password logins upgraded`.
    pub fn last_24h_text(&self) -> String {
        let l = &self.last_24h;
        match l.upgraded_share {
            None => "no logins in the last 24 h".into(),
            Some(share) => format!(
                "last 24 h: {} of {} password login{} upgraded",
                percent(share),
                l.password_logins,
                plural(l.password_logins)
            ),
        }
    }
}

/// `username-password flow retires 20 Feb 2027: 81 days left` (`retired …: passed` after).
pub fn deadline_text(d: &Deadline) -> String {
    let (verb, when) = match d.days_left {
        None => ("retired", "passed".to_string()),
        Some(0) => ("retires", "today".to_string()),
        Some(1) => ("retires", "1 day left".to_string()),
        Some(n) => ("retires", format!("{n} days left")),
    };
    format!("{} {verb} {}: {when}", d.what, d.label)
}

/// A share as a whole percentage that never rounds to a false 0% or 100%.
pub fn percent(share: f64) -> String {
    let p = share * 100.0;
    if p > 0.0 && p < 1.0 {
        "<1%".into()
    } else if p > 99.0 && p < 100.0 {
        ">99%".into()
    } else {
        format!("{p:.0}%")
    }
}

fn plural(n: u64) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::events::{Action, Event};
    use crate::telemetry::report::ReportBuilder;
    use time::macros::datetime;

    fn login(ts: &str, username: &str, action: Action) -> Event {
        let mut e = Event::new("127.0.0.1:1".parse().unwrap(), "login.salesforce.com");
        e.ts = ts.into();
        e.grant = Some("password".into());
        e.client_id = Some("app".into());
        e.username = Some(username.into());
        e.action = action;
        e.status = 200;
        e
    }

    fn report(events: &[Event]) -> Report {
        let mut b = ReportBuilder::default();
        for e in events {
            b.add(e);
        }
        b.report()
    }

    #[test]
    fn days_left_count_calendar_days_and_a_past_deadline_has_passed() {
        let r = report(&[]);
        let s = summary(&r, datetime!(2026-12-01 15:17 UTC));
        assert_eq!(s.deadlines[0].date, "2027-02-20");
        assert_eq!(s.deadlines[0].days_left, Some(81));
        assert_eq!(s.deadlines[1].days_left, Some(182));
        assert!(s
            .line
            .contains("username-password flow retires 20 Feb 2027: 81 days left"));
        assert!(s
            .line
            .contains("SOAP login() retires Summer '27 (1 Jun 2027): 182 days left"));
        // Late on the day before: one day left; the day itself: today.
        let s = summary(&r, datetime!(2027-02-19 23:59 UTC));
        assert_eq!(s.deadlines[0].days_left, Some(1));
        assert!(s.line.contains("20 Feb 2027: 1 day left"), "{}", s.line);
        let s = summary(&r, datetime!(2027-02-20 00:00 UTC));
        assert!(s.line.contains("20 Feb 2027: today"), "{}", s.line);
        // The next day it has passed: never a negative count.
        let s = summary(&r, datetime!(2027-02-21 08:00 UTC));
        assert_eq!(s.deadlines[0].days_left, None);
        assert!(s.deadlines[0].passed);
        assert!(
            s.line
                .contains("username-password flow retired 20 Feb 2027: passed"),
            "{}",
            s.line
        );
        assert!(!s.line.contains(": -"), "{}", s.line);
        assert_eq!(s.deadlines[1].days_left, Some(100));
        let s = summary(&r, datetime!(2028-01-01 00:00 UTC));
        assert!(s
            .deadlines
            .iter()
            .all(|d| d.passed && d.days_left.is_none()));
        // Another offset is the same instant in UTC.
        let s = summary(&r, datetime!(2027-02-20 01:00 +02:00));
        assert_eq!(s.deadlines[0].days_left, Some(1));
        assert_eq!(s.generated_at, "2027-02-19T23:00:00Z");
    }

    #[test]
    fn the_share_counts_the_last_24_hours_of_password_logins() {
        let events = [
            // Outside the window: 25 hours before now.
            login("2026-12-01T11:30:00.000000Z", "old@x.com", Action::Upgraded),
            login("2026-12-01T13:10:00.000000Z", "a@x.com", Action::Upgraded),
            login("2026-12-01T20:00:00.000000Z", "a@x.com", Action::Upgraded),
            login("2026-12-02T09:00:00.000000Z", "b@x.com", Action::Observed),
            login("2026-12-02T12:59:59.000000Z", "c@x.com", Action::Fallback),
        ];
        let r = report(&events);
        let s = summary(&r, datetime!(2026-12-02 12:59:59 UTC));
        assert_eq!(s.last_24h.password_logins, 4);
        assert_eq!(s.last_24h.upgraded, 2);
        assert_eq!(s.last_24h.upgraded_share, Some(0.5));
        assert!(
            s.line
                .contains("last 24 h: 50% of 4 password logins upgraded"),
            "{}",
            s.line
        );
        // A day later nothing is in the window.
        let s = summary(&r, datetime!(2026-12-04 00:00 UTC));
        assert_eq!(s.last_24h.upgraded_share, None);
        assert!(s.line.contains("no logins in the last 24 h"), "{}", s.line);
        assert_eq!(percent(0.001), "<1%");
        assert_eq!(percent(0.999), ">99%");
        assert_eq!(percent(1.0), "100%");
        assert_eq!(percent(0.0), "0%");
    }

    #[test]
    fn sets_are_counted_by_verdict_most_urgent_first() {
        let mut jwt = Vec::new();
        for user in ["a@x.com", "b@x.com"] {
            let mut e = login("2026-12-01T10:00:00Z", user, Action::Observed);
            e.org_id = Some("00D000000000001AAA".into());
            e.instance_url = Some("https://x.my.salesforce.com".into());
            jwt.push(e);
        }
        let mut up = login("2026-12-01T10:00:00Z", "c@x.com", Action::Upgraded);
        up.client_id = Some("other".into());
        up.target_host = Some("x.my.salesforce.com".into());
        jwt.push(up);
        let s = summary(&report(&jwt), datetime!(2026-12-01 10:30 UTC));
        assert_eq!(s.sets, 3);
        assert_eq!(
            s.by_verdict,
            vec![
                VerdictCount {
                    verdict: Verdict::NeedsJwt,
                    sets: 2
                },
                VerdictCount {
                    verdict: Verdict::Upgraded,
                    sets: 1
                }
            ]
        );
        assert!(
            s.line
                .starts_with("3 credential sets: 2 needs-jwt, 1 upgraded; last 24 h: 33% of 3 password logins upgraded; "),
            "{}",
            s.line
        );
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["by_verdict"][0]["verdict"], "needs-jwt");
        assert_eq!(json["last_24h"]["upgraded"], 1);
        assert_eq!(json["deadlines"][1]["label"], "Summer '27 (1 Jun 2027)");
        let none = summary(&report(&[]), datetime!(2026-12-01 10:30 UTC));
        assert!(none
            .line
            .starts_with("no credential sets yet; no logins in the last 24 h; "));
    }

    fn soap(ts: &str, username: &str, action: Action) -> Event {
        let mut e = login(ts, username, action);
        e.grant = Some("soap_login".into());
        e.client_id = None;
        if action == Action::Upgraded {
            e.target_host = Some("x.my.salesforce.com".into());
        }
        e
    }

    #[test]
    fn soap_logins_count_in_the_share_and_beside_the_summer_27_deadline() {
        let events = [
            soap("2026-12-01T10:00:00Z", "a@x.com", Action::Upgraded),
            soap("2026-12-01T10:05:00Z", "b@x.com", Action::Observed),
            soap("2026-12-01T10:06:00Z", "c@x.com", Action::Upgraded),
            login("2026-12-01T10:10:00Z", "a@x.com", Action::Observed),
        ];
        let s = summary(&report(&events), datetime!(2026-12-01 10:30 UTC));
        assert_eq!(s.sets, 4);
        assert_eq!(s.last_24h.password_logins, 4);
        assert_eq!(s.last_24h.upgraded, 2);
        assert_eq!(
            s.soap_login_sets,
            Some(SoapSets {
                sets: 3,
                not_upgraded: 1
            })
        );
        assert!(
            s.line.contains(
                "SOAP login() retires Summer '27 (1 Jun 2027): 182 days left (1 of 3 SOAP login() credential sets not upgraded yet)"
            ),
            "{}",
            s.line
        );
        assert!(
            s.line
                .contains("username-password flow retires 20 Feb 2027: 81 days left;"),
            "{}",
            s.line
        );
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["soap_login_sets"]["not_upgraded"], 1);
        // No SOAP sets: the deadline line as before, no count.
        let s = summary(&report(&events[3..]), datetime!(2026-12-01 10:30 UTC));
        assert_eq!(s.soap_login_sets, None);
        assert!(
            s.line.ends_with("(1 Jun 2027): 182 days left"),
            "{}",
            s.line
        );
    }
}
