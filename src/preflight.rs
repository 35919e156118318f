//! The checks `grantshift check` and `grantshift run` share: everything that can be known about
//! a loaded [`Config`] without creating a file or binding a port (CA files, events file, the
//! state file of learned password verifiers, upstream roots). [`Proxy::new`] runs them
//! before it creates anything (the CA, the events file), so a start that would fail later
//! fails first, and `check` passes only what `run` accepts.
//!
//! [`Proxy::new`]: crate::Proxy::new

use crate::ca::{self, CaInfo, CaWarning};
use crate::config::Config;
use crate::telemetry::events;
use crate::upstream::Dialer;
use crate::verifiers::Store;
use std::sync::Arc;

/// What the checks found: the CA's facts, and what to warn about.
#[derive(Debug)]
pub struct Preflight {
    /// The loaded CA, or `None` when both files are absent (created, constrained, on start).
    pub ca: Option<CaInfo>,
    /// Unconstrained CA, intercepted hosts outside its constraints, expiry.
    pub warnings: Vec<CaWarning>,
    /// Password verifiers in the state file.
    pub learned_verifiers: usize,
}

/// Every check: the CA files (both or neither; key mode; both parse; the key is the
/// certificate's; or, when absent, that they can be created), the events file (appendable, or
/// its directory exists), the state file (the owner's only and valid, or absent with a
/// directory that is one or can be made), the upstream root certificates. The config itself was validated
/// when it was loaded (keys, values, listen addresses, JWT keys, proxy passwords).
pub fn run(config: &Config) -> crate::Result<Preflight> {
    let ca = ca::check_files(&config.ca.cert, &config.ca.key)?;
    events::check_path(&config.telemetry.events)?;
    let learned_verifiers = Store::check(&config.state.dir)?;
    Dialer::new(
        Arc::new(arc_swap::ArcSwap::from_pointee(config.clone())),
        Arc::new(rustls::crypto::ring::default_provider()),
    )?;
    let warnings = ca
        .as_ref()
        .map(|info| {
            info.warnings(
                &config.ca.cert,
                &config.intercept.hosts,
                time::OffsetDateTime::now_utc(),
            )
        })
        .unwrap_or_default();
    Ok(Preflight {
        ca,
        warnings,
        learned_verifiers,
    })
}
