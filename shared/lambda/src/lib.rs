//! The bootstrap every IRAS Lambda shares, and nothing else: it builds core's ports from the
//! environment once per cold start ([`deps_from_env`], [`app_from_env`]), hands each event to
//! core ([`stage_handler`], [`ingest::handle`]) or to the one HTTP router ([`run_http`]), and
//! turns a stage's error into a Lambda [`Diagnostic`] whose `error_type` is the name the state
//! machine's `Retry`/`Catch` match. Business rules live in `iras-core`.
//!
//! Each function links only the adapters of the ports it calls ([`Function::ports`]): one
//! feature of this crate per port, enabled in `functions/<f>/Cargo.toml`.

mod boot;
pub mod function;
#[cfg(feature = "intake")]
pub mod ingest;
pub mod secrets;

#[cfg(feature = "http")]
use std::sync::Arc;

use iras_core::handler;
#[cfg(feature = "intake")]
use iras_core::ports::{PipelineStarter, TaskCallbacks};
use iras_core::stages::{Deps, StageError};
#[cfg(feature = "http")]
use iras_http::App;
use lambda_runtime::service_fn;
use serde_json::Value;

#[cfg(feature = "callbacks")]
pub use boot::callbacks_from_env;
#[cfg(feature = "starter")]
pub use boot::starter_from_env;
#[cfg(feature = "http")]
pub use boot::{app_from_env, http_config};
pub use boot::{build_deps, deps_from_env, BootError, Settings, PUBLIC_URL, SCENARIOS_DIR};
pub use function::Function;
pub use iras_core::handler::{Port, Stage};
pub use lambda_runtime::{Diagnostic, Error, LambdaEvent};

/// A stage error on its way out of a Lambda. (The orphan rule forbids `From<StageError> for
/// Diagnostic` itself here: both types are foreign to this crate.)
#[derive(Debug)]
pub struct StageFailed(pub StageError);

/// Step Functions names the task's error after `error_type`, so
/// `"ErrorEquals": ["ApprovalMissing"]` matches the stage's own variant.
impl From<StageFailed> for Diagnostic {
    fn from(StageFailed(e): StageFailed) -> Diagnostic {
        Diagnostic {
            error_type: e.name().to_string(),
            error_message: e.message(),
        }
    }
}

/// One state-machine task: the state's `Payload` in, the stage's output out (what the state's
/// `ResultSelector` reads as `$.Payload`).
pub async fn stage_handler(
    deps: &Deps,
    stage: Stage,
    event: LambdaEvent<Value>,
) -> Result<Value, Diagnostic> {
    let request_id = event.context.request_id.clone();
    match handler::handle(deps, stage, event.payload).await {
        Ok(out) => Ok(out),
        Err(e) => {
            tracing::warn!(stage = stage.state_name(), request_id, error_type = e.name(), error = %e.message(), "stage failed");
            Err(StageFailed(e).into())
        }
    }
}

/// Serves one pipeline stage until the Lambda environment stops the process.
pub async fn run_stage(deps: &Deps, stage: Stage) -> Result<(), Error> {
    lambda_runtime::run(service_fn(move |event| stage_handler(deps, stage, event))).await
}

/// Serves the `ingest` function: EventBridge and SNS alerts in, through their lifecycle.
#[cfg(feature = "intake")]
pub async fn run_ingest(
    deps: &Deps,
    starter: &dyn PipelineStarter,
    callbacks: &dyn TaskCallbacks,
) -> Result<(), Error> {
    lambda_runtime::run(service_fn(move |event| {
        ingest::handle(deps, starter, callbacks, event)
    }))
    .await
}

/// Serves the one HTTP router (webhook, incidents, approvals, health) behind API Gateway.
#[cfg(feature = "http")]
pub async fn run_http(app: Arc<App>) -> Result<(), Error> {
    use lambda_http::tower::ServiceExt;
    let router = iras_http::router(app).map_request(with_gateway_caller);
    lambda_http::run(router).await
}

/// The IAM principal API Gateway's IAM authorizer checked (`API_AUTH=iam`), from the request
/// context onto the request, where the router reads who is calling.
#[cfg(feature = "http")]
pub fn with_gateway_caller(mut req: lambda_http::Request) -> lambda_http::Request {
    use lambda_http::request::RequestContext;
    use lambda_http::RequestExt;
    let arn = match req.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(ctx)) => ctx
            .authorizer
            .as_ref()
            .and_then(|a| a.iam.as_ref())
            .and_then(|iam| iam.user_arn.clone()),
        _ => None,
    };
    if let Some(arn) = arn.filter(|a| !a.is_empty()) {
        req.extensions_mut().insert(iras_http::GatewayCaller(arn));
    }
    req
}
