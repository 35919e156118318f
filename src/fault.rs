//! Fault injection for tests: named points in the request path that panic when a test arms
//! them. Compiled to nothing unless the `fault-injection` feature is on, which only the test
//! build enables (grantshift's dev-dependency on itself); release builds carry no hook.

#[cfg(feature = "fault-injection")]
mod hooks {
    use std::sync::Mutex;

    static ARMED: Mutex<Vec<(String, String)>> = Mutex::new(Vec::new());

    /// Make `point` panic for requests whose intercepted host is `host`.
    pub fn arm(point: &str, host: &str) {
        ARMED
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((point.to_string(), host.to_ascii_lowercase()));
    }

    pub fn inject_for(point: &str, host: &str) {
        let armed = ARMED
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .any(|(p, h)| p == point && h.eq_ignore_ascii_case(host));
        if armed {
            panic!("fault injected at {point} for {host}");
        }
    }
}

#[cfg(feature = "fault-injection")]
pub use hooks::arm;

/// Panic here if a test armed `point` for `host`; nothing at all in normal builds.
#[inline(always)]
pub fn inject_for(_point: &str, _host: &str) {
    #[cfg(feature = "fault-injection")]
    hooks::inject_for(_point, _host);
}
