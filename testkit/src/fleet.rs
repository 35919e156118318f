//! A fleet of grantshift binaries behind HAProxy, as `docker compose --profile fleet` runs it:
//! every replica is a real `grantshift run` with its own directory (config, events file,
//! state), all of them use one CA (the first replica creates it; the others are configured
//! with its files, [`TestProxyBuilder::ca_files`]) and one fake Salesforce ([`Upstreams`]),
//! and clients reach them only through [`HaProxy`]'s frontend (their HTTPS proxy).
//!
//! Logins through the fleet are fallible ([`Fleet::try_login`]): a test that kills a replica
//! counts what its clients saw instead of panicking on the first reset.

use super::admin::scrape;
use super::bin::{Binary, BinaryProxy};
use super::client::{try_client_config, try_h1_over_tls, try_tunnel};
use super::haproxy::{HaProxy, Server};
use super::proxy::{TestProxyBuilder, Upstreams};
use super::redis::{cluster_toml, wait_cluster_up, TEST_CLUSTER_KEY};
use super::salesforce::TOKEN_PATH;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio_rustls::TlsConnector;

/// How long one login through the fleet may take before [`Fleet::try_login`] calls it failed.
pub const LOGIN_DEADLINE: Duration = Duration::from_secs(20);

/// The replicas' server names in HAProxy, in order.
pub const REPLICA_NAMES: [&str; 2] = ["gs-a", "gs-b"];

/// Two (or more) grantshift binaries behind one HAProxy.
pub struct Fleet {
    pub lb: HaProxy,
    replicas: Vec<Replica>,
    tls: TlsConnector,
}

/// One replica of a [`Fleet`].
pub struct Replica {
    pub name: String,
    pub proxy: BinaryProxy,
    pub admin: SocketAddr,
    killed: bool,
}

impl Fleet {
    /// `names.len()` replicas of `builder` against `up` (the first creates the shared CA, the
    /// others use its files), behind HAProxy; returns once HAProxy has seen every replica pass
    /// a health check.
    pub async fn start(
        binary: Binary,
        up: &Upstreams,
        builder: &TestProxyBuilder,
        names: &[&str],
    ) -> Fleet {
        Fleet::start_with_checks(binary, up, builder, names, &[]).await
    }

    /// [`start`](Self::start), with HAProxy's health check of replica `i` sent to
    /// `checks[i]` instead of its admin server when that is `Some` (a
    /// [`ReadyzStub`](super::haproxy::ReadyzStub) a test sets to fail).
    pub async fn start_with_checks(
        binary: Binary,
        up: &Upstreams,
        builder: &TestProxyBuilder,
        names: &[&str],
        checks: &[Option<SocketAddr>],
    ) -> Fleet {
        Fleet::launch(binary, up, |_| builder.clone(), names, checks).await
    }

    /// [`start`](Self::start) with shared state: every replica also gets `[cluster]` on
    /// `redis` ([`cluster_toml`], its HAProxy name as `replica`) and the fleet key
    /// ([`TEST_CLUSTER_KEY`]) in its environment; returns once each also reports
    /// `grantshift_cluster_up 1`.
    pub async fn start_on_redis(
        binary: Binary,
        up: &Upstreams,
        builder: &TestProxyBuilder,
        names: &[&str],
        redis: &str,
    ) -> Fleet {
        let fleet = Fleet::launch(
            binary,
            up,
            |name| {
                builder
                    .clone()
                    .extra_toml(&cluster_toml(redis, name))
                    .env(grantshift::config::CLUSTER_KEY_ENV, TEST_CLUSTER_KEY)
            },
            names,
            &[],
        )
        .await;
        for r in &fleet.replicas {
            wait_cluster_up(r.admin, true).await;
        }
        fleet
    }

    async fn launch(
        binary: Binary,
        up: &Upstreams,
        builder_for: impl Fn(&str) -> TestProxyBuilder,
        names: &[&str],
        checks: &[Option<SocketAddr>],
    ) -> Fleet {
        assert!(!names.is_empty());
        let mut replicas: Vec<Replica> = Vec::new();
        for name in names {
            let builder = builder_for(name);
            let b = match replicas.first() {
                None => builder,
                Some(first) => builder.clone().ca_files(
                    &first.proxy.dir().join("grantshift-ca.pem"),
                    &first.proxy.dir().join("grantshift-ca.key"),
                ),
            };
            let proxy = BinaryProxy::start(binary, up, &b, "json", None).await;
            let admin = proxy.bin.admin_addr().await;
            replicas.push(Replica {
                name: name.to_string(),
                proxy,
                admin,
                killed: false,
            });
        }
        let servers: Vec<Server> = replicas
            .iter()
            .enumerate()
            .map(|(i, r)| Server {
                name: r.name.clone(),
                proxy: r.proxy.bin.addr(),
                admin: checks.get(i).copied().flatten().unwrap_or(r.admin),
            })
            .collect();
        let lb = HaProxy::start(&servers).await;
        lb.wait_all_up(Duration::from_secs(10)).await;
        let config = try_client_config(&[replicas[0].proxy.ca_pem()], &[b"http/1.1"])
            .unwrap_or_else(|e| panic!("client TLS config: {e}"));
        Fleet {
            lb,
            replicas,
            tls: TlsConnector::from(Arc::new(config)),
        }
    }

    /// HAProxy's frontend: what clients use as their HTTPS proxy (CONNECT target).
    pub fn front(&self) -> SocketAddr {
        self.lb.addr()
    }

    pub fn replicas(&self) -> &[Replica] {
        &self.replicas
    }

    pub fn replica(&self, i: usize) -> &Replica {
        &self.replicas[i]
    }

    pub fn replica_mut(&mut self, i: usize) -> &mut Replica {
        &mut self.replicas[i]
    }

    /// Each replica's admin server (`/readyz`, `/metrics`, `/report`).
    pub fn admin(&self, i: usize) -> SocketAddr {
        self.replicas[i].admin
    }

    /// SIGKILL replica `i` (no clean-up of any kind) and wait until the process is gone.
    pub async fn kill(&mut self, i: usize) {
        let r = &mut self.replicas[i];
        r.proxy.kill().await;
        r.killed = true;
    }

    /// A password login on a new connection through HAProxy: CONNECT `host:443`, TLS trusting
    /// the fleet's CA, `POST` [`TOKEN_PATH`] with `body`. The HTTP status, or what went wrong.
    pub async fn try_login(&self, host: &str, body: &str) -> Result<u16, String> {
        self.try_logins(host, &[body.to_string()]).await.remove(0)
    }

    /// Password logins with `bodies`, in order, on one new connection through HAProxy (so all
    /// of them reach the same replica): each one's HTTP status, or what went wrong; after the
    /// first failure the rest are not sent (and count as failed with it).
    pub async fn try_logins(&self, host: &str, bodies: &[String]) -> Vec<Result<u16, String>> {
        let front = self.front();
        let tls = self.tls.clone();
        let mut results = Vec::with_capacity(bodies.len());
        let connected = async {
            let tcp = try_tunnel(front, &format!("{host}:443")).await?;
            try_h1_over_tls::<_, Full<Bytes>>(tcp, host, &tls).await
        };
        let mut sender = match tokio::time::timeout(LOGIN_DEADLINE, connected).await {
            Ok(Ok(sender)) => sender,
            Ok(Err(e)) => return vec![Err(e); bodies.len()],
            Err(_) => {
                return vec![Err(format!("no connection within {LOGIN_DEADLINE:?}")); bodies.len()]
            }
        };
        for body in bodies {
            let exchange = async {
                sender
                    .ready()
                    .await
                    .map_err(|e| format!("connection: {e}"))?;
                let req = http::Request::post(TOKEN_PATH)
                    .header("host", host)
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(Full::new(Bytes::from(body.clone())))
                    .map_err(|e| e.to_string())?;
                let resp = sender
                    .send_request(req)
                    .await
                    .map_err(|e| format!("token request: {e}"))?;
                let status = resp.status().as_u16();
                resp.into_body()
                    .collect()
                    .await
                    .map_err(|e| format!("token response body: {e}"))?;
                Ok(status)
            };
            let result = match tokio::time::timeout(LOGIN_DEADLINE, exchange).await {
                Ok(result) => result,
                Err(_) => Err(format!("no answer within {LOGIN_DEADLINE:?}")),
            };
            let failed = result.is_err();
            results.push(result);
            if failed {
                let e = results.last().cloned().expect("just pushed");
                results.resize(bodies.len(), e);
                break;
            }
        }
        results
    }

    /// Token requests replica `i` has counted (`grantshift_token_requests_total`, every label
    /// set summed), from its `/metrics`.
    pub async fn token_requests(&self, i: usize) -> f64 {
        scrape(self.admin(i))
            .await
            .series("grantshift_token_requests_total")
            .values()
            .sum()
    }
}

impl Replica {
    /// Whether [`Fleet::kill`] killed it.
    pub fn killed(&self) -> bool {
        self.killed
    }
}

/// One login of a [`LoginLoad`]: when it started, and how it went.
pub struct Outcome {
    pub started: std::time::Instant,
    pub result: Result<u16, String>,
}

/// Logins through a fleet's HAProxy from several client tasks, until [`finish`](Self::finish):
/// each task logs in `per_connection` times on a new connection, again and again.
pub struct LoginLoad {
    stop: Arc<std::sync::atomic::AtomicBool>,
    done: Arc<std::sync::atomic::AtomicUsize>,
    outcomes: Arc<std::sync::Mutex<Vec<Outcome>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl LoginLoad {
    /// `clients` tasks logging in with `form` at `host` through `fleet`.
    pub fn start(
        fleet: &Arc<Fleet>,
        clients: usize,
        per_connection: usize,
        host: &str,
        form: &str,
    ) -> LoginLoad {
        let load = LoginLoad {
            stop: Default::default(),
            done: Default::default(),
            outcomes: Default::default(),
            tasks: Vec::new(),
        };
        let tasks = (0..clients)
            .map(|_| {
                let (fleet, host) = (fleet.clone(), host.to_string());
                let bodies = vec![form.to_string(); per_connection];
                let (stop, done, outcomes) =
                    (load.stop.clone(), load.done.clone(), load.outcomes.clone());
                tokio::spawn(async move {
                    while !stop.load(Ordering::SeqCst) {
                        let started = std::time::Instant::now();
                        let results = fleet.try_logins(&host, &bodies).await;
                        let n = results.len();
                        outcomes.lock().unwrap().extend(
                            results
                                .into_iter()
                                .map(|result| Outcome { started, result }),
                        );
                        done.fetch_add(n, Ordering::SeqCst);
                    }
                })
            })
            .collect();
        LoginLoad { tasks, ..load }
    }

    /// Logins finished so far.
    pub fn done(&self) -> usize {
        self.done.load(Ordering::SeqCst)
    }

    /// Wait (60 s at most) until `n` logins have finished.
    pub async fn wait_done(&self, n: usize, what: &str) {
        crate::within(60, what, async {
            while self.done() < n {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
    }

    /// Stop the tasks (each after its current logins) and return every outcome.
    pub async fn finish(self) -> Vec<Outcome> {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.tasks {
            crate::within(60, "login tasks", t).await.expect("join");
        }
        std::mem::take(&mut *self.outcomes.lock().unwrap())
    }
}
