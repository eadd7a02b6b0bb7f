//! approval-callback: approvals (API key, signed page, Slack) behind API Gateway.

#[tokio::main]
async fn main() -> Result<(), iras_lambda::Error> {
    let app = iras_lambda::app_from_env(iras_lambda::Function::ApprovalCallback).await?;
    iras_lambda::run_http(app).await
}
