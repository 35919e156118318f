//! Migration telemetry: events now; metrics and the report build on them.

pub mod events;
pub mod metrics;
pub mod report;
