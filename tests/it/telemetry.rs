//! docs/operating.md, "The events file": one JSON object per line per token request in `[telemetry].events`,
//! written when the response has gone back, with `ts` (RFC 3339), `client`, `host`, `grant`,
//! `client_id`, `username`, `action`, `flow`, `target_host`, `status`, `upstream_error`,
//! `org_id`, `user_id`, `instance_url`, `latency_ms`, `reason` (and `oversized` for values
//! over their bound), and never a secret; a stalled events writer costs dropped events, never
//! a held-up login.

use serde_json::Value;
use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};
use testkit::*;

/// The event field names (docs/operating.md, "The events file").
const EVENT_FIELDS: &[&str] = &[
    "ts",
    "client",
    "host",
    "grant",
    "client_id",
    "username",
    "action",
    "flow",
    "target_host",
    "status",
    "upstream_error",
    "org_id",
    "user_id",
    "instance_url",
    "latency_ms",
    "reason",
    "password_check",
    "cache",
    "oversized",
];

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// Seconds since the epoch of an RFC 3339 date-time (`YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)`),
/// or `None` if it is not one.
fn rfc3339_unix(ts: &str) -> Option<f64> {
    let b = ts.as_bytes();
    let num = |range: std::ops::Range<usize>| -> Option<i64> {
        let s = ts.get(range)?;
        s.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| s.parse().ok())?
    };
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, s) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    let mut rest = &ts[19..];
    let mut frac = 0.0;
    if let Some(after_dot) = rest.strip_prefix('.') {
        let digits = after_dot.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        frac = format!("0.{}", &after_dot[..digits]).parse().ok()?;
        rest = &after_dot[digits..];
    }
    let offset = match rest {
        "Z" | "z" => 0,
        _ if rest.len() == 6 && (rest.starts_with('+') || rest.starts_with('-')) => {
            let sign = if rest.starts_with('-') { -1 } else { 1 };
            let oh: i64 = rest[1..3].parse().ok()?;
            let om: i64 = rest[4..6].parse().ok()?;
            (rest.as_bytes()[3] == b':').then_some(())?;
            sign * (oh * 3600 + om * 60)
        }
        _ => return None,
    };
    // Days from the civil date (Howard Hinnant's algorithm).
    let (y, m) = if mo <= 2 {
        (y - 1, mo + 9)
    } else {
        (y, mo - 3)
    };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some((days * 86_400 + h * 3600 + mi * 60 + s - offset) as f64 + frac)
}

#[test]
fn rfc3339_reader_agrees_with_known_instants() {
    assert_eq!(rfc3339_unix("1970-01-01T00:00:00Z"), Some(0.0));
    assert_eq!(
        rfc3339_unix("2026-02-20T12:30:00.5Z"),
        Some(1_771_590_600.5)
    );
    assert_eq!(
        rfc3339_unix("2026-02-20T13:30:00+01:00"),
        Some(1_771_590_600.0)
    );
    assert_eq!(rfc3339_unix("2026-02-20 12:30:00"), None);
    assert_eq!(rfc3339_unix("1771590600"), None);
}

/// Check what every event has: only the README's event field names, an RFC 3339 `ts` within the test's
/// window, the client's address, a numeric non-negative `latency_ms`, and no secret.
fn assert_common_fields(event: &Value, client: SocketAddr, window: (f64, f64)) {
    let object = event.as_object().expect("an event is a JSON object");
    for key in object.keys() {
        assert!(
            EVENT_FIELDS.contains(&key.as_str()),
            "unexpected field {key}: {event}"
        );
    }
    let ts = event["ts"].as_str().expect("ts is a string");
    let at = rfc3339_unix(ts).unwrap_or_else(|| panic!("ts is RFC 3339: {ts}"));
    assert!(
        at >= window.0 - 1.0 && at <= window.1 + 1.0,
        "ts {ts} lies within the test ({} .. {})",
        window.0,
        window.1
    );
    assert_eq!(
        event["client"],
        client.to_string(),
        "client is the peer address"
    );
    let latency = event["latency_ms"]
        .as_f64()
        .expect("latency_ms is a number");
    assert!(latency >= 0.0, "latency_ms {latency}");
    assert!(event["status"].is_u64(), "status is a number: {event}");
    let text = event.to_string();
    for secret in [acme::PASSWORD, acme::CLIENT_SECRET, acme::REPORTS_PASSWORD] {
        assert!(!text.contains(secret), "an event carries a secret: {text}");
    }
}

#[tokio::test]
async fn events_file_has_one_json_line_per_token_request_with_the_spec_fields() {
    // Each login goes upstream (the fallback one after the world changed); the cache's own
    // fields are tested in token_cache.rs.
    let proxy = TestProxy::builder()
        .extra_toml(&acme_mapping())
        .token_cache_off()
        .start()
        .await;
    let started = unix_now();
    let mut from = Vec::new();

    // 1. upgraded
    let (mut conn, client) = proxy.intercepted_from(LOGIN_HOST, Http::H1).await;
    assert_eq!(
        post_form(&mut conn, LOGIN_HOST, TOKEN_PATH, &acme_password_form())
            .await
            .status,
        200
    );
    from.push(client);
    // 2. unmapped (a username with no mapping), over HTTP/2
    let (mut conn, client) = proxy.intercepted_from(LOGIN_HOST, Http::H2).await;
    let reports = password_form(
        acme::CLIENT_ID,
        acme::CLIENT_SECRET,
        acme::REPORTS_USERNAME,
        acme::REPORTS_PASSWORD,
    );
    assert_eq!(
        post_form(&mut conn, LOGIN_HOST, TOKEN_PATH, &reports)
            .await
            .status,
        200
    );
    from.push(client);
    // 3. fallback (the app lost its Run As user)
    proxy
        .sf
        .edit(|w| w.org_mut(acme::ORG_ID).app_mut(acme::CLIENT_ID).run_as_user = None);
    let (mut conn, client) = proxy.intercepted_from(LOGIN_HOST, Http::H1).await;
    assert_eq!(
        post_form(&mut conn, LOGIN_HOST, TOKEN_PATH, &acme_password_form())
            .await
            .status,
        200
    );
    from.push(client);
    // 4. skipped
    let (mut conn, client) = proxy.intercepted_from(LOGIN_HOST, Http::H1).await;
    let bad = format!("{}&x=%zz", acme_password_form());
    post_form(&mut conn, LOGIN_HOST, TOKEN_PATH, &bad).await;
    from.push(client);
    // 5. passed
    let (mut conn, client) = proxy.intercepted_from(acme::MY_DOMAIN, Http::H1).await;
    let refresh = "grant_type=refresh_token&refresh_token=unknown";
    assert_eq!(
        post_form(&mut conn, acme::MY_DOMAIN, TOKEN_PATH, refresh)
            .await
            .status,
        400
    );
    from.push(client);

    let mut published = Vec::new();
    for _ in 0..5 {
        published.push(proxy.next_event().await);
    }
    let ended = unix_now();
    let lines = proxy.events_in_file();
    assert_eq!(lines.len(), 5, "one line per token request: {lines:#?}");
    assert_eq!(
        lines, published,
        "the file holds what subscribers were told"
    );

    for (event, client) in lines.iter().zip(&from) {
        assert_common_fields(event, *client, (started, ended));
    }

    let [upgraded, unmapped, fallback, skipped, passed] = &lines[..] else {
        unreachable!()
    };
    assert_eq!(upgraded["action"], "upgraded");
    assert_eq!(upgraded["host"], LOGIN_HOST);
    assert_eq!(upgraded["grant"], "password");
    assert_eq!(upgraded["client_id"], acme::CLIENT_ID);
    assert_eq!(upgraded["username"], acme::USERNAME);
    assert_eq!(upgraded["flow"], "client_credentials");
    assert_eq!(upgraded["target_host"], acme::MY_DOMAIN);
    assert_eq!(upgraded["status"], 200);
    assert_eq!(upgraded["org_id"], acme::ORG_ID);
    assert_eq!(
        upgraded["user_id"],
        acme::RUN_AS_USER_ID,
        "the token's user: Run As"
    );
    assert_eq!(upgraded["instance_url"], "https://acme.my.salesforce.com");
    assert!(upgraded.get("upstream_error").is_none() && upgraded.get("reason").is_none());

    assert_eq!(unmapped["action"], "unmapped");
    assert_eq!(unmapped["username"], acme::REPORTS_USERNAME);
    assert_eq!(unmapped["user_id"], acme::REPORTS_USER_ID);
    assert_eq!(unmapped["org_id"], acme::ORG_ID);
    assert!(unmapped.get("flow").is_none() && unmapped.get("target_host").is_none());

    assert_eq!(fallback["action"], "fallback");
    assert_eq!(fallback["status"], 200);
    assert_eq!(fallback["flow"], "client_credentials");
    assert_eq!(fallback["target_host"], acme::MY_DOMAIN);
    assert_eq!(
        fallback["user_id"],
        acme::USER_ID,
        "from the replayed password login"
    );
    assert_eq!(
        fallback["upstream_error"],
        serde_json::json!({"status": 400, "error": "invalid_grant",
                           "error_description": "no client credentials user enabled"})
    );

    assert_eq!(skipped["action"], "skipped");
    assert_eq!(skipped["reason"], "bad_encoding");
    assert_eq!(skipped["host"], LOGIN_HOST);

    assert_eq!(passed["action"], "passed");
    assert_eq!(passed["grant"], "refresh_token");
    assert_eq!(passed["host"], acme::MY_DOMAIN);
    assert_eq!(passed["status"], 400);
}

#[tokio::test]
async fn event_line_is_on_disk_when_the_subscription_delivers_it() {
    let proxy = TestProxy::start(&acme_mapping()).await;
    for n in 1..=3 {
        proxy.login(LOGIN_HOST, &acme_password_form()).await;
        let event = proxy.next_event().await;
        let lines = proxy.events_in_file();
        assert_eq!(lines.len(), n);
        assert_eq!(lines.last(), Some(&event));
    }
}

#[tokio::test]
async fn events_file_is_appended_to_across_a_restart() {
    let proxy = TestProxy::start(&acme_mapping()).await;
    proxy.login(LOGIN_HOST, &acme_password_form()).await;
    let first = proxy.next_event().await;
    let proxy = proxy.restart().await;
    proxy.login(acme::MY_DOMAIN, &acme_password_form()).await;
    let second = proxy.next_event().await;
    assert_eq!(proxy.events_in_file(), vec![first, second]);
}

#[tokio::test]
async fn events_file_can_be_disabled() {
    let proxy = TestProxy::builder()
        .events("")
        .extra_toml(&acme_mapping())
        .start()
        .await;
    assert_eq!(
        proxy.login(LOGIN_HOST, &acme_password_form()).await.status,
        200
    );
    // The event was processed (subscribers still see it) and nothing was written.
    assert_eq!(proxy.next_event().await["action"], "upgraded");
    assert!(!proxy.events_path().exists());
    let stray: Vec<_> = std::fs::read_dir(proxy.dir())
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".jsonl"))
        .collect();
    assert!(stray.is_empty(), "no events file: {stray:?}");
}

/// A login as python-requests (simple-salesforce) sends it: it accepts gzip.
async fn login_accepting_gzip(proxy: &TestProxy, body: &str) -> Reply {
    let mut conn = proxy.intercepted(LOGIN_HOST, Http::H1).await;
    let req = conn
        .request(http::Method::POST, LOGIN_HOST, TOKEN_PATH)
        .header("content-type", "application/x-www-form-urlencoded")
        .header("accept-encoding", "gzip, deflate")
        .body(full(body.to_string()))
        .unwrap();
    conn.send(req).await
}

#[tokio::test]
async fn observed_event_learns_org_user_and_instance_url_from_a_gzip_encoded_response() {
    let toml = rollout_toml("*", "observe", 100, true);
    let proxy = TestProxy::start(&toml).await;
    let reply = login_accepting_gzip(&proxy, &acme_password_form()).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-encoding"), Some("gzip"));
    let up = &proxy.sf.token_requests()[0];
    assert_eq!(
        Some(&reply.body[..]),
        up.response_body.as_deref(),
        "the client gets Salesforce's compressed bytes"
    );
    let event = proxy.next_event().await;
    assert_eq!(event["action"], "observed");
    assert_eq!(event["org_id"], acme::ORG_ID, "{event}");
    assert_eq!(event["user_id"], acme::USER_ID, "{event}");
    assert_eq!(
        event["instance_url"], "https://acme.my.salesforce.com",
        "{event}"
    );
}

#[tokio::test]
async fn fallback_event_carries_salesforces_error_from_a_gzip_encoded_refusal() {
    let proxy = TestProxy::start(&acme_mapping()).await;
    proxy
        .sf
        .edit(|w| w.org_mut(acme::ORG_ID).app_mut(acme::CLIENT_ID).run_as_user = None);
    let reply = login_accepting_gzip(&proxy, &acme_password_form()).await;
    assert_eq!(reply.status, 200);
    let event = proxy.next_event().await;
    assert_eq!(event["action"], "fallback");
    assert_eq!(
        event["upstream_error"],
        serde_json::json!({"status": 400, "error": "invalid_grant",
                           "error_description": "no client credentials user enabled"}),
        "what to fix, as Salesforce said it"
    );
    assert_eq!(event["user_id"], acme::USER_ID, "{event}");
}

/// Events queued for a stalled writer at most (`telemetry.events_max_queued` in the test).
const MAX_QUEUED: usize = 20;
/// Logins sent while the writer is stalled: more than the queue holds.
const STALLED_LOGINS: usize = MAX_QUEUED + 15;

#[tokio::test]
async fn a_stalled_events_writer_drops_events_over_the_bound_and_never_holds_up_a_login() {
    let mut proxy = TestProxy::builder()
        .telemetry(&format!("events_max_queued = {MAX_QUEUED}"))
        .extra_toml(&acme_mapping())
        .start()
        .await;
    let admin = proxy.admin_addr();
    // The writer moves to a FIFO nobody reads: it blocks opening it, as on a hung disk.
    let fifo = testkit::faults::StalledFile::create(&proxy.dir().join("stalled.fifo"));
    proxy.reload(proxy.builder_used().clone().events("stalled.fifo"));

    for n in 0..STALLED_LOGINS {
        // Each exchange runs to the connection's close (within the harness's timeout), so its
        // event has been handed to the writer's queue, or dropped, when it returns.
        let (status, body) = proxy
            .token_request_then_close(LOGIN_HOST, &acme_password_form())
            .await;
        assert_eq!(status, 200, "login {n} while the writer is stalled: {body}");
    }
    let dropped = testkit::admin::scrape(admin)
        .await
        .value("grantshift_events_dropped_total", &[])
        .expect("grantshift_events_dropped_total") as usize;
    assert!(
        dropped > 0 && dropped <= STALLED_LOGINS - MAX_QUEUED,
        "{dropped} of {STALLED_LOGINS} events dropped with room for {MAX_QUEUED}"
    );

    // Unblocked: the writer writes what was queued, then (the next reload) moves on and
    // closes the FIFO, which ends the read.
    proxy.reload(proxy.builder_used().clone().events("after.jsonl"));
    let written = fifo.read_to_end(20).await;
    let lines: Vec<Value> = written
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(lines.iter().all(|e| e["action"] == "upgraded"), "{written}");
    assert_eq!(
        lines.len() + dropped,
        STALLED_LOGINS,
        "every login's event is either written or counted as dropped"
    );
    assert!(
        lines.len() >= MAX_QUEUED,
        "the queue held {MAX_QUEUED}: {} written",
        lines.len()
    );

    // The writer is back: the next login's event reaches the new file (the subscription
    // delivers the written ones first, in order).
    for _ in 0..lines.len() {
        proxy.next_event().await;
    }
    let (status, _) = proxy
        .token_request_then_close(LOGIN_HOST, &acme_password_form())
        .await;
    assert_eq!(status, 200);
    assert_eq!(proxy.next_event().await["action"], "upgraded");
    assert_eq!(read_events(&proxy.dir().join("after.jsonl")).len(), 1);
}
