//! ingest: EventBridge alerts (CloudWatch alarms, `iras.alert`) in, incidents opened, pipelines started.

#[tokio::main]
async fn main() -> Result<(), iras_lambda::Error> {
    let deps = iras_lambda::deps_from_env(iras_lambda::Function::Ingest).await?;
    let starter = iras_lambda::starter_from_env().await?;
    iras_lambda::run_ingest(&deps, starter.as_ref()).await
}
