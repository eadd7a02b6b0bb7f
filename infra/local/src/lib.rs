//! The local runtime: IRAS on one machine. The `sfn-local` engine executes the very same
//! `statemachine.asl.json` that Step Functions runs, with each stage in-process and one SQLite
//! file for executions and incidents.

pub mod console;
pub mod data_dir;
pub mod demo;
pub mod eval_cli;
pub mod local;
pub mod ops;
pub mod progress;
pub mod serve;
pub mod server;
pub mod store;

/// The analyst the environment asks for (`LLM_PROVIDER`): a model with the offline analyst as
/// its fallback, or the offline analyst alone.
pub fn analyst_from_env() -> Result<std::sync::Arc<dyn iras_core::Analyst>, String> {
    let vars: std::collections::HashMap<String, String> = std::env::vars().collect();
    iras_llm::analyst_from_env(&vars).map_err(|e| e.to_string())
}

/// The integrations configured in the environment (Prometheus, Loki, Slack, PagerDuty, and
/// with the `aws` feature CloudWatch, ECS and CodeDeploy), with one line on stderr per
/// integration saying what is used and what falls back.
pub async fn integrations_from_env() -> Result<iras_core::Integrations, String> {
    let vars: std::collections::HashMap<String, String> = std::env::vars().collect();
    let integrations = integrations_from_vars(&vars).await?;
    for note in &integrations.notes {
        eprintln!("  {note}");
    }
    Ok(integrations)
}

/// The executor `REMEDIATION_EXECUTOR` names for `iras serve`: dry-run (the default), runner
/// (`REMEDIATION_RUNNER_URL` and `REMEDIATION_RUNNER_SECRET`), or aws (a build with
/// `--features remediation`; runner actions then go to the runner when one is configured).
pub async fn executor_from_vars(
    vars: &std::collections::HashMap<String, String>,
    config: &iras_core::PipelineConfig,
) -> Result<std::sync::Arc<dyn iras_core::Executor>, String> {
    use iras_core::config::ExecutorKind;
    use std::sync::Arc;
    let runner: Option<Arc<dyn iras_core::Executor>> =
        match iras_adapters::RunnerConfig::from_vars(vars).map_err(|e| e.to_string())? {
            Some(c) => Some(Arc::new(iras_adapters::RunnerExecutor::new(c)?)),
            None => None,
        };
    match config.executor {
        ExecutorKind::DryRun => Ok(Arc::new(iras_core::executor::DryRunExecutor)),
        ExecutorKind::Runner => runner.ok_or_else(|| {
            "REMEDIATION_EXECUTOR=runner, but REMEDIATION_RUNNER_URL is not set".to_string()
        }),
        #[cfg(feature = "remediation")]
        ExecutorKind::Aws => {
            let env = iras_core::config::EnvVars(vars);
            let region = env
                .get("AWS_REGION")
                .or_else(|| env.get("AWS_DEFAULT_REGION"));
            let sdk = iras_aws::aws_config_with(region, env.get("AWS_ENDPOINT_URL")).await;
            let mut e = iras_aws::AwsExecutor::new(&sdk, config.policy.clone());
            if let Some(r) = runner {
                e = e.with_runner(r);
            }
            Ok(Arc::new(e))
        }
        #[cfg(not(feature = "remediation"))]
        ExecutorKind::Aws => Err(
            "REMEDIATION_EXECUTOR=aws, but this build of iras has no AWS executor: build it with \
             `--features remediation`"
                .into(),
        ),
    }
}

/// The variables that configure the AWS evidence sources (`iras_aws::aws_evidence_from_vars`).
pub const AWS_EVIDENCE_VARS: [&str; 4] = [
    "CLOUDWATCH_LOG_GROUPS",
    "CLOUDWATCH_METRICS",
    "ECS_CLUSTER",
    "CODEDEPLOY_APPLICATION",
];

/// [`integrations_from_env`] over `vars`.
pub async fn integrations_from_vars(
    vars: &std::collections::HashMap<String, String>,
) -> Result<iras_core::Integrations, String> {
    #[allow(unused_mut)]
    let mut integrations = iras_adapters::integrations_from_env(vars).map_err(|e| e.to_string())?;
    let env = iras_core::config::EnvVars(vars);
    let asked: Vec<&str> = AWS_EVIDENCE_VARS
        .into_iter()
        .filter(|v| env.is_set(v))
        .collect();
    #[cfg(feature = "aws")]
    if !asked.is_empty() {
        let region = env
            .get("AWS_REGION")
            .or_else(|| env.get("AWS_DEFAULT_REGION"));
        let sdk = iras_aws::aws_config_with(region, env.get("AWS_ENDPOINT_URL")).await;
        integrations
            .merge(iras_aws::aws_evidence_from_vars(vars, &sdk).map_err(|e| e.to_string())?);
    }
    #[cfg(not(feature = "aws"))]
    if let Some(var) = asked.first() {
        // Set but not honoured would be worse than refused.
        return Err(format!(
            "{var} is set, but this build of iras reads no AWS evidence: build it with \
             `--features aws` (cargo run --release --features aws --bin iras -- ...)"
        ));
    }
    Ok(integrations)
}

#[cfg(test)]
mod tests {
    use super::*;

    use iras_core::testing::vars;

    #[cfg(feature = "aws")]
    #[tokio::test]
    async fn cloudwatch_and_ecs_evidence_join_the_http_integrations() {
        let got = integrations_from_vars(&vars(&[
            ("AWS_REGION", "eu-west-1"),
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:9"),
            ("CLOUDWATCH_LOG_GROUPS", "/ecs/{service}"),
            ("ECS_CLUSTER", "shop"),
            ("PROMETHEUS_BASE_URL", "http://prometheus.internal:9090"),
        ]))
        .await
        .unwrap();
        let logs: Vec<String> = got.evidence.logs.iter().map(|s| s.name()).collect();
        let deployments: Vec<String> = got.evidence.deployments.iter().map(|s| s.name()).collect();
        let metrics: Vec<String> = got.evidence.metrics.iter().map(|s| s.name()).collect();
        assert_eq!(logs, ["cloudwatch-logs"]);
        assert_eq!(deployments, ["ecs"]);
        assert_eq!(metrics, ["prometheus"]);
    }

    #[cfg(not(feature = "aws"))]
    #[tokio::test]
    async fn aws_evidence_asked_of_a_build_without_it_is_refused_by_name() {
        let e = integrations_from_vars(&vars(&[("ECS_CLUSTER", "shop")]))
            .await
            .err()
            .expect("refused");
        assert!(
            e.contains("ECS_CLUSTER") && e.contains("--features aws"),
            "{e}"
        );
    }
}
