//! Migration telemetry: events (one per token request); metrics and the report build on them;
//! `render` shows the report to people.

pub mod events;
pub mod login_rate;
pub mod metrics;
pub mod render;
pub mod report;
