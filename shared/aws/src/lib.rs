//! IRAS on AWS: the adapters behind core's ports. DynamoDB holds incidents and post-mortems
//! ([`DynamoStore`]), Step Functions runs the pipeline ([`SfnStarter`]) and waits for approvals
//! ([`SfnCallbacks`]), EventBridge carries lifecycle events out ([`EventBridgePublisher`]).
//!
//! Each client but DynamoDB's is behind a feature (`sfn`, `events`, `evidence`), so a function
//! links only the SDKs its stage calls.
//!
//! Clients are built once per process from an [`SdkConfig`]: [`aws_config_from_env`] on AWS,
//! [`emulator_config`] against an emulator on localhost.

#[cfg(feature = "evidence")]
pub mod cloudwatch;
#[cfg(feature = "evidence")]
pub mod deploys;
mod dynamo;
#[cfg(feature = "events")]
mod events;
#[cfg(feature = "evidence")]
mod evidence;
#[cfg(feature = "remediation")]
pub mod remediation;
#[cfg(feature = "sfn")]
mod sfn;

pub use aws_config::SdkConfig;

#[cfg(feature = "testing")]
pub mod testing;
#[cfg(feature = "evidence")]
pub use cloudwatch::{
    CloudWatchLogs, CloudWatchLogsConfig, CloudWatchMetrics, MetricSpec, MetricsConfig,
};
#[cfg(feature = "evidence")]
pub use deploys::{CodeDeployConfig, CodeDeployDeployments, EcsConfig, EcsDeployments};
pub use dynamo::{fit_attempt, DynamoStore, PostMortemQuery, MAX_ATTEMPT_BYTES};
#[cfg(feature = "events")]
pub use events::{detail_type, EventBridgePublisher, EVENT_SOURCE};
#[cfg(feature = "evidence")]
pub use evidence::{aws_evidence_from_vars, ServiceMap};
#[cfg(feature = "remediation")]
pub use remediation::{AwsExecutor, EcsSettle};
#[cfg(feature = "sfn")]
pub use sfn::{SfnCallbacks, SfnStarter};

use aws_config::{BehaviorVersion, Region};

/// Environment variables that name the deployed resources (set by the SAM template).
pub mod env {
    pub const TABLE_NAME: &str = "TABLE_NAME";
    pub const STATE_MACHINE_ARN: &str = "STATE_MACHINE_ARN";
    pub const EVENT_BUS_NAME: &str = "EVENT_BUS_NAME";
}

/// The SDK's standard chain: credentials, `AWS_REGION` and `AWS_ENDPOINT_URL` (and its
/// per-service variants) from the environment, profile or the Lambda role.
pub async fn aws_config_from_env() -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest()).load().await
}

/// Same chain, with the region and endpoint forced when given (the operator CLI's flags).
pub async fn aws_config_with(region: Option<&str>, endpoint_url: Option<&str>) -> SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest());
    if let Some(region) = region {
        loader = loader.region(Region::new(region.to_string()));
    }
    if let Some(url) = endpoint_url {
        loader = loader.endpoint_url(url);
    }
    loader.load().await
}

/// For an emulator on localhost (moto): fixed fake credentials so the SDK never goes looking
/// for real ones (or for the EC2 metadata service), and `us-east-1`.
pub async fn emulator_config(endpoint_url: &str) -> SdkConfig {
    let credentials =
        aws_sdk_dynamodb::config::Credentials::new("test", "test", None, None, "emulator");
    aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(endpoint_url)
        .credentials_provider(credentials)
        .load()
        .await
}

/// An SDK error with its whole chain of causes: `Display` alone says only "service error".
pub(crate) fn describe(err: &(dyn std::error::Error + 'static)) -> String {
    aws_sdk_dynamodb::error::DisplayErrorContext(err).to_string()
}
