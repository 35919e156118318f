//! Migration telemetry: events (one per token request); metrics and the report build on them;
//! `summary` puts it in one line; `render` shows the report to people.

pub mod events;
pub mod fleet;
pub mod login_rate;
pub mod metrics;
pub mod render;
pub mod report;
pub mod shared;
pub mod summary;
