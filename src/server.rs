//! The one accept loop every listener uses (the proxy port, the transparent TLS listener,
//! the admin server), and binding with a deep accept queue.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// How long the loop pauses after a failed accept.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Accept connections on `listener` until `stop` resolves, handing each to `serve` with its
/// slot from `slots`. At the cap (no slot free) the loop stops accepting: excess clients wait
/// in the kernel's listen backlog instead of being refused. Every connection gets
/// `TCP_NODELAY` (small responses must not wait ~40 ms for the client's delayed ACK). A failed
/// accept (typically EMFILE) is logged and followed by a short pause instead of a spin;
/// connections in flight carry on.
pub async fn accept_loop<F>(
    listener: TcpListener,
    name: &'static str,
    slots: Arc<Semaphore>,
    stop: impl Future<Output = ()>,
    mut serve: F,
) where
    F: FnMut(TcpStream, SocketAddr, OwnedSemaphorePermit),
{
    tokio::pin!(stop);
    loop {
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
            () = &mut stop => return,
        };
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer)) => {
                    let _ = tcp.set_nodelay(true);
                    serve(tcp, peer, slot);
                }
                Err(e) => {
                    tracing::warn!(listener = name, error = %e, "accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            },
            () = &mut stop => return,
        }
    }
}

/// Bind a listening socket with a deep accept queue: a burst of new clients (thousands of
/// tunnels opening at once) must queue, not overflow into SYN retries.
pub fn bind(addr: std::net::SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(4096)
}
