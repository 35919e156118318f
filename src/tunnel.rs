//! Blind tunnels: hosts that are not intercepted get their bytes copied both ways, untouched.
//! TLS is never opened; grantshift never sees what flows.

use crate::idle::IdleTimeout;
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use tokio::net::TcpStream;

/// Copy until both directions have ended. `copy_bidirectional` forwards a half-close: when
/// one side finishes sending, the other side's write half is shut down and the reverse
/// direction keeps flowing.
/// Both sides share the client connection's idle clock (`tunnel_idle_timeout`).
pub async fn run(
    client_io: Upgraded,
    mut upstream: IdleTimeout<TcpStream>,
    client: SocketAddr,
    host: String,
) {
    let mut client_io = TokioIo::new(client_io);
    match tokio::io::copy_bidirectional(&mut client_io, &mut upstream).await {
        Ok((up, down)) => tracing::debug!(%client, %host, up, down, "tunnel closed"),
        Err(e) => tracing::debug!(%client, %host, error = %e, "tunnel ended with an error"),
    }
}
