//! Dialling upstream hosts: `[upstream.connect_to]` overrides, the destination policy
//! ([`crate::destination`]: no loopback, link-local, unspecified or own listener unless
//! allowed), the corporate proxy (`upstream.proxy`), the connect timeout, `TCP_NODELAY`, and
//! verified TLS (web PKI roots plus `extra_root_certs`) with the ALPN the caller needs.

use super::UpstreamError;
use crate::config::Config;
use crate::destination;
use arc_swap::ArcSwap;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::ClientConfig;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

/// Which ALPN protocols to offer upstream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Alpn {
    /// `h2` and `http/1.1`: the pool speaks whichever the server picks.
    Any,
    /// `http/1.1` only: for `Upgrade` requests, which HTTP/2 cannot carry.
    Http1Only,
}

/// Dials upstream hosts: `connect_to` overrides, the destination policy, connect timeout,
/// `TCP_NODELAY`, verified TLS.
#[derive(Clone)]
pub struct Dialer {
    pub(super) config: Arc<ArcSwap<Config>>,
    tls_any: TlsConnector,
    tls_http1: TlsConnector,
    /// The addresses grantshift's listeners are bound to: never a destination.
    own: Arc<ArcSwap<Vec<SocketAddr>>>,
}

impl Dialer {
    /// Build the TLS client configs: web PKI roots plus `[upstream].extra_root_certs`.
    pub fn new(
        config: Arc<ArcSwap<Config>>,
        provider: Arc<rustls::crypto::CryptoProvider>,
    ) -> crate::Result<Dialer> {
        let roots = root_store(&config.load().upstream.extra_root_certs)?;
        let build = |alpn: &[&[u8]]| -> crate::Result<TlsConnector> {
            let mut tls = ClientConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()
                .map_err(|e| crate::Error::UpstreamTls(e.to_string()))?
                .with_root_certificates(roots.clone())
                .with_no_client_auth();
            tls.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
            Ok(TlsConnector::from(Arc::new(tls)))
        };
        Ok(Dialer {
            tls_any: build(&[b"h2", b"http/1.1"])?,
            tls_http1: build(&[b"http/1.1"])?,
            config,
            own: Arc::default(),
        })
    }

    /// Record a bound listener address: dialling it for a client is refused from now on.
    pub fn add_own_listener(&self, addr: SocketAddr) {
        self.own.rcu(|own| {
            let mut own = Vec::clone(own);
            own.push(addr);
            own
        });
    }

    /// TCP to `host:port` (or its `connect_to` override) within `connect_timeout`, if the
    /// destination policy allows it.
    pub async fn tcp(&self, host: &str, port: u16) -> Result<TcpStream, UpstreamError> {
        let config = self.config.load_full();
        let after = config.upstream.connect_timeout;
        let work = async {
            match &config.upstream.proxy {
                // Through the corporate proxy: it resolves and dials the real host, so only an
                // IP literal can be judged here.
                Some(via) => {
                    if let Ok(ip) = host.parse::<IpAddr>() {
                        self.check(&config, host, port, &[SocketAddr::new(ip, port)])?;
                    }
                    // The corporate proxy itself is the operator's choice: not judged.
                    let addrs = match config.upstream.connect_to.get(&via.host, via.port) {
                        Some(addr) => vec![addr],
                        None if config.upstream.connect_to_only => {
                            return Err(not_in_connect_to(&via.host, via.port))
                        }
                        None => resolve(&via.host, via.port).await?,
                    };
                    let mut tcp = dial(&via.host, &addrs).await?;
                    let auth = config.upstream.proxy_auth_resolved.as_ref();
                    connect_through(&mut tcp, host, port, auth)
                        .await
                        .map_err(|source| UpstreamError::Connect {
                            host: host.to_string(),
                            addr: format!("via upstream proxy {}:{}", via.host, via.port),
                            source,
                        })?;
                    Ok(tcp)
                }
                None => self.direct(&config, host, port).await,
            }
        };
        tokio::time::timeout(after, work)
            .await
            .map_err(|_| UpstreamError::ConnectTimeout {
                host: host.to_string(),
                after,
            })?
    }

    /// Dial `host:port` directly: its `connect_to` override as given, else its IP literal or
    /// the addresses it resolves to that the destination policy allows.
    async fn direct(
        &self,
        config: &Config,
        host: &str,
        port: u16,
    ) -> Result<TcpStream, UpstreamError> {
        if let Some(addr) = config.upstream.connect_to.get(host, port) {
            // The operator named this address: not judged.
            return dial(host, &[addr]).await;
        }
        // An IP literal is judged before anything else (a refused one gets its 403 even with
        // connect_to_only); a name only once resolved.
        let literal = host
            .parse::<IpAddr>()
            .ok()
            .map(|ip| SocketAddr::new(ip, port));
        if let Some(addr) = literal {
            self.check(config, host, port, &[addr])?;
        }
        if config.upstream.connect_to_only {
            return Err(not_in_connect_to(host, port));
        }
        if let Some(addr) = literal {
            return dial(host, &[addr]).await;
        }
        let resolved = resolve(host, port).await?;
        let allowed = self.check(config, host, port, &resolved)?;
        dial(host, &allowed).await
    }

    /// The addresses of `addrs` the destination policy allows; none is a `Refused` naming
    /// the first address and why it was refused.
    fn check(
        &self,
        config: &Config,
        host: &str,
        port: u16,
        addrs: &[SocketAddr],
    ) -> Result<Vec<SocketAddr>, UpstreamError> {
        let allow = &config.proxy.allow_destinations;
        let own = self.own.load();
        let mut refused = None;
        let mut allowed = Vec::with_capacity(addrs.len());
        for &addr in addrs {
            match destination::refusal(addr, allow, &own, &is_local_address) {
                None => allowed.push(addr),
                Some(why) => {
                    refused.get_or_insert(why);
                }
            }
        }
        match refused {
            Some(why) if allowed.is_empty() => {
                let target = if host.parse::<IpAddr>().is_ok() {
                    addrs[0].to_string()
                } else {
                    let list: Vec<String> = addrs.iter().map(|a| a.ip().to_string()).collect();
                    format!("{host}:{port} ({})", list.join(", "))
                };
                Err(UpstreamError::Refused {
                    target,
                    reason: why.describe(),
                })
            }
            _ => Ok(allowed),
        }
    }

    /// TCP + verified TLS with SNI = `host`, both within `connect_timeout`.
    pub async fn tls(
        &self,
        host: &str,
        port: u16,
        alpn: Alpn,
    ) -> Result<TlsStream<TcpStream>, UpstreamError> {
        let after = self.config.load().upstream.connect_timeout;
        let connector = match alpn {
            Alpn::Any => &self.tls_any,
            Alpn::Http1Only => &self.tls_http1,
        };
        let work = async {
            let tcp = self.tcp(host, port).await?;
            let name = ServerName::try_from(host.to_string()).map_err(|e| UpstreamError::Tls {
                host: host.to_string(),
                source: io::Error::new(io::ErrorKind::InvalidInput, e),
            })?;
            connector
                .connect(name, tcp)
                .await
                .map_err(|source| UpstreamError::Tls {
                    host: host.to_string(),
                    source,
                })
        };
        tokio::time::timeout(after, work)
            .await
            .map_err(|_| UpstreamError::ConnectTimeout {
                host: host.to_string(),
                after,
            })?
    }
}

/// Is `ip` an address of this machine? Binding a socket to it succeeds only then (no
/// packet is sent). Asked only for a destination on the port of a listener bound to the
/// unspecified address.
fn is_local_address(ip: IpAddr) -> bool {
    std::net::UdpSocket::bind(SocketAddr::new(ip, 0)).is_ok()
}

fn not_in_connect_to(host: &str, port: u16) -> UpstreamError {
    UpstreamError::Resolve {
        host: host.to_string(),
        source: io::Error::new(
            io::ErrorKind::NotFound,
            format!("{host}:{port} is not in upstream.connect_to (connect_to_only = true)"),
        ),
    }
}

async fn resolve(host: &str, port: u16) -> Result<Vec<SocketAddr>, UpstreamError> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|source| UpstreamError::Resolve {
            host: host.to_string(),
            source,
        })?
        .collect();
    if addrs.is_empty() {
        return Err(UpstreamError::Resolve {
            host: host.to_string(),
            source: io::Error::new(io::ErrorKind::NotFound, "no addresses"),
        });
    }
    Ok(addrs)
}

/// Connect to the first of `addrs` that answers.
async fn dial(host: &str, addrs: &[SocketAddr]) -> Result<TcpStream, UpstreamError> {
    let mut last = None;
    for &addr in addrs {
        match TcpStream::connect(addr).await {
            Ok(tcp) => {
                // Small requests and responses must not wait for delayed ACKs.
                let _ = tcp.set_nodelay(true);
                return Ok(tcp);
            }
            Err(source) => last = Some((addr, source)),
        }
    }
    Err(match last {
        Some((addr, source)) => UpstreamError::Connect {
            host: host.to_string(),
            addr: addr.to_string(),
            source,
        },
        None => UpstreamError::Resolve {
            host: host.to_string(),
            source: io::Error::new(io::ErrorKind::NotFound, "no addresses"),
        },
    })
}

/// Ask an HTTP proxy for a tunnel: `CONNECT host:port`, optionally with Basic
/// `Proxy-Authorization`, and read its answer head (bounded); anything but 2xx is an error.
async fn connect_through(
    tcp: &mut TcpStream,
    host: &str,
    port: u16,
    auth: Option<&crate::access::ProxyAuth>,
) -> io::Result<()> {
    use base64::Engine;
    use secrecy::ExposeSecret;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let authority = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let mut head = zeroize::Zeroizing::new(format!(
        "CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n"
    ));
    if let Some(auth) = auth {
        let credentials = zeroize::Zeroizing::new(format!(
            "{}:{}",
            auth.username,
            auth.password.expose_secret()
        ));
        head.push_str(&format!(
            "Proxy-Authorization: Basic {}\r\n",
            base64::engine::general_purpose::STANDARD.encode(credentials.as_bytes())
        ));
    }
    head.push_str("\r\n");
    tcp.write_all(head.as_bytes()).await?;
    // Read byte by byte up to the blank line: nothing of the tunnel may be consumed here.
    let mut answer = Vec::with_capacity(256);
    while !answer.ends_with(b"\r\n\r\n") {
        if answer.len() > 16 * 1024 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "upstream proxy answer head too large",
            ));
        }
        let byte = tcp.read_u8().await?;
        answer.push(byte);
    }
    let status_line = String::from_utf8_lossy(answer.split(|&b| b == b'\n').next().unwrap_or(b""));
    let status = status_line.split_whitespace().nth(1).unwrap_or("");
    if status.starts_with('2') {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::ConnectionRefused,
            format!(
                "upstream proxy answered CONNECT with: {}",
                status_line.trim()
            ),
        ))
    }
}

fn root_store(extra: &[std::path::PathBuf]) -> crate::Result<Arc<rustls::RootCertStore>> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    for path in extra {
        let bad = |problem: String| {
            crate::Error::UpstreamTls(format!(
                "upstream.extra_root_certs: {}: {problem}",
                path.display()
            ))
        };
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
            .map_err(|e| bad(e.to_string()))?
            .collect::<Result<_, _>>()
            .map_err(|e| bad(e.to_string()))?;
        if certs.is_empty() {
            return Err(bad("no PEM certificates in the file".into()));
        }
        for cert in certs {
            roots.add(cert).map_err(|e| bad(e.to_string()))?;
        }
    }
    Ok(Arc::new(roots))
}

/// A dialled upstream connection: plain TCP for `http://`, TLS for `https://`.
pub enum UpstreamStream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for UpstreamStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpstreamStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            UpstreamStream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for UpstreamStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            UpstreamStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            UpstreamStream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            UpstreamStream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            UpstreamStream::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }
    fn is_write_vectored(&self) -> bool {
        match self {
            UpstreamStream::Plain(s) => s.is_write_vectored(),
            UpstreamStream::Tls(s) => s.is_write_vectored(),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpstreamStream::Plain(s) => Pin::new(s).poll_flush(cx),
            UpstreamStream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpstreamStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            UpstreamStream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_addresses_are_told_from_others_without_sending_anything() {
        assert!(is_local_address("127.0.0.1".parse().unwrap()));
        // TEST-NET-1 (RFC 5737) is never assigned to a machine.
        assert!(!is_local_address("192.0.2.1".parse().unwrap()));
    }
}
