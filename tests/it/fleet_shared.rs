//! A real fleet with shared state (docs/fleet.md): two `grantshift` binaries behind Debian's
//! HAProxy in TCP mode, on one real `redis-server` (`[cluster]`), one CA and one fake
//! Salesforce. Through HAProxy, 2,000 logins from 50 credential sets are counted once each in
//! one fleet report that both replicas, `report --cluster` and the events files agree on,
//! with one upstream login per token-cache key; a verifier learned through one replica is
//! enforced by the other; with `redis-server` stopped mid-run no login fails, the metrics
//! say so, and sharing resumes once it is back.

use crate::GRANTSHIFT;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use testkit::admin::{
    counted_logins, report_cli_json, report_cluster_json, report_sets, scrape, wait_reports_agree,
};
use testkit::fleet::{Fleet, LoginLoad, REPLICA_NAMES};
use testkit::redis::{wait_cluster_up, RedisServer};
use testkit::salesforce::{acme, form_pairs, App};
use testkit::*;

/// The credential sets of the 2,000-login run, and how each logs in.
const SETS: usize = 50;
const LOGINS_PER_SET: usize = 40;
/// Each set's client opens a new connection (a new CONNECT through HAProxy, so perhaps
/// another replica) every this many logins.
const LOGINS_PER_CONNECTION: usize = 5;

/// Credential set `i`: its own connected app in acme's org (client credentials, the acme
/// Run As user) and its own integration user, mapped to acme's My Domain.
struct FleetSet {
    client_id: String,
    client_secret: String,
    username: String,
    password: String,
}

impl FleetSet {
    fn new(i: usize) -> FleetSet {
        FleetSet {
            client_id: format!("3MVGfleetApp{i:02}"),
            client_secret: format!("fleet-secret-{i:02}"),
            username: format!("fleet{i:02}@acme.com"),
            password: format!("fleet-pw-{i:02}"),
        }
    }

    fn form(&self) -> String {
        password_form(
            &self.client_id,
            &self.client_secret,
            &self.username,
            &self.password,
        )
    }
}

/// The sets' apps and users in the fake, and their `[[credentials]]` entries.
fn add_sets(up: &Upstreams, sets: &[FleetSet]) -> String {
    up.sf.edit(|world| {
        let org = world.org_mut(acme::ORG_ID);
        for s in sets {
            let mut app = App::new(&s.client_id, &s.client_secret);
            app.run_as_user = Some(acme::RUN_AS_USERNAME.into());
            org.apps.push(app);
            org.add_user(&s.username, &s.password);
        }
    });
    sets.iter()
        .map(|s| credentials_toml(&s.username, acme::MY_DOMAIN))
        .collect()
}

/// Client-credentials logins at acme's My Domain the fake saw, per client_id.
fn upstream_logins_per_app(sf: &FakeSalesforce) -> BTreeMap<String, usize> {
    let mut per_app = BTreeMap::new();
    for r in sf.token_requests() {
        let pairs = form_pairs(&r.body);
        let param = |name: &str| {
            pairs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        };
        if r.host_name() == Some(acme::MY_DOMAIN)
            && param("grant_type").as_deref() == Some("client_credentials")
        {
            *per_app
                .entry(param("client_id").unwrap_or_default())
                .or_insert(0) += 1;
        }
    }
    per_app
}

/// A metric of replica `admin`, every label set summed (0 when absent).
async fn metric_sum(admin: std::net::SocketAddr, name: &str) -> f64 {
    scrape(admin).await.series(name).values().sum()
}

/// SIGTERM every replica (each exits 0, its events file complete), then `report --events`
/// over all the files.
async fn stop_and_report_files(fleet: &mut Fleet) -> BTreeMap<String, Value> {
    let mut files = Vec::new();
    for i in 0..fleet.replicas().len() {
        let r = fleet.replica_mut(i);
        r.proxy.stop().await;
        files.push(r.proxy.events_path());
    }
    let paths: Vec<&std::path::Path> = files.iter().map(|p| p.as_path()).collect();
    report_sets(&report_cli_json(GRANTSHIFT, fleet.replica(0).proxy.dir(), &paths).await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_logins_from_fifty_sets_make_one_fleet_report_and_one_login_per_key() {
    let redis = RedisServer::start();
    let up = Upstreams::start().await;
    let sets: Vec<FleetSet> = (0..SETS).map(FleetSet::new).collect();
    let builder = TestProxy::builder().extra_toml(&add_sets(&up, &sets));
    let fleet = Arc::new(
        Fleet::start_on_redis(GRANTSHIFT, &up, &builder, &REPLICA_NAMES, &redis.url()).await,
    );

    // One client per set, all at once; each sends its 40 logins on 8 connections in turn.
    let mut tasks = Vec::new();
    for set in &sets {
        let (fleet, body) = (fleet.clone(), set.form());
        tasks.push(tokio::spawn(async move {
            let mut results = Vec::new();
            for _ in 0..LOGINS_PER_SET / LOGINS_PER_CONNECTION {
                let bodies = vec![body.clone(); LOGINS_PER_CONNECTION];
                results.extend(fleet.try_logins(LOGIN_HOST, &bodies).await);
            }
            results
        }));
    }
    let mut results = Vec::new();
    for t in tasks {
        results.extend(within(300, "2,000 logins", t).await.expect("join"));
    }
    assert_eq!(results.len(), SETS * LOGINS_PER_SET);
    let failed: Vec<_> = results.iter().filter(|r| *r != &Ok(200)).collect();
    assert!(failed.is_empty(), "every login succeeds: {failed:?}");

    // The token cache: one upstream login per key (here one key per app) for the fleet.
    let per_app = upstream_logins_per_app(&up.sf);
    assert_eq!(
        per_app.len(),
        SETS,
        "every set's app logged in: {per_app:?}"
    );
    assert!(
        per_app.values().all(|n| *n == 1),
        "one upstream login per key for the fleet: {per_app:?}"
    );
    // Both replicas served logins (HAProxy spread the 400 connections).
    let mut served = Vec::new();
    for i in 0..2 {
        served.push(fleet.token_requests(i).await);
    }
    let sessions: Vec<u64> = fleet
        .lb
        .servers()
        .iter()
        .map(|s| s.sessions_total)
        .collect();
    println!("fleet 2000: token requests per replica {served:?}, HAProxy sessions {sessions:?}");
    assert!(served.iter().all(|n| *n > 0.0), "{served:?}");
    assert_eq!(served.iter().sum::<f64>(), (SETS * LOGINS_PER_SET) as f64);

    // One report, the same on both replicas: 50 sets, each login counted once.
    let admins: Vec<_> = (0..2).map(|i| fleet.admin(i)).collect();
    let live = wait_reports_agree(&admins, 60, |sets| {
        counted_logins(sets) == (SETS * LOGINS_PER_SET) as u64
    })
    .await;
    assert_eq!(live.len(), SETS, "{live:#?}");
    for (set, counts) in &live {
        assert_eq!(
            counts,
            &serde_json::json!({ "upgraded": LOGINS_PER_SET }),
            "{set}"
        );
    }
    let replica0 = fleet.replica(0);
    let cluster = report_sets(
        &report_cluster_json(
            GRANTSHIFT,
            replica0.proxy.dir(),
            &replica0.proxy.config_path(),
        )
        .await,
    );
    assert_eq!(cluster, live, "report --cluster");

    // The events files are each replica's record, and rebuild the same report.
    let mut fleet = Arc::try_unwrap(fleet)
        .ok()
        .expect("no task holds the fleet");
    let files = stop_and_report_files(&mut fleet).await;
    assert_eq!(files, live, "report --events a --events b");
    let mut per_file = Vec::new();
    for r in fleet.replicas() {
        let events = r.proxy.events_in_file();
        assert!(
            events.iter().all(|e| e["replica"] == r.name.as_str()),
            "{} names itself in each event",
            r.name
        );
        per_file.push(events.len());
    }
    println!("fleet 2000: events per replica file {per_file:?}");
    assert_eq!(per_file.iter().sum::<usize>(), SETS * LOGINS_PER_SET);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verifier_learned_through_replica_a_is_enforced_by_replica_b() {
    let redis = RedisServer::start();
    let up = Upstreams::start().await;
    // A JWT entry: it upgrades only a password that matches the set's verifier.
    let entry = jwt_credentials_toml(acme::USERNAME, Some(acme::MY_DOMAIN), "jwt-app.pkcs8.pem");
    let builder = TestProxy::builder()
        .token_cache_off()
        .extra_toml(&(rollout_toml("*", "observe", 100, true) + &entry));
    let mut fleet =
        Fleet::start_on_redis(GRANTSHIFT, &up, &builder, &REPLICA_NAMES, &redis.url()).await;

    // Observing: one login through replica A teaches it the password; it shares it.
    let reply = fleet
        .replica(0)
        .proxy
        .login(LOGIN_HOST, &acme_password_form())
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    fleet
        .replica(0)
        .proxy
        .bin
        .wait_for_json_logs("learned the password verifier of a credential set", 1)
        .await;
    within(20, "the verifier in Redis", async {
        while redis.keys("grantshift:verifiers").is_empty() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;

    // The operator switches the fleet to upgrade: the same file change and SIGHUP on each.
    for r in fleet.replicas() {
        let path = r.proxy.config_path();
        let text = std::fs::read_to_string(&path).expect("config");
        assert!(text.contains("mode = \"observe\""), "{text}");
        std::fs::write(
            &path,
            text.replace("mode = \"observe\"", "mode = \"upgrade\""),
        )
        .expect("write config");
        r.proxy.bin.signal("HUP");
        r.proxy.bin.wait_for_json_logs("config reloaded", 1).await;
    }

    // Replica B never saw this set's password: a wrong one goes to Salesforce as sent...
    let b = &fleet.replica(1).proxy;
    let wrong = acme_login("pw-SECRET-wrong-5c1e");
    let reply = b.login(LOGIN_HOST, &wrong).await;
    assert_eq!(reply.status, 400, "Salesforce judged it: {}", reply.text());
    // ...and the right one is upgraded to the JWT bearer flow.
    let reply = b.login(LOGIN_HOST, &acme_password_form()).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let jwt_logins = up
        .sf
        .token_requests()
        .iter()
        .filter(|r| {
            form_pairs(&r.body).iter().any(|(k, v)| {
                k == "grant_type" && v == "urn:ietf:params:oauth:grant-type:jwt-bearer"
            })
        })
        .count();
    assert_eq!(jwt_logins, 1, "one upgraded login, B's");

    let b = &mut fleet.replica_mut(1).proxy;
    b.stop().await;
    let events = b.events_in_file();
    let reasons: Vec<(&Value, &Value, &Value)> = events
        .iter()
        .map(|e| (&e["action"], &e["reason"], &e["password_check"]))
        .collect();
    assert_eq!(events.len(), 2, "{events:#?}");
    assert_eq!(
        (&events[0]["action"], &events[0]["reason"]),
        (&Value::from("skipped"), &Value::from("password_mismatch")),
        "{reasons:?}"
    );
    assert_eq!(
        (&events[1]["action"], &events[1]["password_check"]),
        (&Value::from("upgraded"), &Value::from("verified")),
        "{reasons:?}"
    );
    assert!(events.iter().all(|e| e["replica"] == "gs-b"), "{events:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_server_stopped_mid_run_no_login_fails_and_sharing_resumes_after() {
    let mut redis = RedisServer::start();
    let up = Upstreams::start().await;
    let builder = TestProxy::builder().extra_toml(&acme_mapping());
    let fleet = Arc::new(
        Fleet::start_on_redis(GRANTSHIFT, &up, &builder, &REPLICA_NAMES, &redis.url()).await,
    );
    let form = acme_password_form();
    // Logins through HAProxy from four clients, two per connection, until told to stop.
    let load = LoginLoad::start(&fleet, 4, 2, LOGIN_HOST, &form);
    load.wait_done(40, "40 logins with Redis up").await;

    redis.stop();
    for i in 0..2 {
        wait_cluster_up(fleet.admin(i), false).await;
    }
    let at_down = load.done();
    load.wait_done(at_down + 40, "40 logins with Redis down")
        .await;
    let mut errors_while_down = Vec::new();
    for i in 0..2 {
        errors_while_down.push(metric_sum(fleet.admin(i), "grantshift_cluster_errors_total").await);
    }

    redis.restart();
    for i in 0..2 {
        wait_cluster_up(fleet.admin(i), true).await;
    }
    let at_up = load.done();
    load.wait_done(at_up + 40, "40 logins with Redis back")
        .await;
    let results: Vec<Result<u16, String>> =
        load.finish().await.into_iter().map(|o| o.result).collect();
    let failed: Vec<_> = results.iter().filter(|r| *r != &Ok(200)).collect();
    println!(
        "fleet redis stop: {} logins ({at_down} before the stop, {} while down), {} failed; \
         cluster errors per replica while down {errors_while_down:?}; upstream logins {:?}",
        results.len(),
        at_up - at_down,
        failed.len(),
        upstream_logins_per_app(&up.sf),
    );
    assert!(failed.is_empty(), "no login fails: {failed:?}");
    assert!(
        errors_while_down.iter().all(|n| *n > 0.0),
        "each replica's metrics show the failed Redis calls: {errors_while_down:?}"
    );
    // Per key, at most one login while Redis was up before, one per replica while it was
    // down, and one after (the emptied Redis no longer holds the session each replica had).
    let logins = upstream_logins_per_app(&up.sf)[acme::CLIENT_ID];
    assert!((1..=4).contains(&logins), "{logins} upstream logins");

    // Shared again: a session one replica gets (a new key: another `format`) is the other's.
    let json = form.clone() + "&format=json";
    let first = fleet.replica(0).proxy.login(LOGIN_HOST, &json).await;
    assert_eq!(first.status, 200, "{}", first.text());
    within(20, "the new session in Redis", async {
        while redis.keys("grantshift:tc:*").is_empty() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    let second = fleet.replica(1).proxy.login(LOGIN_HOST, &json).await;
    assert_eq!(second.body, first.body, "served from the fleet's cache");
    assert_eq!(
        upstream_logins_per_app(&up.sf)[acme::CLIENT_ID],
        logins + 1,
        "one upstream login for the new key"
    );

    // The report: what each replica kept while Redis was down reached the fleet's; both
    // agree with each other and with the events files.
    let total = (results.len() + 2) as u64;
    let admins: Vec<_> = (0..2).map(|i| fleet.admin(i)).collect();
    let live = wait_reports_agree(&admins, 60, |sets| counted_logins(sets) == total).await;
    for i in 0..2 {
        let m = scrape(fleet.admin(i)).await;
        let waiting = m.value("grantshift_cluster_events_waiting", &[]);
        assert_eq!(waiting, Some(0.0), "replica {i} sent what it kept");
        // The restarted Redis was empty: each replica found its stream gone, once, and added
        // its latest events again (those the other had not read yet would be lost otherwise).
        let resets = m.value("grantshift_cluster_stream_resets_total", &[]);
        assert_eq!(resets, Some(1.0), "replica {i}");
    }
    let mut fleet = Arc::try_unwrap(fleet)
        .ok()
        .expect("no task holds the fleet");
    assert_eq!(stop_and_report_files(&mut fleet).await, live);
}
