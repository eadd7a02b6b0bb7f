//! ingest: EventBridge and SNS alerts (CloudWatch alarms, `iras.alert`) in, through their lifecycle.

#[tokio::main]
async fn main() -> Result<(), iras_lambda::Error> {
    let deps = iras_lambda::deps_from_env(iras_lambda::Function::Ingest).await?;
    let starter = iras_lambda::starter_from_env().await?;
    let callbacks = iras_lambda::callbacks_from_env().await?;
    iras_lambda::run_ingest(&deps, starter.as_ref(), callbacks.as_ref()).await
}
