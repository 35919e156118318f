//! The admin page (`GET /` on the admin server) in a real browser: Debian's headless
//! Chromium loads it with no console message and no failed request, and shows one row per
//! credential set with its verdict, the rollout rules and the mappings — with JavaScript on
//! and off. A screenshot is kept in the target directory for a human look.
//!
//! Needs `chromium` (`./scripts/test` installs it); without it these tests fail, they never skip.

use serde_json::Value;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use testkit::admin::live_report;
use testkit::salesforce::App;
use testkit::*;

const NO_RUN_AS_APP: &str = "3MVG9acmeNoRunAsApp.consumerKey";
const NO_RUN_AS_SECRET: &str = "cs-SECRET-norunas-3c1e";

/// One Chromium at a time (each is a few hundred MB; the machine has two cores).
static CHROMIUM: Mutex<()> = Mutex::new(());

/// The rows the page must show: (verdict, client_id, username).
const ROWS: &[(&str, &str, &str)] = &[
    ("needs-run-as-user", NO_RUN_AS_APP, acme::USERNAME),
    ("failing", acme::CLIENT_ID, acme::PLUS_USERNAME),
    ("ready", acme::CLIENT_ID, acme::USERNAME),
    ("upgraded", acme_qa::CLIENT_ID, acme_qa::USERNAME),
];

/// A proxy whose report has a row per verdict in [`ROWS`], made by real logins.
async fn proxy_with_report_rows() -> TestProxy {
    let proxy = TestProxy::builder()
        .extra_toml(&rollout_toml(LOGIN_HOST, "observe", 100, true))
        .extra_toml(&rollout_toml("*", "upgrade", 50, true))
        .extra_toml(&credentials_toml(acme_qa::USERNAME, acme_qa::MY_DOMAIN))
        .start()
        .await;
    proxy.sf.edit(|w| {
        w.org_mut(acme::ORG_ID)
            .apps
            .push(App::new(NO_RUN_AS_APP, NO_RUN_AS_SECRET));
    });
    // The 50% rule upgrades the two sets that go through it (their stable buckets are 46 and
    // 27); the events below check that.
    let logins = [
        (TEST_HOST, acme_qa_password_form(), "upgraded"),
        (LOGIN_HOST, acme_password_form(), "observed"),
        (
            LOGIN_HOST,
            password_form(
                acme::CLIENT_ID,
                acme::CLIENT_SECRET,
                acme::PLUS_USERNAME,
                "wrong-password",
            ),
            "observed",
        ),
        (
            acme::MY_DOMAIN,
            password_form(
                NO_RUN_AS_APP,
                NO_RUN_AS_SECRET,
                acme::USERNAME,
                acme::PASSWORD,
            ),
            "fallback",
        ),
    ];
    for (host, body, action) in logins {
        proxy.login(host, &body).await;
        let event = proxy.next_event().await;
        assert_eq!(event["action"], action, "{event}");
    }
    // The page shows the same report as /report.
    let report = live_report(proxy.admin_addr()).await;
    for (verdict, client_id, username) in ROWS {
        let row = testkit::admin::report_row(&report, client_id, username);
        assert_eq!(row["verdict"], *verdict, "{row}");
    }
    proxy
}

/// What one headless Chromium run left behind.
struct ChromiumRun {
    dom: String,
    stderr: String,
    netlog: Value,
    dir: tempfile::TempDir,
}

fn chromium_binary() -> PathBuf {
    let debian = Path::new("/usr/bin/chromium");
    if debian.exists() {
        return debian.into();
    }
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|p| p.join("chromium"))
                .find(|p| p.exists())
        })
        .unwrap_or_else(|| {
            panic!(
                "chromium is not installed: the admin-page tests drive Debian's headless chromium; run ./scripts/test (it installs it), or `apt-get install chromium`"
            )
        })
}

/// A page whose script, if it runs, replaces `no-js` with `js-ran`.
const SCRIPT_CONTROL_PAGE: &str = "<!doctype html><html><head><meta charset=\"utf-8\"><link rel=\"icon\" href=\"data:,\"><title>control</title></head><body><p id=\"x\">no-js</p><script>document.getElementById(\"x\").textContent=\"js-ran\"</script></body></html>";

/// Serve [`SCRIPT_CONTROL_PAGE`] to every request on 127.0.0.1; its URL. (Chromium does not
/// load a top-level `data:` URL given on its command line.)
async fn serve_script_control_page() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                // Read the request head (GET, no body), then answer and close.
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    match tokio::io::AsyncReadExt::read(&mut tcp, &mut byte).await {
                        Ok(1) => head.push(byte[0]),
                        _ => return,
                    }
                }
                let response = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{SCRIPT_CONTROL_PAGE}",
                    SCRIPT_CONTROL_PAGE.len()
                );
                let _ = tokio::io::AsyncWriteExt::write_all(&mut tcp, response.as_bytes()).await;
            });
        }
    });
    format!("http://{addr}/")
}

/// Headless Chromium on `url` with a fresh profile, logging console messages to stderr and
/// every network request to a NetLog, with `extra` flags (e.g. `--dump-dom`; `{dir}` in a flag
/// is the run's own directory). Only loopback resolves: the browser cannot reach anything else.
///
/// `javascript: false` blocks JavaScript for every site through the profile's content
/// settings (what Settings → Privacy → JavaScript → "Don't allow" writes). Chromium 148's
/// headless mode loads nothing at all with `--blink-settings=scriptEnabled=false`.
async fn chromium(url: String, extra: Vec<String>, javascript: bool) -> ChromiumRun {
    let binary = chromium_binary();
    let dir = tempfile::tempdir().expect("chromium tempdir");
    let profile = dir.path().join("profile");
    if !javascript {
        std::fs::create_dir_all(profile.join("Default")).unwrap();
        std::fs::write(
            profile.join("Default/Preferences"),
            r#"{"profile":{"default_content_setting_values":{"javascript":2}}}"#,
        )
        .unwrap();
    }
    let netlog = dir.path().join("netlog.json");
    let mut cmd = Command::new("timeout");
    cmd.arg("120")
        .arg(&binary)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-proxy-server",
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--log-net-log={}", netlog.display()))
        .args(
            extra
                .iter()
                .map(|flag| flag.replace("{dir}", &dir.path().display().to_string())),
        )
        .arg(&url)
        .env("HOME", dir.path());
    let out = within(
        150,
        "headless chromium",
        tokio::task::spawn_blocking(move || {
            let _one_at_a_time = CHROMIUM.lock().unwrap_or_else(|e| e.into_inner());
            cmd.output()
        }),
    )
    .await
    .expect("join")
    .unwrap_or_else(|e| panic!("cannot run {}: {e}", binary.display()));
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "chromium {url} exited with {:?}; stderr:\n{stderr}",
        out.status
    );
    let netlog_text = std::fs::read_to_string(&netlog).expect("chromium wrote its NetLog");
    let netlog = serde_json::from_str(&netlog_text)
        .unwrap_or_else(|e| panic!("the NetLog is not JSON ({e})"));
    ChromiumRun {
        dom: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr,
        netlog,
        dir,
    }
}

/// One request the page made, from the NetLog.
#[derive(Debug)]
struct PageRequest {
    url: String,
    status_line: Option<String>,
    net_error: Option<i64>,
}

/// Every request made for the page at `origin` (its main frame and whatever it initiated),
/// with the status line received or the network error.
fn page_requests(netlog: &Value, origin: &str) -> Vec<PageRequest> {
    let types: HashMap<u64, &str> = netlog["constants"]["logEventTypes"]
        .as_object()
        .expect("NetLog constants.logEventTypes")
        .iter()
        .map(|(name, id)| (id.as_u64().unwrap(), name.as_str()))
        .collect();
    let events = netlog["events"].as_array().expect("NetLog events");
    let mut requests: Vec<(u64, PageRequest)> = Vec::new();
    for e in events {
        let params = &e["params"];
        if types.get(&e["type"].as_u64().unwrap_or(u64::MAX)) == Some(&"URL_REQUEST_START_JOB")
            && params["url"].is_string()
            && (params["request_type"] == "main frame" || params["initiator"] == origin)
        {
            requests.push((
                e["source"]["id"].as_u64().unwrap(),
                PageRequest {
                    url: params["url"].as_str().unwrap().into(),
                    status_line: None,
                    net_error: None,
                },
            ));
        }
    }
    for e in events {
        let source = e["source"]["id"].as_u64();
        let Some((_, request)) = requests.iter_mut().find(|(id, _)| Some(*id) == source) else {
            continue;
        };
        let params = &e["params"];
        if types.get(&e["type"].as_u64().unwrap_or(u64::MAX))
            == Some(&"HTTP_TRANSACTION_READ_RESPONSE_HEADERS")
        {
            request.status_line = params["headers"][0].as_str().map(str::to_owned);
        }
        if let Some(code) = params["net_error"].as_i64().filter(|c| *c < 0) {
            request.net_error = Some(code);
        }
    }
    requests.into_iter().map(|(_, r)| r).collect()
}

/// No console message at all (the page has no script), and every request made for the page
/// — the page itself and any resource it pulls in — answered 2xx without a network error.
fn assert_clean_load(run: &ChromiumRun, url: &str, origin: &str) {
    let console: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| {
            l.contains(":CONSOLE")
                || l.contains("Failed to load resource")
                || l.contains("Uncaught")
        })
        .collect();
    assert!(
        console.is_empty(),
        "console messages while loading {url}:\n{}",
        console.join("\n")
    );
    let requests = page_requests(&run.netlog, origin);
    assert!(
        requests.iter().any(|r| r.url == url),
        "the NetLog records the page request {url}: {requests:?}"
    );
    let broken: Vec<&PageRequest> = requests
        .iter()
        .filter(|r| {
            r.net_error.is_some()
                || !r
                    .status_line
                    .as_deref()
                    .and_then(|s| s.split(' ').nth(1))
                    .is_some_and(|code| code.starts_with('2'))
        })
        .collect();
    assert!(
        broken.is_empty(),
        "requests that failed while loading {url}: {broken:?}"
    );
}

/// The part of `dom` from `<table id="{id}"` to its `</table>`.
fn table<'a>(dom: &'a str, id: &str) -> &'a str {
    let start = dom
        .find(&format!("<table id=\"{id}\""))
        .unwrap_or_else(|| panic!("no table #{id} in the page:\n{dom}"));
    let end = dom[start..].find("</table>").expect("table is closed") + start;
    &dom[start..end]
}

/// Table rows of a table fragment, as their text cells.
fn rows(table: &str) -> Vec<Vec<String>> {
    table
        .split("<tr")
        .skip(1)
        .filter(|r| r.contains("<td"))
        .map(|r| {
            r.split("<td")
                .skip(1)
                .map(|cell| {
                    let inner = &cell[cell.find('>').unwrap() + 1..];
                    let inner = &inner[..inner.find("</td>").unwrap_or(inner.len())];
                    strip_tags(inner)
                })
                .collect()
        })
        .collect()
}

fn strip_tags(html: &str) -> String {
    let mut out = String::new();
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => in_tag = true,
            '>' => in_tag = false,
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    out.replace("&amp;", "&").trim().to_string()
}

/// The page as rendered shows every credential set with its verdict, the rollout rules and
/// the mapping.
fn assert_page_shows_the_report(dom: &str) {
    assert!(dom.contains("grantshift: migration report"), "{dom}");
    let report = rows(table(dom, "report"));
    assert_eq!(
        report.len(),
        ROWS.len(),
        "one row per credential set:\n{dom}"
    );
    for (verdict, client_id, username) in ROWS {
        assert!(
            report
                .iter()
                .any(|cells| cells.first().map(String::as_str) == Some(*verdict)
                    && cells.iter().any(|c| c == client_id)
                    && cells.iter().any(|c| c == username)),
            "a {verdict} row for ({client_id}, {username}) in {report:?}"
        );
    }
    // Most urgent first, as in /report.
    let verdicts: Vec<&str> = report.iter().map(|cells| cells[0].as_str()).collect();
    assert_eq!(
        verdicts,
        ROWS.iter().map(|r| r.0).collect::<Vec<_>>(),
        "row order"
    );

    let rollout = rows(table(dom, "rollout"));
    assert_eq!(
        rollout,
        vec![
            vec!["1", LOGIN_HOST, "observe", "100%", "on"],
            vec!["2", "*", "upgrade", "50%", "on"],
        ],
        "the rollout rules, in order"
    );
    let mappings = rows(table(dom, "credentials"));
    assert_eq!(
        mappings,
        vec![vec![
            acme_qa::USERNAME,
            acme_qa::MY_DOMAIN,
            "client_credentials",
            "any",
            "if_known"
        ]],
        "the mappings"
    );
}

fn page_url(proxy: &TestProxy) -> (String, String) {
    let origin = format!("http://{}", proxy.admin_addr());
    (format!("{origin}/"), origin)
}

#[tokio::test]
async fn admin_page_loads_in_chromium_without_console_errors_and_shows_the_report() {
    let proxy = proxy_with_report_rows().await;
    let (url, origin) = page_url(&proxy);
    let run = chromium(url.clone(), vec!["--dump-dom".into()], true).await;
    assert_clean_load(&run, &url, &origin);
    assert_page_shows_the_report(&run.dom);
}

#[tokio::test]
async fn admin_page_shows_the_report_with_javascript_disabled() {
    let proxy = proxy_with_report_rows().await;
    let (url, origin) = page_url(&proxy);
    // Controls: the same browser settings do stop a script, and without them it runs.
    let control_url = serve_script_control_page().await;
    let control = |javascript| {
        let url = control_url.clone();
        async move {
            chromium(url, vec!["--dump-dom".into()], javascript)
                .await
                .dom
        }
    };
    let (off, on) = (control(false).await, control(true).await);
    assert!(off.contains(">no-js<"), "JavaScript is off: {off}");
    assert!(
        on.contains(">js-ran<"),
        "the control page detects JavaScript: {on}"
    );

    let run = chromium(url.clone(), vec!["--dump-dom".into()], false).await;
    assert_clean_load(&run, &url, &origin);
    assert_page_shows_the_report(&run.dom);
}

/// Width and height from a PNG's IHDR chunk.
fn png_size(png: &[u8]) -> (u32, u32) {
    assert!(
        png.len() > 24 && png.starts_with(b"\x89PNG\r\n\x1a\n") && &png[12..16] == b"IHDR",
        "not a PNG"
    );
    let be = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    (be(&png[16..20]), be(&png[20..24]))
}

#[tokio::test]
async fn admin_page_screenshot_is_a_full_window_png_with_content() {
    let proxy = proxy_with_report_rows().await;
    let (url, origin) = page_url(&proxy);
    let blank_run = chromium(
        "about:blank".into(),
        vec![
            "--window-size=1400,900".into(),
            "--screenshot={dir}/blank.png".into(),
        ],
        true,
    )
    .await;
    let run = chromium(
        url.clone(),
        vec![
            "--window-size=1400,900".into(),
            "--screenshot={dir}/page.png".into(),
        ],
        true,
    )
    .await;
    assert_clean_load(&run, &url, &origin);
    let shot = |run: &ChromiumRun, name: &str| {
        let in_dir = run.dir.path().join(name);
        std::fs::read(&in_dir).unwrap_or_else(|e| panic!("{}: {e}", in_dir.display()))
    };
    let (blank, page) = (shot(&blank_run, "blank.png"), shot(&run, "page.png"));
    assert_eq!(png_size(&page), (1400, 900));
    assert_eq!(png_size(&blank), (1400, 900));
    assert!(
        page.len() > 4 * blank.len(),
        "the page is more than an empty window: {} bytes vs {} for about:blank",
        page.len(),
        blank.len()
    );
    // For a human look: target/tmp/admin-page.png.
    let keep = Path::new(env!("CARGO_TARGET_TMPDIR")).join("admin-page.png");
    std::fs::write(&keep, &page).unwrap();
}

// ---------------------------------------------------------------------------------------------
// A migration of 50 integrations: the summary, the trend chart, grouped next steps, the filter.

/// One credential set of the 50: its app, username, and the verdict its real login earns.
struct Set {
    client_id: String,
    secret: String,
    username: String,
    password: String,
    /// Where it logs in: `LOGIN_HOST` (observed) or `acme::MY_DOMAIN` (upgraded in place).
    host: &'static str,
    verdict: &'static str,
}

/// How many sets of each kind: 40 single-user apps and 5 apps with 2 usernames each.
const READY: usize = 28;
const NO_RUN_AS: usize = 4;
const FLOW_OFF: usize = 3;
const UPGRADED: usize = 5;
const SHARED_APPS: usize = 5;
const USERS_PER_SHARED_APP: usize = 2;

/// The 50 sets, with the apps and users they need added to the fake acme org.
fn fifty_sets(world: &mut testkit::salesforce::World) -> Vec<Set> {
    let org = world.org_mut(acme::ORG_ID);
    let mut sets = Vec::new();
    let mut add = |org: &mut testkit::salesforce::Org,
                   kind: &str,
                   n: usize,
                   users: usize,
                   host: &'static str,
                   verdict: &'static str,
                   app: &dyn Fn(&mut App)| {
        let client_id = format!("3MVG9{kind}{n:02}AcmeConnectedAppConsumerKey.qX7Lw2Zp");
        let secret = format!("cs-SECRET-{kind}-{n:02}");
        let mut a = App::new(&client_id, &secret);
        app(&mut a);
        org.apps.push(a);
        for u in 0..users {
            // Some long usernames: the page cuts them with an ellipsis, never mid-word breaks.
            let username = if n % 3 == 0 {
                format!("svc.{kind}-nightly-warehouse-synchronisation-{n:02}-{u}@acme.com")
            } else {
                format!("{kind}{n:02}-{u}@acme.com")
            };
            let password = format!("pw-SECRET-{kind}-{n:02}-{u}");
            org.add_user(&username, &password);
            sets.push(Set {
                client_id: client_id.clone(),
                secret: secret.clone(),
                username,
                password,
                host,
                verdict,
            });
        }
    };
    for n in 0..SHARED_APPS {
        add(
            org,
            "shared",
            n,
            USERS_PER_SHARED_APP,
            LOGIN_HOST,
            "needs-jwt",
            &|_| {},
        );
    }
    for n in 0..NO_RUN_AS {
        add(
            org,
            "norunas",
            n,
            1,
            acme::MY_DOMAIN,
            "needs-run-as-user",
            &|_| {},
        );
    }
    for n in 0..FLOW_OFF {
        add(
            org,
            "flowoff",
            n,
            1,
            acme::MY_DOMAIN,
            "needs-flow-enabled",
            &|a| a.cc_enabled = false,
        );
    }
    for n in 0..READY {
        add(org, "ready", n, 1, LOGIN_HOST, "ready", &|_| {});
    }
    for n in 0..UPGRADED {
        add(org, "upgraded", n, 1, acme::MY_DOMAIN, "upgraded", &|a| {
            a.run_as_user = Some(acme::RUN_AS_USERNAME.into())
        });
    }
    sets
}

/// RFC 3339 UTC as grantshift writes event timestamps.
fn ts(unix: u64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp(unix as i64).unwrap();
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.000000Z",
        t.year(),
        t.month() as u8,
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// An events file from the 36 hours before now, for the same sets (the proxy seeds its report
/// from it, as after a restart): fewer password logins and more upgraded ones as time goes on,
/// so the chart has a shape. Each set's own real login comes after, and decides its verdict.
fn history(sets: &[Set], path: &Path) {
    let now = unix_now();
    let mut lines = String::new();
    for hours_ago in (1..=36u64).rev() {
        let at = ts(now - hours_ago * 3600);
        let progress = 36 - hours_ago as usize;
        let mut line = |set: &Set, action: &str, status: u16| {
            let event = serde_json::json!({
                "ts": at, "client": "127.0.0.1:40000", "host": set.host, "grant": "password",
                "client_id": set.client_id, "username": set.username, "action": action,
                "status": status, "latency_ms": 12.5,
            });
            lines.push_str(&format!("{event}\n"));
        };
        for set in sets.iter().filter(|s| s.verdict == "ready").take(8) {
            line(set, "observed", 200);
        }
        for set in sets
            .iter()
            .filter(|s| s.verdict == "upgraded")
            .take(progress / 7)
        {
            line(set, "upgraded", 200);
        }
        if hours_ago % 4 == 0 {
            let set = sets
                .iter()
                .find(|s| s.verdict == "needs-run-as-user")
                .unwrap();
            line(set, "fallback", 200);
        }
    }
    std::fs::write(path, lines).unwrap();
}

/// A proxy whose report has the 50 sets, each made by a real login (after a seeded history).
async fn proxy_with_fifty_sets() -> (TestProxy, Vec<Set>, tempfile::TempDir) {
    let mut world = testkit::salesforce::World::standard();
    let sets = fifty_sets(&mut world);
    assert_eq!(sets.len(), 50);
    let history_dir = tempfile::tempdir().unwrap();
    let events = history_dir.path().join("events.jsonl");
    history(&sets, &events);
    let proxy = TestProxy::builder()
        .events(events.to_str().unwrap())
        .extra_toml(&rollout_toml(LOGIN_HOST, "observe", 100, true))
        .extra_toml(&rollout_toml(acme::MY_DOMAIN, "upgrade", 100, true))
        .start()
        .await;
    proxy.sf.edit(|w| *w = world.clone());
    for set in &sets {
        let body = password_form(&set.client_id, &set.secret, &set.username, &set.password);
        proxy.login(set.host, &body).await;
        let event = proxy.next_event().await;
        let expected = match set.verdict {
            "upgraded" => "upgraded",
            "needs-run-as-user" | "needs-flow-enabled" => "fallback",
            _ => "observed",
        };
        assert_eq!(event["action"], expected, "{} {event}", set.username);
    }
    let report = live_report(proxy.admin_addr()).await;
    for set in &sets {
        let row = testkit::admin::report_row(&report, &set.client_id, &set.username);
        assert_eq!(row["verdict"], set.verdict, "{row}");
    }
    (proxy, sets, history_dir)
}

/// `id="{id}" … data-sets="N"`: the count a filter link shows.
fn filter_count(dom: &str, verdict: &str) -> Option<u64> {
    let at = dom.find(&format!("id=\"filter-{verdict}\""))?;
    let rest = &dom[at..];
    let start = rest.find("data-sets=\"")? + "data-sets=\"".len();
    rest[start..start + rest[start..].find('"')?].parse().ok()
}

/// The heights of the chart's bars.
fn bar_heights(dom: &str) -> Vec<f64> {
    dom.split("<rect class=\"bar ")
        .skip(1)
        .map(|r| {
            let start = r.find("height=\"").expect("a bar has a height") + "height=\"".len();
            r[start..start + r[start..].find('"').unwrap()]
                .parse()
                .unwrap()
        })
        .collect()
}

/// The target directory's screenshots/, for a human look.
fn screenshots_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("the target directory")
        .join("screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Load `url` at 1400×1000 (the DOM, then a screenshot kept as `name`), both loads clean.
async fn dom_and_screenshot(url: &str, origin: &str, javascript: bool, name: &str) -> String {
    let window = "--window-size=1400,1000".to_string();
    let run = chromium(
        url.into(),
        vec!["--dump-dom".into(), window.clone()],
        javascript,
    )
    .await;
    assert_clean_load(&run, url, origin);
    let shot = chromium(
        url.into(),
        vec![window, "--screenshot={dir}/page.png".into()],
        javascript,
    )
    .await;
    assert_clean_load(&shot, url, origin);
    let png = std::fs::read(shot.dir.path().join("page.png")).expect("the screenshot");
    assert_eq!(png_size(&png), (1400, 1000));
    std::fs::write(screenshots_dir().join(name), &png).unwrap();
    std::fs::write(
        screenshots_dir().join(name).with_extension("html"),
        &run.dom,
    )
    .unwrap();
    run.dom
}

#[tokio::test]
async fn admin_page_with_fifty_sets_summarises_charts_groups_and_filters() {
    let (proxy, sets, _history) = proxy_with_fifty_sets().await;
    let (url, origin) = page_url(&proxy);
    let served = testkit::admin::live_report_with_summary(proxy.admin_addr()).await;
    let summary = &served["summary"];
    let mut expected: Vec<(&str, u64)> = Vec::new();
    for set in &sets {
        match expected.iter_mut().find(|(v, _)| *v == set.verdict) {
            Some((_, n)) => *n += 1,
            None => expected.push((set.verdict, 1)),
        }
    }
    // /report's summary counts what its rows say.
    assert_eq!(summary["sets"], 50, "{summary}");
    for (verdict, n) in &expected {
        let from_rows = served["credentials"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["verdict"] == *verdict)
            .count() as u64;
        assert_eq!(from_rows, *n, "{verdict}");
        let counted = summary["by_verdict"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["verdict"] == *verdict)
            .unwrap_or_else(|| panic!("{verdict} in {summary}"));
        assert_eq!(counted["sets"], *n, "{verdict}: {summary}");
    }
    // 36 hours of history and the real logins: the last 24 hours hold both kinds.
    let last = &summary["last_24h"];
    let (upgraded, all) = (
        last["upgraded"].as_u64().unwrap(),
        last["password_logins"].as_u64().unwrap(),
    );
    assert!(upgraded > 0 && all > upgraded, "{last}");
    let share = last["upgraded_share"].as_f64().unwrap();
    assert!(
        (share - upgraded as f64 / all as f64).abs() < 1e-9,
        "{last}"
    );
    let line = summary["line"].as_str().unwrap();
    assert!(
        line.starts_with("50 credential sets: 10 needs-jwt, 4 needs-run-as-user, 3 needs-flow-enabled, 28 ready, 5 upgraded; last 24 h: "),
        "{line}"
    );

    for (javascript, name) in [(true, "admin-50-js.png"), (false, "admin-50-nojs.png")] {
        let dom = dom_and_screenshot(&url, &origin, javascript, name).await;
        // The header: generated at, version, config, last reload.
        assert!(dom.contains("id=\"generated-at\">20"), "{dom}");
        assert!(dom.contains(&format!("grantshift {}", env!("CARGO_PKG_VERSION"))));
        assert!(
            dom.contains("id=\"last-reload\">none since start<"),
            "{dom}"
        );
        // The summary and its filter links count what /report counts.
        assert!(
            strip_tags(&dom).contains(line),
            "the summary line on the page"
        );
        assert!(
            dom.contains(
                "id=\"filter-all\" class=\"chip current\">all <span class=\"n\">50</span>"
            ),
            "{dom}"
        );
        for (verdict, n) in &expected {
            assert_eq!(filter_count(&dom, verdict), Some(*n), "{verdict}");
        }
        // The chart: server-rendered SVG with bars, an axis and a legend.
        assert!(dom.contains("<svg class=\"trend\""), "{dom}");
        let heights = bar_heights(&dom);
        assert!(
            heights.len() > 30 && heights.iter().all(|h| *h > 0.0),
            "{heights:?}"
        );
        assert!(dom.contains("Password logins per hour (UTC)"), "{dom}");
        assert!(dom.contains("tried, not upgraded (fallback, failed)"));
        // Every set is a row; each hint is said once, per (app, org).
        let report_rows = rows(table(&dom, "report"));
        assert_eq!(report_rows.len(), 50);
        let steps = dom.matches("<li id=\"step-").count();
        assert_eq!(
            steps,
            50 - SHARED_APPS * (USERS_PER_SHARED_APP - 1),
            "{dom}"
        );
        let jwt_hint = served["credentials"][0]["hint"].as_str().unwrap();
        assert!(jwt_hint.starts_with("several usernames"), "{jwt_hint}");
        assert_eq!(
            strip_tags(&dom).matches(jwt_hint).count(),
            1,
            "the needs-jwt hint once"
        );
        assert!(
            !dom.contains("overflow-wrap: anywhere") && !dom.contains("overflow-wrap:anywhere")
        );
    }

    // ?verdict= shows only that verdict's rows and steps.
    let filtered_url = format!("{origin}/?verdict=needs-jwt");
    let dom = dom_and_screenshot(&filtered_url, &origin, false, "admin-50-filtered.png").await;
    let report_rows = rows(table(&dom, "report"));
    assert_eq!(report_rows.len(), 10, "{report_rows:?}");
    assert!(
        report_rows.iter().all(|cells| cells[0] == "needs-jwt"),
        "{report_rows:?}"
    );
    assert_eq!(dom.matches("<li id=\"step-").count(), SHARED_APPS);
    assert!(
        dom.contains("Showing only <b>needs-jwt</b> (10 of 50 sets)"),
        "{dom}"
    );
    assert!(
        dom.contains("id=\"filter-needs-jwt\" class=\"chip needs-jwt current\""),
        "{dom}"
    );
    // An unknown verdict shows everything, and says so; what it quotes is escaped.
    let unknown = testkit::admin::admin_get(proxy.admin_addr(), "/?verdict=%3Cscript%3Ebad").await;
    assert_eq!(unknown.status, 200);
    let text = unknown.text();
    assert!(
        text.contains("There is no verdict “&lt;script&gt;bad”"),
        "{text}"
    );
    assert!(!text.contains("<script>"), "{text}");
    assert_eq!(rows(table(&text, "report")).len(), 50);
}
