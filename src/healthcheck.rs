//! `grantshift healthcheck`: probe the running grantshift's admin server, at the address the
//! config gives it (`proxy.admin_listen`), for the container's HEALTHCHECK. `/readyz` is
//! open even with `proxy.admin_token_env` set, so no token is sent. Blocking std I/O with a
//! deadline: one short-lived connection, no runtime needed.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// The path probed: 200 once the proxy port serves, 503 while starting or shutting down.
pub const PATH: &str = "/readyz";

/// The whole probe's time limit (connect, send, read the answer); under Docker's default
/// HEALTHCHECK `--timeout` in the Dockerfile (3 s).
pub const TIMEOUT: Duration = Duration::from_secs(2);

/// Bytes of the answer read at most (`/readyz` answers a line).
const MAX_ANSWER: u64 = 4096;

/// Where to reach an admin server that listens on `listen`: the same port, on loopback of
/// the same family when it listens on every address (`0.0.0.0`, `[::]`).
pub fn probe_addr(listen: SocketAddr) -> SocketAddr {
    let ip = match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, listen.port())
}

/// Probe the admin server configured as `admin_listen`: `Ok` with a line saying it is
/// healthy, or `Err` with a line saying why not.
pub fn check(admin_listen: &str, timeout: Duration) -> Result<String, String> {
    let Ok(listen) = admin_listen.parse::<SocketAddr>() else {
        return Err(format!(
            "unhealthy: the admin server is off (proxy.admin_listen = {admin_listen:?}), so there is nothing to probe; set proxy.admin_listen"
        ));
    };
    let addr = probe_addr(listen);
    let url = format!("http://{addr}{PATH}");
    let answer = fetch(addr, timeout)
        .map_err(|e| format!("unhealthy: {url} (proxy.admin_listen = {admin_listen:?}): {e}"))?;
    judge(&answer)
        .map(|ok| format!("healthy: {url}: {ok}"))
        .map_err(|why| format!("unhealthy: {url}: {why}"))
}

/// `GET /readyz` over HTTP/1.1, the answer read until the server closes (`Connection:
/// close`), all within `timeout`.
fn fetch(addr: SocketAddr, timeout: Duration) -> Result<Vec<u8>, String> {
    let deadline = Instant::now() + timeout;
    let left = || {
        deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
            .ok_or_else(|| format!("no answer within {timeout:?}"))
    };
    let mut tcp =
        TcpStream::connect_timeout(&addr, left()?).map_err(|e| format!("cannot connect: {e}"))?;
    tcp.set_write_timeout(Some(left()?))
        .map_err(|e| e.to_string())?;
    let request = format!("GET {PATH} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    tcp.write_all(request.as_bytes())
        .map_err(|e| format!("cannot send the request: {e}"))?;
    let mut answer = Vec::new();
    let mut limited = (&tcp).take(MAX_ANSWER);
    let mut buf = [0u8; 1024];
    loop {
        tcp.set_read_timeout(Some(left()?))
            .map_err(|e| e.to_string())?;
        match limited.read(&mut buf) {
            Ok(0) => return Ok(answer),
            Ok(n) => answer.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Err(format!("no answer within {timeout:?}"))
            }
            // Some answer and then a reset: judge what came.
            Err(_) if !answer.is_empty() => return Ok(answer),
            Err(e) => return Err(format!("cannot read the answer: {e}")),
        }
    }
}

/// An HTTP answer: `Ok("200 ready")` for a 2xx, else `Err` with the status and the first
/// line of the body (the admin server's reason, e.g. `503 not ready: shutting down`).
pub fn judge(answer: &[u8]) -> Result<String, String> {
    let text = String::from_utf8_lossy(answer);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return Err("not an HTTP answer (no complete response head)".into());
    };
    let status_line = head.lines().next().unwrap_or("");
    let mut parts = status_line.splitn(3, ' ');
    let (version, status) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let status: u16 = match (version.starts_with("HTTP/1."), status.parse()) {
        (true, Ok(status)) => status,
        _ => return Err(format!("not an HTTP answer: {status_line:?}")),
    };
    let reason: String = body
        .lines()
        .next()
        .unwrap_or("")
        .chars()
        .filter(|c| !c.is_control())
        .take(200)
        .collect();
    let said = format!("{status} {reason}").trim_end().to_owned();
    if (200..300).contains(&status) {
        Ok(said)
    } else {
        Err(format!("answered {said}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_address_is_probed_on_loopback_of_its_family() {
        for (listen, probe) in [
            ("0.0.0.0:9464", "127.0.0.1:9464"),
            ("[::]:9464", "[::1]:9464"),
            ("127.0.0.2:7000", "127.0.0.2:7000"),
            ("10.1.2.3:9464", "10.1.2.3:9464"),
            ("[::1]:9", "[::1]:9"),
        ] {
            assert_eq!(probe_addr(listen.parse().unwrap()).to_string(), probe);
        }
    }

    #[test]
    fn answers_are_judged_by_status_with_the_servers_reason() {
        assert_eq!(
            judge(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nready"),
            Ok("200 ready".into())
        );
        assert_eq!(
            judge(b"HTTP/1.1 503 Service Unavailable\r\n\r\nnot ready: shutting down\n"),
            Err("answered 503 not ready: shutting down".into())
        );
        assert_eq!(
            judge(b"HTTP/1.1 403 Forbidden\r\n\r\n"),
            Err("answered 403".into())
        );
        assert!(judge(b"SSH-2.0-OpenSSH\r\n").is_err());
        assert!(judge(b"").is_err());
        assert!(judge(b"HTTP/1.1 abc\r\n\r\n").is_err());
    }

    #[test]
    fn an_admin_server_that_is_off_is_unhealthy() {
        let why = check("", TIMEOUT).unwrap_err();
        assert!(why.contains("admin server is off"), "{why}");
    }
}
