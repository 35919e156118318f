//! A real Redis for the fleet tests: Debian's `/usr/bin/redis-server` on a free loopback port,
//! nothing saved (`--save "" --appendonly no`), in a temp dir of its own. `start` returns once
//! it answers PING; `stop` ends it (SIGTERM, then waits); `restart` brings it back, empty, on
//! the same port; dropping it kills it.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const REDIS_SERVER: &str = "/usr/bin/redis-server";

/// How long a start may take before the test fails.
const START_DEADLINE: Duration = Duration::from_secs(10);

pub struct RedisServer {
    port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl RedisServer {
    /// Start one on a free 127.0.0.1 port; panics (naming the log) if it does not answer.
    pub fn start() -> RedisServer {
        let port = {
            let probe = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
            probe.local_addr().expect("local addr").port()
        };
        let mut server = RedisServer {
            port,
            dir: tempfile::tempdir().expect("temp dir"),
            child: None,
        };
        server.spawn();
        server
    }

    /// `redis://127.0.0.1:PORT/0`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Its process id while it runs (the benchmark reads its CPU time).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether it is running (started and not stopped).
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// SIGTERM, then wait for it to exit (SIGKILL after 5s). Its data is gone.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Start it again on the same port (empty). Stops it first if it runs.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// One command over a fresh connection, its raw RESP reply (tests read keys raw with it:
    /// what an operator with `redis-cli` would see). Panics on I/O errors.
    pub fn command(&self, args: &[&[u8]]) -> Vec<u8> {
        let mut stream = TcpStream::connect(self.addr()).expect("connect to redis");
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("read timeout");
        stream.write_all(&encode(args)).expect("write to redis");
        read_reply(&mut stream).expect("a RESP reply")
    }

    /// How many times Redis ran `command` (lower case) since it started: `cmdstat_<command>`
    /// `calls=` in `INFO commandstats`, 0 when it never ran.
    pub fn calls(&self, command: &str) -> u64 {
        let info = String::from_utf8_lossy(&self.command(&[b"INFO", b"commandstats"])).into_owned();
        let prefix = format!("cmdstat_{command}:calls=");
        info.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .and_then(|rest| rest.split(',').next()?.parse().ok())
            .unwrap_or(0)
    }

    /// The keys matching `pattern` (KEYS; tests only).
    pub fn keys(&self, pattern: &str) -> Vec<String> {
        let reply = self.command(&[b"KEYS", pattern.as_bytes()]);
        bulk_strings(&reply)
    }

    /// The raw value of `key` (GET), `None` when absent.
    pub fn get(&self, key: &str) -> Option<Vec<u8>> {
        let reply = self.command(&[b"GET", key.as_bytes()]);
        bulk(&reply)
    }

    fn spawn(&mut self) {
        let log = self.dir.path().join("redis.log");
        let child = Command::new(REDIS_SERVER)
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(["--save", ""])
            .args(["--appendonly", "no"])
            .args(["--daemonize", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .arg("--logfile")
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("{REDIS_SERVER}: {e} (scripts/test installs the redis-server package)")
            });
        self.child = Some(child);
        let deadline = Instant::now() + START_DEADLINE;
        loop {
            if self.pings() {
                return;
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                self.child = None;
                panic!(
                    "redis-server exited ({status}) on port {}:\n{}",
                    self.port,
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            assert!(
                Instant::now() < deadline,
                "redis-server did not answer PING on port {} within {START_DEADLINE:?}:\n{}",
                self.port,
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn pings(&self) -> bool {
        let Ok(mut stream) = TcpStream::connect_timeout(&self.addr(), Duration::from_millis(200))
        else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
        if stream.write_all(b"PING\r\n").is_err() {
            return false;
        }
        let mut buf = [0u8; 7];
        stream.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn encode(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// One whole RESP2 reply (nested arrays included), raw.
fn read_reply(stream: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut pending = 1usize;
    while pending > 0 {
        pending -= 1;
        let line = read_line(stream)?;
        out.extend_from_slice(&line);
        let n: i64 = std::str::from_utf8(&line[1..line.len() - 2])
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        match line[0] {
            b'$' if n >= 0 => {
                let mut body = vec![0u8; n as usize + 2];
                stream.read_exact(&mut body)?;
                out.extend_from_slice(&body);
            }
            b'*' if n > 0 => pending += n as usize,
            _ => {}
        }
    }
    Ok(out)
}

fn read_line(stream: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while !line.ends_with(b"\r\n") {
        stream.read_exact(&mut byte)?;
        line.push(byte[0]);
    }
    Ok(line)
}

/// The value of a bulk-string reply; `None` for a nil one.
fn bulk(reply: &[u8]) -> Option<Vec<u8>> {
    let (head, rest) = split_line(reply)?;
    let n: usize = std::str::from_utf8(head.strip_prefix(b"$")?)
        .ok()?
        .parse()
        .ok()?;
    Some(rest[..n].to_vec())
}

/// The strings of an array-of-bulk-strings reply.
fn bulk_strings(reply: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    let Some((_, mut rest)) = split_line(reply) else {
        return out;
    };
    while let Some((head, after)) = split_line(rest) {
        let Some(n) = head
            .strip_prefix(b"$")
            .and_then(|n| std::str::from_utf8(n).ok()?.parse::<usize>().ok())
        else {
            break;
        };
        out.push(String::from_utf8_lossy(&after[..n]).into_owned());
        rest = &after[n + 2..];
    }
    out
}

fn split_line(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let at = bytes.windows(2).position(|w| w == b"\r\n")?;
    Some((&bytes[..at], &bytes[at + 2..]))
}

/// The fleet key the test proxies share (`GRANTSHIFT_CLUSTER_KEY`).
pub const TEST_CLUSTER_KEY: &str =
    "8f1c2e3d4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0";

/// `[cluster]` for `url`, replica `replica`, with a timeout generous enough for a loaded CI
/// machine (a call that takes longer falls back to local state, which some tests would read as
/// a failure to share).
pub fn cluster_toml(url: &str, replica: &str) -> String {
    format!("\n[cluster]\nredis = \"{url}\"\nreplica = \"{replica}\"\ntimeout = \"2s\"\n")
}

/// A test proxy in the fleet on `url` (the acme mapping, the fleet key in its environment).
pub fn fleet_proxy(url: &str, replica: &str) -> crate::TestProxyBuilder {
    crate::TestProxy::builder()
        .extra_toml(&crate::acme_mapping())
        .extra_toml(&cluster_toml(url, replica))
        .env(grantshift::config::CLUSTER_KEY_ENV, TEST_CLUSTER_KEY)
}

/// Wait (at most 20s) until `proxy` reports `grantshift_cluster_up` as `up`.
pub async fn wait_cluster_up(admin: SocketAddr, up: bool) {
    let want = if up { 1.0 } else { 0.0 };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let m = crate::admin::scrape(admin).await;
        if m.value("grantshift_cluster_up", &[]) == Some(want) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "grantshift_cluster_up did not become {want} within 20s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
