//! The proxy front fed raw bytes from a client: request heads, CONNECT, absolute-form
//! requests, garbage, TLS after CONNECT. Nothing may panic or hang. The proxy is sealed:
//! `connect_to_only` means no host is ever resolved, and every mapped upstream is a closed
//! loopback port, so no byte leaves the machine.
#![no_main]

use grantshift::config::Config;
use grantshift::Proxy;
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct World {
    runtime: tokio::runtime::Runtime,
    proxy: Proxy,
    _dir: std::path::PathBuf,
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("grantshift-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let config = Config::from_toml_str(
            r#"
[proxy]
admin_listen = ""
header_read_timeout = "1s"
idle_timeout = "1s"
tunnel_idle_timeout = "1s"
[upstream]
connect_timeout = "1s"
request_timeout = "1s"
connect_to_only = true
[upstream.connect_to]
"login.salesforce.com:443" = "127.0.0.1:9"
"example.com:443" = "127.0.0.1:9"
"plain.test:80" = "127.0.0.1:9"
[telemetry]
events = ""
"#,
            &dir,
        )
        .unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let proxy = runtime.block_on(async { Proxy::new(config) }).unwrap();
        World {
            runtime,
            proxy,
            _dir: dir,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let w = world();
    w.runtime.block_on(async {
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        let serve = w
            .proxy
            .serve_connection(server, "127.0.0.1:40000".parse().unwrap());
        let talk = async {
            let _ = client.write_all(data).await;
            let _ = client.shutdown().await;
            let mut out = Vec::new();
            let _ = client.read_to_end(&mut out).await;
        };
        // Bounded: a connection that neither answers nor closes within the idle timeouts
        // would be a hang, which is a bug the fuzzer should report.
        tokio::time::timeout(Duration::from_secs(10), async { tokio::join!(serve, talk) })
            .await
            .expect("the proxy front neither answered nor closed the connection");
    });
});
