//! Incidents frozen in time (`iras-scenario/1`): reading them from files, serving one (or a
//! library of them) as every evidence source, and scoring the analysts on folders of them
//! ([`eval`], behind `iras eval`). This is where the scenario files' I/O lives, so that
//! `iras-core` stays free of it.

pub mod calibrate;
pub mod eval;
pub mod faults;
mod scenario;

pub use scenario::*;
