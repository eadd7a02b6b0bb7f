//! approval-callback: approvals (API key, signed page, Slack) behind API Gateway.

#[tokio::main]
async fn main() -> Result<(), iras_lambda::Error> {
    let app = iras_lambda::app_from_env().await?;
    iras_lambda::run_http(app).await
}
