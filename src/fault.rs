//! Fault injection for tests: named points in the request path that panic when a test arms
//! them on one running proxy. Compiled to nothing unless the `fault-injection` feature is on,
//! which only the test build enables (grantshift's dev-dependency on itself); release builds
//! carry no hook.

/// The armed fault points of one proxy: `(point, host)` pairs.
#[derive(Default)]
pub struct Faults {
    #[cfg(feature = "fault-injection")]
    armed: std::sync::Mutex<Vec<(String, String)>>,
}

impl Faults {
    /// Make `point` panic for requests whose intercepted host is `host`.
    #[cfg(feature = "fault-injection")]
    pub fn arm(&self, point: &str, host: &str) {
        self.armed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((point.to_string(), host.to_ascii_lowercase()));
    }

    /// Panic here if a test armed `point` for `host`; nothing at all in normal builds.
    #[inline(always)]
    pub fn inject_for(&self, _point: &str, _host: &str) {
        #[cfg(feature = "fault-injection")]
        {
            let armed = self
                .armed
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .any(|(p, h)| p == _point && h.eq_ignore_ascii_case(_host));
            if armed {
                panic!("fault injected at {_point} for {_host}");
            }
        }
    }
}

/// Block the calling thread for good, in test builds, if the environment variable `var` holds
/// `nth` (e.g. `GRANTSHIFT_FAULT_STALL_STATE_WRITE=2`: the second state write stops halfway),
/// so a test can kill the binary in the middle of a write. Nothing at all in normal builds.
#[inline(always)]
pub fn stall_if_env(_var: &str, _nth: u64) {
    #[cfg(feature = "fault-injection")]
    {
        let armed = std::env::var(_var).is_ok_and(|v| v.trim() == _nth.to_string());
        if armed {
            tracing::warn!(point = _var, "fault injected: stalled for good");
            loop {
                std::thread::park();
            }
        }
    }
}
