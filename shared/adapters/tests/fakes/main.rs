//! Every integration against a local fake of its service, speaking the service's documented
//! request and response shapes: a normal answer, an empty one, an error status with the
//! service's own error body, a timeout and a malformed body, and what the fake received.

mod support;

mod elasticsearch;
mod github;
mod loki;
mod pagerduty;
mod prometheus;
mod runner;
mod scenario_replay;
mod slack;
