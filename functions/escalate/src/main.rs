//! Escalate: pages a person with the full context.

#[tokio::main]
async fn main() -> Result<(), iras_lambda::Error> {
    let deps = iras_lambda::deps_from_env().await?;
    iras_lambda::run_stage(&deps, iras_lambda::Stage::Escalate).await
}
