//! Evidence already on AWS: CloudWatch Logs Insights ([`CloudWatchLogs`]), CloudWatch metrics
//! ([`CloudWatchMetrics`]), ECS service deployments ([`EcsDeployments`]) and CodeDeploy
//! deployments ([`CodeDeployDeployments`]), built from environment variables by
//! [`aws_evidence_from_vars`]. Like the HTTP integrations in `iras-adapters`, every failure
//! (an AWS error code, a refused connection, a timeout, a malformed answer) becomes a
//! [`SourceError`] so the stage records the source in `failed_sources` and goes on.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use aws_config::SdkConfig;
use aws_sdk_cloudwatchlogs::error::{ProvideErrorMetadata, SdkError};
use iras_core::config::ConfigError;
use iras_core::{EvidenceQuery, Integrations, SourceError};

use crate::cloudwatch::{CloudWatchLogs, CloudWatchLogsConfig, CloudWatchMetrics, MetricsConfig};
use crate::deploys::{CodeDeployConfig, CodeDeployDeployments, EcsConfig, EcsDeployments};

/// Per-request timeout unless `INTEGRATION_TIMEOUT_SECONDS` says otherwise (the same variable
/// and default as the HTTP integrations).
pub const DEFAULT_TIMEOUT: Duration = iras_core::config::DEFAULT_INTEGRATION_TIMEOUT;

/// The environment's values: blank counts as unset.
pub(crate) use iras_core::config::EnvVars as Vars;

pub(crate) fn error(name: &str, problem: impl Into<String>) -> ConfigError {
    ConfigError {
        name: name.to_string(),
        problem: problem.into(),
    }
}

/// The services to read for a query: the ones named, else the alert's own (as the HTTP
/// integrations do: an AWS API cannot be asked for "every service" either).
pub(crate) fn services_for(query: &EvidenceQuery) -> Vec<String> {
    if !query.services.is_empty() {
        return query.services.clone();
    }
    query.alert.service.clone().into_iter().collect()
}

/// From an IRAS service name to the AWS resource(s) holding it: explicit `service=resource`
/// pairs (a service may be repeated to list several resources), and optionally a template
/// with `{service}` for every service not listed.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ServiceMap {
    pub explicit: Vec<(String, String)>,
    pub template: Option<String>,
}

impl ServiceMap {
    /// Just a template (`{service}`, `/ecs/{service}`).
    pub fn template(t: &str) -> Self {
        ServiceMap {
            explicit: Vec::new(),
            template: Some(t.to_string()),
        }
    }

    /// `checkout=/ecs/checkout,checkout=/ecs/checkout-envoy,/aws/lambda/{service}`; every
    /// resource, explicit or rendered, must satisfy `valid` (the AWS name's character set),
    /// so nothing else ever reaches an API parameter.
    pub fn parse(v: &str, valid: fn(&str) -> bool, what: &str) -> Result<Self, String> {
        let mut map = ServiceMap::default();
        for item in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            match item.split_once('=') {
                Some((service, resource)) => {
                    let (service, resource) = (service.trim(), resource.trim());
                    if service.is_empty() || resource.is_empty() {
                        return Err(format!("`{item}` is not service={what}"));
                    }
                    if !valid(resource) {
                        return Err(format!("`{resource}` is not a valid {what}"));
                    }
                    map.explicit
                        .push((service.to_string(), resource.to_string()));
                }
                None if item.contains("{service}") => {
                    if map.template.is_some() {
                        return Err("more than one {service} template".into());
                    }
                    if !valid(&item.replace("{service}", "x")) {
                        return Err(format!("`{item}` is not a valid {what} template"));
                    }
                    map.template = Some(item.to_string());
                }
                None => {
                    return Err(format!(
                        "`{item}` is neither service={what} nor a template with {{service}}"
                    ))
                }
            }
        }
        if map.explicit.is_empty() && map.template.is_none() {
            return Err(format!("no {what} listed"));
        }
        Ok(map)
    }

    /// The resources of one service. A template rendered with a name that makes it invalid
    /// (quotes, spaces, pipes) gives nothing: such a name cannot be a resource.
    pub fn resolve(&self, service: &str, valid: fn(&str) -> bool) -> Vec<String> {
        let listed: Vec<String> = self
            .explicit
            .iter()
            .filter(|(s, _)| s == service)
            .map(|(_, r)| r.clone())
            .collect();
        if !listed.is_empty() {
            return listed;
        }
        match &self.template {
            Some(t) => {
                let r = t.replace("{service}", service);
                if valid(&r) {
                    vec![r]
                } else {
                    tracing::warn!(service, template = %t, "service name makes an invalid AWS name: skipped");
                    Vec::new()
                }
            }
            None => Vec::new(),
        }
    }

    pub fn describe(&self) -> String {
        let mut parts: Vec<String> = self
            .explicit
            .iter()
            .map(|(s, r)| format!("{s} → {r}"))
            .collect();
        if let Some(t) = &self.template {
            parts.push(format!("otherwise {t}"));
        }
        parts.join(", ")
    }
}

/// An SDK error as a source error: a timeout is a timeout; an AWS error keeps its code and
/// message (`AccessDeniedException: User ... is not authorized to perform logs:StartQuery`),
/// with a hint where the fix is usually the function's role; anything else (no connection,
/// a malformed answer) keeps its whole chain of causes.
pub(crate) fn sdk_failure<E, R>(
    source: &str,
    what: &str,
    err: SdkError<E, R>,
    timeout: Duration,
) -> SourceError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + 'static,
{
    match &err {
        SdkError::TimeoutError(_) => SourceError::Timeout(timeout.as_millis() as u64),
        SdkError::ServiceError(_) => {
            let code = err.code().unwrap_or("error");
            let message = err.message().unwrap_or("no message");
            let lower = code.to_ascii_lowercase();
            let hint = if lower.contains("accessdenied")
                || lower.contains("unauthorized")
                || lower.contains("notauthorized")
            {
                " (check the IAM role's permissions)"
            } else if lower.contains("expiredtoken") || lower.contains("invalidclienttoken") {
                " (check the AWS credentials)"
            } else {
                ""
            };
            SourceError::Unavailable(format!("{source}: {what}: {code}{hint}: {message}"))
        }
        SdkError::ResponseError(_) => {
            SourceError::BadResponse(format!("{source}: {what}: {}", crate::describe(&err)))
        }
        _ => SourceError::Unavailable(format!("{source}: {what}: {}", crate::describe(&err))),
    }
}

/// Builds the AWS evidence sources the variables configure, with clients from `sdk` (the
/// function's role and region). An unset source is not built; a badly formed value is an
/// error naming its variable.
///
/// Logs (CloudWatch Logs Insights: `StartQuery`, then `GetQueryResults` until done):
/// - `CLOUDWATCH_LOG_GROUPS`: each service's log group(s): `checkout=/ecs/checkout,
///   payments=/aws/lambda/payments` (repeat a service for several groups), and/or one template
///   for the others, `/ecs/{service}`.
/// - `CLOUDWATCH_LOG_FILTER`: the regular expression a line must match, default
///   `(?i)(warn|error|fatal|exception|panic)`; `off` keeps every line.
/// - `CLOUDWATCH_LOG_SERVICE_FIELD`: for a group several services share, the log field naming
///   the service (`service`); lines are then filtered on it, the name quoted and escaped.
/// - `CLOUDWATCH_LOGS_LIMIT`: lines per service at most (default 200, up to 10000).
/// - `CLOUDWATCH_QUERY_TIMEOUT_SECONDS`: how long a query may run before it is stopped and the
///   source reported as timed out (default 30).
///
/// Metrics (`GetMetricData`, the window and the same window 7 days earlier as baseline):
/// - `CLOUDWATCH_METRICS`: `;`-separated signals, each a preset, `lambda` (Errors,
///   Invocations, Throttles, Duration p99 by `FunctionName`) or `ecs` (CPU and memory
///   utilization by `ServiceName` in `ECS_CLUSTER`), or
///   `name=Namespace|MetricName|Statistic|Dimensions[|unit]`, where Dimensions is a
///   comma-separated list of `Name` (its value is the service), `Name=template-{service}` or
///   `Name=fixed-value`: `errors=MyApp|Errors|Sum|Service,Stage=prod|count`.
///
/// Deployments:
/// - `ECS_CLUSTER`: the cluster whose services' deployments (`DescribeServices`
///   `deployments[]`: the current and any still-running previous one) are read;
///   `ECS_SERVICES` maps IRAS services to ECS service names (same form as the log groups,
///   default `{service}`).
/// - `CODEDEPLOY_APPLICATION`: the CodeDeploy application (or `{service}` template);
///   `CODEDEPLOY_DEPLOYMENT_GROUPS` maps services to deployment groups (default `{service}`).
///   Deployments created in the window (`ListDeployments`, `BatchGetDeployments`), except
///   those that failed or were stopped.
///
/// `INTEGRATION_TIMEOUT_SECONDS` bounds every request (default 10).
pub fn aws_evidence_from_vars(
    vars: &HashMap<String, String>,
    sdk: &SdkConfig,
) -> Result<Integrations, ConfigError> {
    let vars = Vars(vars);
    let mut out = Integrations::default();

    match CloudWatchLogsConfig::from_vars(&vars)? {
        Some(c) => {
            out.notes.push(format!(
                "CloudWatch Logs Insights: {}; lines matching {}, at most {} per service",
                c.groups.describe(),
                c.line_filter.as_deref().unwrap_or("anything"),
                c.limit
            ));
            out.evidence
                .logs
                .push(Arc::new(CloudWatchLogs::new(sdk, c)));
        }
        None => out
            .notes
            .push("CloudWatch Logs unset (CLOUDWATCH_LOG_GROUPS): no logs from CloudWatch".into()),
    }

    match MetricsConfig::from_vars(&vars)? {
        Some(c) => {
            out.notes.push(format!(
                "CloudWatch metrics: {} per service, baseline 7 days earlier",
                c.signals
                    .iter()
                    .map(|s| s.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
            out.evidence
                .metrics
                .push(Arc::new(CloudWatchMetrics::new(sdk, c)));
        }
        None => out.notes.push(
            "CloudWatch metrics unset (CLOUDWATCH_METRICS): no metrics from CloudWatch".into(),
        ),
    }

    match EcsConfig::from_vars(&vars)? {
        Some(c) => {
            out.notes.push(format!(
                "ECS deployments of cluster {}: services {}",
                c.cluster,
                c.services.describe()
            ));
            out.evidence
                .deployments
                .push(Arc::new(EcsDeployments::new(sdk, c)));
        }
        None => out
            .notes
            .push("ECS unset (ECS_CLUSTER): no deployments from ECS".into()),
    }

    match CodeDeployConfig::from_vars(&vars)? {
        Some(c) => {
            out.notes.push(format!(
                "CodeDeploy deployments of application {}: groups {}",
                c.application,
                c.groups.describe()
            ));
            out.evidence
                .deployments
                .push(Arc::new(CodeDeployDeployments::new(sdk, c)));
        }
        None => out.notes.push(
            "CodeDeploy unset (CODEDEPLOY_APPLICATION): no deployments from CodeDeploy".into(),
        ),
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group_name(s: &str) -> bool {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-/#".contains(c))
    }

    #[test]
    fn service_maps_list_resources_and_fall_back_to_the_template() {
        let m = ServiceMap::parse(
            "checkout=/ecs/checkout, checkout=/ecs/envoy ,/aws/lambda/{service}",
            group_name,
            "log group",
        )
        .unwrap();
        assert_eq!(
            m.resolve("checkout", group_name),
            vec!["/ecs/checkout", "/ecs/envoy"]
        );
        assert_eq!(m.resolve("cart", group_name), vec!["/aws/lambda/cart"]);
        // A name that would put a quote or a space in a resource name resolves to nothing.
        assert!(m.resolve("cart\" | x", group_name).is_empty());
        assert!(ServiceMap::parse("checkout", group_name, "log group").is_err());
        assert!(ServiceMap::parse("a=/x y", group_name, "log group").is_err());
        assert!(ServiceMap::parse("/a/{service},/b/{service}", group_name, "log group").is_err());
        assert!(ServiceMap::parse(" , ", group_name, "log group").is_err());
    }
}
