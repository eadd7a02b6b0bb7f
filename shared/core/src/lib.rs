//! IRAS core: the incident's domain, the pipeline's stage logic, the offline analyst and the
//! safety policy. Knows no transport: every effect goes through a port in [`ports`].

pub mod action;
pub mod analyst;
pub mod audit;
pub mod config;
pub mod domain;
pub mod executor;
pub mod handler;
pub mod loglines;
pub mod memory;
pub mod notify;
pub mod policy;
pub mod ports;
pub mod report;
pub mod signing;
pub mod stages;
pub mod usage;

#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use config::PipelineConfig;
pub use domain::*;
pub use ports::*;
