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
