//! Debian's HAProxy as the fleet's layer-4 load balancer: TCP mode in front of several
//! grantshift proxy ports, each server health-checked over HTTP against its replica's admin
//! server (`GET /readyz`, expect 200), as `deploy/haproxy/haproxy.cfg` does.
//!
//! An [`HaProxy`] is a child process in the foreground (`-db`), never the system service, with
//! its config and stats socket in its own TempDir, listening on a free 127.0.0.1 port. A test
//! reads each server's state from the stats socket (`show stat`, CSV) and waits, polling with a
//! deadline, until HAProxy has marked a server DOWN or UP.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Debian's haproxy (`scripts/test` installs the package).
pub const HAPROXY: &str = "/usr/sbin/haproxy";
/// How long HAProxy may take to come up before [`HaProxy::start`] gives up.
pub const HAPROXY_START_DEADLINE: Duration = Duration::from_secs(10);
/// The backend's name in the generated config (and in `show stat`).
pub const BACKEND: &str = "grantshift";
/// The frontend's name.
pub const FRONTEND: &str = "fleet";

/// One grantshift replica as an HAProxy server: its proxy port (traffic) and its admin port
/// (`/readyz`, the health check).
#[derive(Clone, Debug)]
pub struct Server {
    pub name: String,
    pub proxy: SocketAddr,
    pub admin: SocketAddr,
}

/// One row of `show stat` for a server of the backend.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerStat {
    pub name: String,
    /// `UP`, `DOWN`, `UP 1/2` (up, one check failed), `DOWN 1/2` (down, one check passed),
    /// `MAINT`, `no check`.
    pub status: String,
    /// The last check's result, e.g. `L7OK`, `L7STS` (wrong HTTP status), `L4CON` (refused).
    pub check_status: String,
    /// The last check's HTTP status code, when it got one.
    pub check_code: String,
    /// Sessions sent to this server so far.
    pub sessions_total: u64,
}

impl ServerStat {
    /// Marked down (no new connections go to it): `DOWN`, also while it passes checks again
    /// (`DOWN 1/2`).
    pub fn is_down(&self) -> bool {
        self.status.starts_with("DOWN")
    }

    /// Taking traffic: `UP`, also after a failed check that is not yet `fall` in a row.
    pub fn is_up(&self) -> bool {
        self.status.starts_with("UP")
    }
}

/// The config for a frontend on `front` and `servers`, with the stats socket at `socket`.
///
/// `retries 3` + `option redispatch 1`: a connection that HAProxy cannot open to a server (a
/// replica just killed, not yet marked down) is retried on another one, so a client only sees
/// the failure of a connection that was already established.
pub fn config_text(front: SocketAddr, servers: &[Server], socket: &Path) -> String {
    let mut t = format!(
        "global\n\
         \x20   stats socket {socket} mode 600 level admin\n\
         \x20   log stderr format short local0 notice\n\
         \x20   maxconn 4096\n\
         \n\
         defaults\n\
         \x20   mode tcp\n\
         \x20   log global\n\
         \x20   timeout connect 2s\n\
         \x20   timeout client 60s\n\
         \x20   timeout server 60s\n\
         \x20   timeout check 1s\n\
         \x20   retries 3\n\
         \x20   option redispatch 1\n\
         \n\
         frontend {FRONTEND}\n\
         \x20   bind {front}\n\
         \x20   default_backend {BACKEND}\n\
         \n\
         backend {BACKEND}\n\
         \x20   balance roundrobin\n\
         \x20   option httpchk\n\
         \x20   http-check send meth GET uri /readyz ver HTTP/1.1 hdr Host grantshift\n\
         \x20   http-check expect status 200\n\
         \x20   default-server inter 500ms fall 2 rise 2\n",
        socket = socket.display()
    );
    for s in servers {
        t.push_str(&format!(
            "    server {} {} check addr {} port {}\n",
            s.name,
            s.proxy,
            s.admin.ip(),
            s.admin.port()
        ));
    }
    t
}

/// A running HAProxy. Dropping it kills it (SIGKILL).
pub struct HaProxy {
    addr: SocketAddr,
    dir: tempfile::TempDir,
    socket: PathBuf,
    child: Option<Child>,
    config_text: String,
}

impl HaProxy {
    /// Start HAProxy in front of `servers` and wait (polling its stats socket, at most
    /// [`HAPROXY_START_DEADLINE`]) until its frontend is `OPEN`: the listener is bound and
    /// accepts. Panics with its output and config if it exits or never comes up.
    pub async fn start(servers: &[Server]) -> HaProxy {
        assert!(
            Path::new(HAPROXY).exists(),
            "{HAPROXY} is missing: run ./scripts/test, which installs the Debian package haproxy"
        );
        let mut attempt = 0;
        loop {
            attempt += 1;
            let dir = tempfile::tempdir().expect("haproxy tempdir");
            let socket = dir.path().join("stats.sock");
            let addr = {
                let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
                l.local_addr().unwrap()
            };
            let config_text = config_text(addr, servers, &socket);
            let config = dir.path().join("haproxy.cfg");
            std::fs::write(&config, &config_text).expect("write haproxy.cfg");
            let out = std::fs::File::create(dir.path().join("stderr.log")).expect("stderr.log");
            let child = Command::new(HAPROXY)
                .arg("-db")
                .arg("-f")
                .arg(&config)
                .current_dir(dir.path())
                .stdin(Stdio::null())
                .stdout(out.try_clone().unwrap())
                .stderr(out)
                .spawn()
                .expect("spawn haproxy");
            let mut lb = HaProxy {
                addr,
                dir,
                socket,
                child: Some(child),
                config_text,
            };
            match lb.wait_open().await {
                Ok(()) => return lb,
                Err(why) => {
                    let out = lb.output();
                    if attempt < 3 && out.contains("in use") {
                        continue;
                    }
                    panic!(
                        "haproxy did not start: {why}\n--- output:\n{out}\n--- config:\n{}",
                        lb.config_text
                    );
                }
            }
        }
    }

    async fn wait_open(&mut self) -> Result<(), String> {
        let began = Instant::now();
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().expect("try_wait") {
                self.child = None;
                return Err(format!("it exited with {status}"));
            }
            if let Ok(csv) = self.show_stat() {
                let open = parse_show_stat(&csv)
                    .iter()
                    .any(|r| r.proxy == FRONTEND && r.name == "FRONTEND" && r.status == "OPEN");
                if open {
                    return Ok(());
                }
            }
            if began.elapsed() > HAPROXY_START_DEADLINE {
                return Err(format!(
                    "frontend not OPEN after {HAPROXY_START_DEADLINE:?}"
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Where clients connect (the frontend, TCP).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its process id while it runs (the benchmark reads its CPU time).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn config_text(&self) -> &str {
        &self.config_text
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// What HAProxy wrote on stdout and stderr (its log: servers going DOWN and UP).
    pub fn output(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr.log")).unwrap_or_default()
    }

    /// `show stat` on the stats socket: the CSV text.
    pub fn show_stat(&self) -> std::io::Result<String> {
        let mut s = UnixStream::connect(&self.socket)?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        s.write_all(b"show stat\n")?;
        let mut out = String::new();
        s.read_to_string(&mut out)?;
        Ok(out)
    }

    /// The backend's servers as HAProxy sees them now.
    pub fn servers(&self) -> Vec<ServerStat> {
        let csv = self
            .show_stat()
            .unwrap_or_else(|e| panic!("show stat on {:?}: {e}", self.socket));
        parse_show_stat(&csv)
            .into_iter()
            .filter(|r| r.proxy == BACKEND && r.name != "BACKEND")
            .map(|r| r.server)
            .collect()
    }

    /// One server's row.
    pub fn server(&self, name: &str) -> ServerStat {
        let servers = self.servers();
        servers
            .iter()
            .find(|s| s.name == name)
            .cloned()
            .unwrap_or_else(|| panic!("no server {name} in {servers:?}"))
    }

    /// Poll (every 20 ms, at most `deadline`) until `name`'s row satisfies `done`; the row then.
    pub async fn wait_server(
        &self,
        name: &str,
        what: &str,
        deadline: Duration,
        done: impl Fn(&ServerStat) -> bool,
    ) -> ServerStat {
        let began = Instant::now();
        loop {
            let row = self.server(name);
            if done(&row) {
                return row;
            }
            if began.elapsed() > deadline {
                panic!(
                    "haproxy: server {name} not {what} after {deadline:?}: {row:?}\n--- log:\n{}",
                    self.output()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Wait until HAProxy has marked `name` DOWN.
    pub async fn wait_down(&self, name: &str, deadline: Duration) -> ServerStat {
        self.wait_server(name, "DOWN", deadline, ServerStat::is_down)
            .await
    }

    /// Wait until every server is `UP` (checks passed; at start HAProxy assumes servers up,
    /// so this waits for a first passed check: `check_status` `L7OK`).
    pub async fn wait_all_up(&self, deadline: Duration) {
        for s in self.servers() {
            self.wait_server(&s.name, "UP with a passed check", deadline, |r| {
                r.status == "UP" && r.check_status == "L7OK"
            })
            .await;
        }
    }

    /// SIGTERM (HAProxy's hard stop) and wait for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
            let _ = child.wait();
        }
    }
}

impl Drop for HaProxy {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A stand-in health endpoint: answers every HTTP request (HAProxy's `GET /readyz`) with the
/// status it is set to, so a test can make one replica's check fail while the replica itself
/// keeps serving. Stops when dropped.
pub struct ReadyzStub {
    addr: SocketAddr,
    status: std::sync::Arc<std::sync::atomic::AtomicU16>,
    task: tokio::task::JoinHandle<()>,
}

impl ReadyzStub {
    /// Listen on a free 127.0.0.1 port, answering 200.
    pub async fn start() -> ReadyzStub {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().unwrap();
        let status = std::sync::Arc::new(std::sync::atomic::AtomicU16::new(200));
        let answer = status.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut tcp, _)) = listener.accept().await else {
                    return;
                };
                let answer = answer.clone();
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16384 {
                        match tcp.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    let code = answer.load(std::sync::atomic::Ordering::SeqCst);
                    let reply = format!(
                        "HTTP/1.1 {code} Stub\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    );
                    let _ = tcp.write_all(reply.as_bytes()).await;
                    let _ = tcp.shutdown().await;
                });
            }
        });
        ReadyzStub { addr, status, task }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Answer `code` from now on.
    pub fn set_status(&self, code: u16) {
        self.status.store(code, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Drop for ReadyzStub {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A `show stat` row: its proxy (frontend/backend) and server (`FRONTEND`, `BACKEND` or a
/// server name).
#[derive(Clone, Debug)]
pub struct StatRow {
    pub proxy: String,
    pub name: String,
    pub status: String,
    pub server: ServerStat,
}

/// Parse `show stat`'s CSV: a `# pxname,svname,…` header, then one line per row.
pub fn parse_show_stat(csv: &str) -> Vec<StatRow> {
    let mut lines = csv.lines();
    let Some(header) = lines.next().and_then(|h| h.strip_prefix("# ")) else {
        return Vec::new();
    };
    let cols: Vec<&str> = header.split(',').collect();
    let col = |name: &str| cols.iter().position(|c| *c == name);
    let (Some(px), Some(sv), Some(st)) = (col("pxname"), col("svname"), col("status")) else {
        return Vec::new();
    };
    let (check, code, stot) = (col("check_status"), col("check_code"), col("stot"));
    lines
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            let get = |i: Option<usize>| i.and_then(|i| f.get(i)).unwrap_or(&"").to_string();
            let name = get(Some(sv));
            let status = get(Some(st));
            StatRow {
                proxy: get(Some(px)),
                name: name.clone(),
                status: status.clone(),
                server: ServerStat {
                    name,
                    status,
                    check_status: get(check).trim_start_matches("* ").to_string(),
                    check_code: get(code),
                    sessions_total: get(stot).parse().unwrap_or(0),
                },
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn show_stat_rows_are_read_by_column_name() {
        let csv = "# pxname,svname,qcur,stot,status,check_status,check_code,\n\
                   fleet,FRONTEND,,12,OPEN,,,\n\
                   grantshift,gs-a,0,7,UP,L7OK,200,\n\
                   grantshift,gs-b,0,5,DOWN,* L4CON,,\n\
                   grantshift,BACKEND,0,12,UP,,,\n\n";
        let rows = parse_show_stat(csv);
        assert_eq!(rows.len(), 4);
        assert_eq!(rows[0].status, "OPEN");
        assert_eq!(rows[1].server.sessions_total, 7);
        assert!(rows[1].server.is_up() && !rows[1].server.is_down());
        assert_eq!(rows[1].server.check_code, "200");
        assert!(rows[2].server.is_down());
        assert_eq!(rows[2].server.check_status, "L4CON");
    }

    #[test]
    fn config_checks_each_server_on_its_admin_port() {
        let servers = [Server {
            name: "gs-a".into(),
            proxy: "127.0.0.1:4001".parse().unwrap(),
            admin: "127.0.0.1:5001".parse().unwrap(),
        }];
        let text = config_text(
            "127.0.0.1:3128".parse().unwrap(),
            &servers,
            Path::new("/x/s.sock"),
        );
        assert!(text.contains("mode tcp"), "{text}");
        assert!(text.contains("option httpchk"), "{text}");
        assert!(text.contains("uri /readyz"), "{text}");
        assert!(text.contains("http-check expect status 200"), "{text}");
        assert!(
            text.contains("server gs-a 127.0.0.1:4001 check addr 127.0.0.1 port 5001"),
            "{text}"
        );
    }
}
