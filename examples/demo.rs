//! `cargo run --example demo`: grantshift in front of a fake Salesforce, all on loopback, in
//! one process. It makes one password login through grantshift, shows that grantshift
//! upgraded it to client credentials, then keeps running so you can try your own logins with
//! curl and look at the admin page. Ctrl-C stops it.
//!
//! The fake Salesforce is the one the test suite uses (testkit): the org `acme` with My
//! Domain `acme.my.salesforce.com`, a connected app with client credentials enabled and a Run
//! As user. Its client secret and password are demo values, printed so you can use them.
//!
//! The config the demo writes is a normal grantshift.toml with no `[[rollout]]`: the built-in
//! default, which upgrades a login already sent to a My Domain host in place. Its only
//! demo-specific lines send `acme.my.salesforce.com` to the fake (`[upstream.connect_to]`) and
//! trust the fake's CA (`extra_root_certs`).

use grantshift::config::Config;
use grantshift::Proxy;
use std::net::SocketAddr;
use testkit::salesforce::{acme, TOKEN_PATH};
use testkit::{connect_tunnel, post_form, tls_connect, FakeSalesforce, Http, HttpConn};

/// `preferred` if it is free, else any free loopback port.
fn free_or_any(preferred: &str) -> SocketAddr {
    match std::net::TcpListener::bind(preferred) {
        Ok(l) => l.local_addr().unwrap(),
        Err(_) => {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    testkit::init_crypto();

    let sf = FakeSalesforce::start().await;
    let dir = tempfile::Builder::new()
        .prefix("grantshift-demo-")
        .tempdir()?;
    let (listen, admin) = (free_or_any("127.0.0.1:3128"), free_or_any("127.0.0.1:9464"));
    let ca_pem = dir.path().join("grantshift-ca.pem");
    let events = dir.path().join("events.jsonl");
    let text = format!(
        r#"# Written by `cargo run --example demo`.
[proxy]
listen = "{listen}"
admin_listen = "{admin}"

[ca]
cert = {ca_cert:?}
key = "grantshift-ca.key"

[upstream]
# The fake Salesforce's own CA (a real Salesforce needs none of this).
extra_root_certs = [{sf_ca:?}]

[upstream.connect_to]
# The fake Salesforce answers for acme.my.salesforce.com on loopback.
"acme.my.salesforce.com:443" = "{sf_addr}"

[telemetry]
events = {events:?}
"#,
        ca_cert = ca_pem.display().to_string(),
        sf_ca = sf.ca_pem_path().display().to_string(),
        sf_addr = sf.addr(),
        events = events.display().to_string(),
    );
    let config_path = dir.path().join("grantshift.toml");
    std::fs::write(&config_path, &text)?;
    let config = Config::load(Some(&config_path))?;
    let proxy = Proxy::new(config)?;
    let admin = proxy.start_admin().await?.expect("admin_listen is set");
    let listener = grantshift::server::bind(listen)?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(proxy.serve(listener, async {
        let _ = stop_rx.await;
    }));

    // One login as the integration sends it: a password grant to its My Domain.
    let host = acme::MY_DOMAIN;
    let (status, tcp) = connect_tunnel(listen, &format!("{host}:443")).await;
    anyhow::ensure!(
        status == 200,
        "CONNECT {host}:443 through grantshift: {status}"
    );
    let ca = std::fs::read_to_string(&ca_pem)?;
    let tls = tls_connect(tcp, host, &ca, &[Http::H1.alpn()]).await;
    let mut conn = HttpConn::handshake(tls, Http::H1).await;
    let form = password_form();
    let reply = post_form(&mut conn, host, TOKEN_PATH, &form).await;
    drop(conn);
    let body = reply.json();
    let recorded = sf.token_requests();
    let sent = recorded
        .last()
        .and_then(|r| form_field(&r.body, "grant_type"))
        .unwrap_or_default();

    println!();
    println!("grantshift demo: grantshift in front of a fake Salesforce, on loopback.");
    println!();
    println!("One password login was sent through grantshift to https://{host}{TOKEN_PATH}:");
    println!(
        "  the client sent    grant_type=password, username={}",
        acme::USERNAME
    );
    println!("  grantshift sent    grant_type={sent} (the upgrade)");
    println!(
        "  the client got     {} with an access token (not shown) for the user {}",
        reply.status,
        body["id"].as_str().unwrap_or("?")
    );
    println!(
        "  (a client-credentials session is the connected app's Run As user, {}, not {})",
        acme::RUN_AS_USERNAME,
        acme::USERNAME
    );
    println!();
    println!("Proxy:        http://{listen}");
    println!("Admin page:   http://{admin}/");
    println!("Events file:  {}", events.display());
    println!("Config:       {}", config_path.display());
    println!();
    println!("Try one yourself:");
    println!(
        "  curl -x http://{listen} --cacert {} https://{host}{TOKEN_PATH} {}",
        ca_pem.display(),
        form.split('&')
            .map(|kv| format!("--data '{kv}'"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!();
    println!("Ctrl-C stops the demo.");

    tokio::signal::ctrl_c().await?;
    let _ = stop_tx.send(());
    serving.await??;
    Ok(())
}

fn password_form() -> String {
    testkit::password_form(
        acme::CLIENT_ID,
        acme::CLIENT_SECRET,
        acme::USERNAME,
        acme::PASSWORD,
    )
}

fn form_field(body: &[u8], name: &str) -> Option<String> {
    serde_urlencoded::from_bytes::<Vec<(String, String)>>(body)
        .ok()?
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
}
