//! Two `grantshift` binaries behind a real HAProxy in TCP mode, health-checked on their
//! `/readyz` (testkit's [`Fleet`], as `docker compose --profile fleet` deploys it): logins
//! spread over both replicas; a replica killed mid-run is marked DOWN and every login started
//! after that succeeds on the other; a replica whose `/readyz` is not 200 is taken out (and
//! put back when it answers 200 again) while its process still runs. The kill runs on a fleet
//! with shared state (a real `redis-server`, `[cluster]`); the others need none: each replica
//! keeps its own. What the shared state does is `fleet_shared`'s.

use crate::GRANTSHIFT;
use std::sync::Arc;
use std::time::{Duration, Instant};
use testkit::fleet::{Fleet, LoginLoad, Outcome, REPLICA_NAMES};
use testkit::*;

/// How long HAProxy may take to mark a dead or unready replica DOWN (checks every 500 ms,
/// `fall 2`: about a second; generous for a loaded machine).
const DOWN_DEADLINE: Duration = Duration::from_secs(15);

async fn start_fleet(up: &Upstreams, builder: TestProxyBuilder) -> Fleet {
    Fleet::start(
        GRANTSHIFT,
        up,
        &builder.extra_toml(&acme_mapping()),
        &REPLICA_NAMES,
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logins_through_haproxy_reach_both_replicas_and_all_succeed() {
    let up = Upstreams::start().await;
    let fleet = start_fleet(&up, TestProxy::builder()).await;
    let form = acme_password_form();
    // 100 logins, each on a new connection, four at a time.
    let fleet_arc = Arc::new(fleet);
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let fleet = fleet_arc.clone();
        let form = form.clone();
        tasks.push(tokio::spawn(async move {
            let mut results = Vec::new();
            for _ in 0..25 {
                results.push(fleet.try_login(LOGIN_HOST, &form).await);
            }
            results
        }));
    }
    let mut results = Vec::new();
    for t in tasks {
        results.extend(within(120, "100 logins", t).await.expect("join"));
    }
    assert_eq!(results.len(), 100);
    let failed: Vec<_> = results.iter().filter(|r| *r != &Ok(200)).collect();
    assert!(failed.is_empty(), "every login succeeds: {failed:?}");

    // Each replica counted some, and together all of them.
    let mut per_replica = Vec::new();
    for i in 0..2 {
        per_replica.push(fleet_arc.token_requests(i).await);
    }
    println!("token requests per replica (metrics): {per_replica:?}");
    assert!(
        per_replica.iter().all(|n| *n > 0.0),
        "both replicas served logins: {per_replica:?}"
    );
    assert_eq!(per_replica.iter().sum::<f64>(), 100.0, "{per_replica:?}");
    let sessions: Vec<u64> = fleet_arc
        .lb
        .servers()
        .iter()
        .map(|s| s.sessions_total)
        .collect();
    println!("HAProxy sessions per server: {sessions:?}");
    assert!(sessions.iter().all(|n| *n > 0), "{sessions:?}");

    // The events files are each replica's record: after a clean stop, one line per login.
    let mut fleet = Arc::try_unwrap(fleet_arc)
        .ok()
        .expect("no task holds the fleet");
    let mut events = Vec::new();
    for i in 0..2 {
        let r = fleet.replica_mut(i);
        r.proxy.stop().await;
        let e = r.proxy.events_in_file();
        assert!(!e.is_empty(), "{} wrote events", r.name);
        assert!(
            e.iter().all(|e| e["status"] == 200),
            "{}: every event a success: {e:#?}",
            r.name
        );
        events.push(e.len());
    }
    println!("events per replica: {events:?}");
    assert_eq!(events.iter().sum::<usize>(), 100, "{events:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_killed_mid_run_is_marked_down_and_every_later_login_succeeds() {
    let redis = testkit::redis::RedisServer::start();
    let up = Upstreams::start().await;
    let fleet = Arc::new(
        Fleet::start_on_redis(
            GRANTSHIFT,
            &up,
            &TestProxy::builder().extra_toml(&acme_mapping()),
            &REPLICA_NAMES,
            &redis.url(),
        )
        .await,
    );
    let form = acme_password_form();
    // Logins from four tasks, each on a new connection, until told to stop.
    let load = LoginLoad::start(&fleet, 4, 1, LOGIN_HOST, &form);
    load.wait_done(40, "40 logins before the kill").await;

    // SIGKILL replica b while the logins run (reaped below, once the tasks are done).
    let (victim, victim_name) = (1, REPLICA_NAMES[1]);
    let killed_at = Instant::now();
    fleet.replica(victim).proxy.bin.signal("KILL");
    let down_row = fleet.lb.wait_down(victim_name, DOWN_DEADLINE).await;
    let down_at = Instant::now();
    let sessions_at_down = fleet.lb.server(victim_name).sessions_total;
    let after_down = load.done();
    // 64: up to four of the next completions started before the mark.
    load.wait_done(after_down + 64, "60 logins started after the DOWN mark")
        .await;
    let outcomes = load.finish().await;

    let mut f = Arc::try_unwrap(fleet)
        .ok()
        .expect("no task holds the fleet");
    let status = f.replica_mut(victim).proxy.bin.wait().await;
    assert_eq!(status.code(), None, "killed by a signal: {status:?}");
    let failed_before_kill = outcomes
        .iter()
        .filter(|o| o.started < killed_at && o.result != Ok(200))
        .count();
    let started_between: Vec<&Outcome> = outcomes
        .iter()
        .filter(|o| o.started >= killed_at && o.started < down_at)
        .collect();
    let failed_between = started_between
        .iter()
        .filter(|o| o.result != Ok(200))
        .count();
    let after: Vec<&Outcome> = outcomes.iter().filter(|o| o.started >= down_at).collect();
    let mut errors: Vec<&str> = outcomes
        .iter()
        .filter_map(|o| o.result.as_ref().err().map(String::as_str))
        .collect();
    errors.sort();
    errors.dedup();
    println!(
        "fleet kill: {} logins; HAProxy marked {victim_name} DOWN {:?} after SIGKILL ({down_row:?}); \
         failed: {failed_before_kill} started before the kill (in flight), {failed_between} of {} \
         started between kill and DOWN; {} started after DOWN; distinct errors: {errors:?}",
        outcomes.len(),
        down_at - killed_at,
        started_between.len(),
        after.len(),
    );
    let late_failures: Vec<&Result<u16, String>> = after
        .iter()
        .map(|o| &o.result)
        .filter(|r| **r != Ok(200))
        .collect();
    assert!(
        late_failures.is_empty(),
        "every login started after the DOWN mark succeeds: {late_failures:?}"
    );
    assert!(after.len() >= 60, "{} logins after DOWN", after.len());
    assert_eq!(
        f.lb.server(victim_name).sessions_total,
        sessions_at_down,
        "HAProxy sent no connection to {victim_name} after marking it DOWN"
    );
    assert_ne!(down_row.check_status, "L7OK", "{down_row:?}");
    // The survivor served every login after the DOWN mark.
    assert!(
        f.token_requests(0).await >= after.len() as f64,
        "replica a counted the logins after the DOWN mark"
    );
}

/// grantshift's admin server stops accepting when shutdown begins, so a draining replica's
/// `/readyz` is refused rather than answered 503 (HAProxy marks it DOWN either way, `L4CON`,
/// as the kill test shows). To see HAProxy act on the *answer*, replica b's check goes to a
/// stand-in `/readyz` the test sets to 503 while replica b itself keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_whose_readyz_is_not_200_is_taken_out_and_back_when_it_is_again() {
    let up = Upstreams::start().await;
    let readyz = testkit::haproxy::ReadyzStub::start().await;
    let fleet = Fleet::start_with_checks(
        GRANTSHIFT,
        &up,
        &TestProxy::builder().extra_toml(&acme_mapping()),
        &REPLICA_NAMES,
        &[None, Some(readyz.addr())],
    )
    .await;
    let (victim, victim_name) = (1, REPLICA_NAMES[1]);
    let form = acme_password_form();

    readyz.set_status(503);
    let began = Instant::now();
    let row = fleet.lb.wait_down(victim_name, DOWN_DEADLINE).await;
    println!(
        "readyz: HAProxy marked {victim_name} DOWN {:?} after its /readyz turned 503: {row:?}",
        began.elapsed()
    );
    // Taken out for its HTTP answer (layer 7), not for a refused connection.
    assert_eq!(
        (row.check_status.as_str(), row.check_code.as_str()),
        ("L7STS", "503"),
        "{row:?}"
    );
    // Replica b still serves a client that reaches it directly; HAProxy sends it nothing.
    let direct = fleet.replica(victim).proxy.login(LOGIN_HOST, &form).await;
    assert_eq!(direct.status, 200, "{}", direct.text());
    let sessions = fleet.lb.server(victim_name).sessions_total;
    let before = fleet.token_requests(0).await;
    for _ in 0..20 {
        assert_eq!(fleet.try_login(LOGIN_HOST, &form).await, Ok(200));
    }
    assert_eq!(
        fleet.token_requests(0).await - before,
        20.0,
        "all on replica a"
    );
    assert_eq!(fleet.lb.server(victim_name).sessions_total, sessions);

    // Ready again: back in after `rise 2` passed checks, and logins reach it again.
    readyz.set_status(200);
    fleet
        .lb
        .wait_server(victim_name, "UP again", DOWN_DEADLINE, |r| r.status == "UP")
        .await;
    let before_b = fleet.token_requests(victim).await;
    for _ in 0..10 {
        assert_eq!(fleet.try_login(LOGIN_HOST, &form).await, Ok(200));
    }
    assert!(
        fleet.token_requests(victim).await > before_b,
        "replica b takes logins again"
    );
}
