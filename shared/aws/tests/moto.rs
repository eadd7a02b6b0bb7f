//! The AWS adapters against moto on localhost: each test starts its own server (under a
//! second) so tests stay independent under `cargo test` and `cargo nextest` alike. One test
//! binary, so the SDK is linked once.

// The moto harness is the crate's own (`src/testing.rs`), shared with the end-to-end tests.
use iras_aws::testing as support;

#[path = "moto/aws_deployments.rs"]
mod aws_deployments;
#[path = "moto/cloudwatch_evidence.rs"]
mod cloudwatch_evidence;
#[cfg(feature = "remediation")]
#[path = "moto/codedeploy_stop.rs"]
mod codedeploy_stop;
#[path = "moto/dynamo_store.rs"]
mod dynamo_store;
#[cfg(feature = "remediation")]
#[path = "moto/ecs_steady_state.rs"]
mod ecs_steady_state;
#[path = "moto/eventbridge.rs"]
mod eventbridge;
#[cfg(feature = "remediation")]
#[path = "moto/fake_api.rs"]
mod fake_api;
#[cfg(feature = "remediation")]
#[path = "moto/remediation.rs"]
mod remediation;
#[cfg(feature = "remediation")]
#[path = "moto/ssm_automation.rs"]
mod ssm_automation;
#[path = "moto/step_functions.rs"]
mod step_functions;
