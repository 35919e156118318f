//! Blind tunnels: hosts that are not intercepted get their bytes copied both ways, untouched.
//! TLS is never opened; grantshift never sees what flows.
//!
//! An idle tunnel costs almost nothing: when the client connection is a plain TCP socket (the
//! normal case), both sockets are driven by readiness and data moves through one buffer per
//! runtime thread, so a tunnel holds no copy buffer of its own while it waits. Only when the
//! receiver is slower than the sender is the backlog kept on the heap, until it drains.

use crate::idle::{Activity, IdleTimeout};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use std::cell::RefCell;
use std::io;
use std::sync::Arc;
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

/// Bytes moved per read: large enough that a bulk transfer makes few system calls (bench D:
/// 64 KiB → 450, 128 KiB → 330, 256 KiB → 280 CPU ms per GiB). It also bounds what a tunnel
/// whose receiver is slower than its sender keeps on the heap (at most one chunk).
const CHUNK: usize = 128 * 1024;

thread_local! {
    /// The copy buffer, one per runtime thread and shared by all its tunnels: zeroed once, not
    /// per read (zeroing a 64 KiB stack buffer per read took bench D from 450 to 630 ms/GiB).
    static CHUNK_BUF: RefCell<Box<[u8]>> = RefCell::new(vec![0; CHUNK].into_boxed_slice());
}

/// Copy until both directions have ended, forwarding a half-close: when one side finishes
/// sending, the other side's write half is shut down and the reverse direction keeps flowing.
/// Both sides share the client connection's idle clock (`tunnel_idle_timeout`).
pub async fn run(client_io: Upgraded, upstream: TcpStream, activity: Arc<Activity>) {
    let result = match client_io.downcast::<TokioIo<IdleTimeout<TcpStream>>>() {
        Ok(parts) => {
            let client_tcp = parts.io.into_inner().into_inner();
            splice(client_tcp, parts.read_buf, upstream, &activity).await
        }
        // Not a TCP socket underneath (an embedded or fuzzed front): the generic copy.
        Err(client_io) => {
            let mut client_io = TokioIo::new(client_io);
            let mut upstream = IdleTimeout::new(upstream, activity);
            tokio::io::copy_bidirectional(&mut client_io, &mut upstream).await
        }
    };
    match result {
        Ok((up, down)) => tracing::debug!(up, down, "tunnel closed"),
        Err(e) => tracing::debug!(error = %e, "tunnel ended with an error"),
    }
}

/// Both directions at once; `early` holds bytes the client sent right behind its CONNECT
/// that hyper had already read.
async fn splice(
    client: TcpStream,
    early: bytes::Bytes,
    upstream: TcpStream,
    activity: &Activity,
) -> io::Result<(u64, u64)> {
    let (client_read, mut client_write) = client.into_split();
    let (upstream_read, mut upstream_write) = upstream.into_split();
    let early_len = early.len() as u64;
    if !early.is_empty() {
        upstream_write.write_all(&early).await?;
    }
    // `early`, even empty, is a view of hyper's whole read buffer for the CONNECT (8 KiB):
    // an idle tunnel that kept it would hold that buffer for as long as it stays open.
    drop(early);
    tokio::try_join!(
        pump(client_read, &mut upstream_write, activity),
        pump(upstream_read, &mut client_write, activity),
    )
    .map(|(up, down)| (up + early_len, down))
}

/// One direction: wait until `src` is readable, move what is there, repeat; on EOF shut down
/// the write half of `dst`.
async fn pump(
    src: OwnedReadHalf,
    dst: &mut OwnedWriteHalf,
    activity: &Activity,
) -> io::Result<u64> {
    let mut total = 0u64;
    let mut backlog: Vec<u8> = Vec::new();
    loop {
        if !backlog.is_empty() {
            tokio::select! {
                biased;
                ready = dst.writable() => ready?,
                () = activity.expired() => return Err(idle_error()),
            }
            match dst.try_write(&backlog) {
                Ok(n) => {
                    backlog.drain(..n);
                    total += n as u64;
                    activity.touch();
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
            if backlog.is_empty() {
                backlog = Vec::new();
            }
            continue;
        }
        // `biased`: a ready socket is served without arming the idle timer.
        tokio::select! {
            biased;
            ready = src.readable() => ready?,
            () = activity.expired() => return Err(idle_error()),
        }
        match move_once(&src, dst, &mut backlog)? {
            Moved::Bytes(n) => {
                activity.touch();
                total += n as u64;
            }
            Moved::NotReady => {}
            Moved::Eof => {
                dst.shutdown().await?;
                return Ok(total);
            }
        }
    }
}

enum Moved {
    /// This many bytes went to the destination (any rest is in the backlog).
    Bytes(usize),
    NotReady,
    Eof,
}

/// Read what `src` has and write what `dst` takes; the rest goes to `backlog`. Synchronous,
/// so the thread's buffer is borrowed only here and never held by a waiting tunnel.
fn move_once(
    src: &OwnedReadHalf,
    dst: &OwnedWriteHalf,
    backlog: &mut Vec<u8>,
) -> io::Result<Moved> {
    CHUNK_BUF.with_borrow_mut(|chunk| {
        let n = match src.try_read(chunk) {
            Ok(0) => return Ok(Moved::Eof),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Moved::NotReady),
            Err(e) => return Err(e),
        };
        let mut written = 0;
        while written < n {
            match dst.try_write(&chunk[written..n]) {
                Ok(k) => written += k,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
        backlog.extend_from_slice(&chunk[written..n]);
        Ok(Moved::Bytes(written))
    })
}

fn idle_error() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "tunnel idle timeout")
}
