//! Phase 1: `--tunnels` CONNECT tunnels to the echo server, each checked by an echo round
//! trip, held open through phase 2 and checked again after it.

use crate::summary::Summary;
use crate::{progress, STEP_TIMEOUT, TUNNEL_HOST};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

/// Open `n` tunnels, `parallelism` at a time; one result per tunnel, in order.
pub async fn open_tunnels(
    proxy: SocketAddr,
    n: usize,
    parallelism: usize,
    t0: Instant,
    summary: &Mutex<Summary>,
) -> Vec<Result<TcpStream, String>> {
    let permits = Arc::new(Semaphore::new(parallelism));
    let mut set = JoinSet::new();
    let mut results: Vec<Option<Result<TcpStream, String>>> = (0..n).map(|_| None).collect();
    let mut done = 0usize;
    let mut record = |done: &mut usize, (i, r): (usize, Result<TcpStream, String>)| {
        if r.is_ok() {
            summary.lock().unwrap().tunnels_open += 1;
        }
        results[i] = Some(r);
        *done += 1;
        if *done % 1000 == 0 {
            progress(t0, &format!("phase 1: {done} tunnels done"));
        }
    };
    for i in 0..n {
        let permit = permits
            .clone()
            .acquire_owned()
            .await
            .expect("open semaphore");
        set.spawn(async move {
            let result = match tokio::time::timeout(STEP_TIMEOUT, open_tunnel(proxy, i)).await {
                Ok(r) => r,
                Err(_) => Err(format!(
                    "tunnel {i}: no echo within {}s",
                    STEP_TIMEOUT.as_secs()
                )),
            };
            drop(permit);
            (i, result)
        });
        while let Some(joined) = set.try_join_next() {
            record(&mut done, joined.expect("tunnel task"));
        }
    }
    while let Some(joined) = set.join_next().await {
        record(&mut done, joined.expect("tunnel task"));
    }
    results.into_iter().map(Option::unwrap).collect()
}

async fn open_tunnel(proxy: SocketAddr, i: usize) -> Result<TcpStream, String> {
    let mut s = testkit::try_tunnel(proxy, &format!("{TUNNEL_HOST}:443"))
        .await
        .map_err(|e| format!("tunnel {i}: {e}"))?;
    echo_round_trip(&mut s, i, 0).await?;
    Ok(s)
}

async fn echo_round_trip(s: &mut TcpStream, i: usize, round: u32) -> Result<(), String> {
    let msg = format!("soak tunnel {i} round {round}\n");
    testkit::try_echo(s, msg.as_bytes())
        .await
        .map_err(|e| format!("tunnel {i} round {round}: {e}"))
}

/// Every held tunnel must still carry bytes both ways.
pub async fn recheck_tunnels(
    tunnels: &mut Vec<TcpStream>,
    parallelism: usize,
) -> Result<(), String> {
    let permits = Arc::new(Semaphore::new(parallelism));
    let mut set = JoinSet::new();
    for (i, mut s) in std::mem::take(tunnels).into_iter().enumerate() {
        let permit = permits.clone().acquire_owned().await.expect("semaphore");
        set.spawn(async move {
            let r = tokio::time::timeout(STEP_TIMEOUT, echo_round_trip(&mut s, i, 1))
                .await
                .unwrap_or_else(|_| Err(format!("tunnel {i} round 1: no echo within 30s")));
            drop(permit);
            (i, s, r)
        });
    }
    let mut back: Vec<Option<TcpStream>> = Vec::new();
    let mut errors = Vec::new();
    while let Some(joined) = set.join_next().await {
        let (i, s, r) = joined.expect("recheck task");
        if back.len() <= i {
            back.resize_with(i + 1, || None);
        }
        back[i] = Some(s);
        if let Err(e) = r {
            errors.push(e);
        }
    }
    *tunnels = back.into_iter().flatten().collect();
    if errors.is_empty() {
        Ok(())
    } else {
        errors.sort();
        Err(format!(
            "{} held tunnel(s) stopped echoing after the logins; first: {}",
            errors.len(),
            errors[0]
        ))
    }
}
