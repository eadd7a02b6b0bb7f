//! The local runtime: IRAS on one machine. An ASL interpreter that executes the very same
//! `statemachine.asl.json` that Step Functions runs, with each stage in-process and one SQLite
//! file for executions and incidents.

pub mod asl;
pub mod console;
pub mod demo;
pub mod exec_store;
pub mod local;
pub mod ops;
pub mod progress;
pub mod runtime;
pub mod serve;
pub mod store;
