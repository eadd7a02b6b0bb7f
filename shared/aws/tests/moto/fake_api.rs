//! What the tests against local fakes of AWS's JSON APIs share: an executor pointed at the
//! fake under a policy of the test's own, and the call of step 0's apply.

use std::time::Duration;

use iras_aws::AwsExecutor;
use iras_core::policy::RemediationPolicy;
use iras_core::ports::StepCall;
use iras_core::{Action, IncidentId, StepPhase};

/// The AWS executor against the fake at `url`, allowed what `policy` (YAML) allows, polling
/// every 20 ms.
pub async fn executor_against(url: &str, policy: &str) -> AwsExecutor {
    let sdk = iras_aws::emulator_config(url).await;
    let policy = RemediationPolicy::parse(policy, "policy.yaml").unwrap();
    let mut e = AwsExecutor::new(&sdk, policy);
    e.poll = Duration::from_millis(20);
    e
}

/// Step 0's apply of `action` for `incident`, bounded by `timeout`.
pub fn apply_step<'a>(
    incident: &'a IncidentId,
    action: &'a Action,
    timeout: Duration,
) -> StepCall<'a> {
    StepCall {
        incident,
        step: 0,
        phase: StepPhase::Apply,
        action,
        timeout,
    }
}
