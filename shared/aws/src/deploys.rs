//! Deployments on AWS: ECS service deployments ([`EcsDeployments`]) and CodeDeploy
//! deployments ([`CodeDeployDeployments`]).

use std::time::Duration;

use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_sdk_codedeploy::types::{DeploymentCreator, DeploymentInfo, DeploymentStatus, TimeRange};
use chrono::{DateTime, Utc};
use iras_core::config::ConfigError;
use iras_core::{Deployment, DeploymentSource, EvidenceQuery, SourceError};

use crate::evidence::{error, sdk_failure, services_for, ServiceMap, Vars};

/// `DescribeServices` takes at most 10 services per call.
const ECS_DESCRIBE_BATCH: usize = 10;
/// `BatchGetDeployments` takes at most 25 ids per call.
const CODEDEPLOY_BATCH: usize = 25;
/// Pages of deployment ids read per deployment group at most (newest deployments are what
/// matter; a group deploying more than a few hundred times in a day is not normal).
const CODEDEPLOY_MAX_PAGES: usize = 3;

fn to_chrono(t: &aws_smithy_types::DateTime) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(t.secs(), t.subsec_nanos())
}

fn timeouts(request_timeout: Duration) -> aws_smithy_types::timeout::TimeoutConfig {
    aws_smithy_types::timeout::TimeoutConfig::builder()
        .operation_attempt_timeout(request_timeout)
        .connect_timeout(request_timeout)
        .build()
}

/// An ECS service name (`[A-Za-z0-9_-]{1,255}`).
pub fn is_ecs_service_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 255
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-".contains(c))
}

/// A cluster name or ARN.
fn is_ecs_cluster(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 2048
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-:/".contains(c))
}

/// A CodeDeploy application or deployment group name (1 to 100 of letters, digits, `.`, `_`,
/// `-`).
pub fn is_codedeploy_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 100
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
}

#[derive(Debug, Clone)]
pub struct EcsConfig {
    pub cluster: String,
    /// IRAS service → ECS service name(s); default: the same name.
    pub services: ServiceMap,
    pub request_timeout: Duration,
}

impl EcsConfig {
    /// `ECS_CLUSTER` (unset: `None`) and `ECS_SERVICES`: see [`crate::aws_evidence_from_vars`].
    pub(crate) fn from_vars(vars: &Vars) -> Result<Option<Self>, ConfigError> {
        let Some(cluster) = vars.get("ECS_CLUSTER") else {
            if vars.get("ECS_SERVICES").is_some() {
                return Err(error(
                    "ECS_CLUSTER",
                    "ECS_SERVICES is set but no cluster is named",
                ));
            }
            return Ok(None);
        };
        if !is_ecs_cluster(cluster) {
            return Err(error(
                "ECS_CLUSTER",
                format!("`{cluster}` is not a cluster name or ARN"),
            ));
        }
        let services = match vars.get("ECS_SERVICES") {
            Some(v) => ServiceMap::parse(v, is_ecs_service_name, "ECS service")
                .map_err(|p| error("ECS_SERVICES", p))?,
            None => ServiceMap::template("{service}"),
        };
        Ok(Some(EcsConfig {
            cluster: cluster.to_string(),
            services,
            request_timeout: vars.timeout()?,
        }))
    }
}

pub struct EcsDeployments {
    config: EcsConfig,
    client: aws_sdk_ecs::Client,
}

impl std::fmt::Debug for EcsDeployments {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EcsDeployments")
            .field("config", &self.config)
            .finish()
    }
}

/// `arn:aws:ecs:us-east-1:123:task-definition/checkout:42` → `checkout:42`: the family and
/// revision are the version a person recognizes.
pub fn task_definition_version(arn: &str) -> String {
    arn.rsplit_once("task-definition/")
        .map(|(_, v)| v)
        .unwrap_or(arn)
        .to_string()
}

/// One ECS deployment as evidence, if it was created in `[since, until]`.
fn ecs_deployment(
    service: &str,
    ecs_service: &str,
    cluster: &str,
    d: &aws_sdk_ecs::types::Deployment,
    since: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Option<Deployment> {
    let created = d.created_at().and_then(to_chrono)?;
    if created < since || created > until {
        return None;
    }
    let task_definition = d.task_definition().unwrap_or_default();
    let mut description = format!(
        "ECS deployment {} ({}) of service {ecs_service} in cluster {cluster}",
        d.id().unwrap_or("?"),
        d.status().unwrap_or("unknown status"),
    );
    if let Some(state) = d.rollout_state() {
        description.push_str(&format!(", rollout {}", state.as_str()));
        if let Some(reason) = d.rollout_state_reason().filter(|r| !r.is_empty()) {
            description.push_str(&format!(": {reason}"));
        }
    }
    if let Some(updated) = d.updated_at().and_then(to_chrono) {
        description.push_str(&format!("; last updated {}", updated.to_rfc3339()));
    }
    description.push_str(&format!("; task definition {task_definition}"));
    Some(Deployment {
        service: service.to_string(),
        version: task_definition_version(task_definition),
        timestamp: created,
        description,
        author: String::new(),
    })
}

impl EcsDeployments {
    pub fn new(sdk: &SdkConfig, config: EcsConfig) -> Self {
        let client = aws_sdk_ecs::Client::from_conf(
            aws_sdk_ecs::config::Builder::from(sdk)
                .timeout_config(timeouts(config.request_timeout))
                .build(),
        );
        EcsDeployments { config, client }
    }
}

#[async_trait]
impl DeploymentSource for EcsDeployments {
    fn name(&self) -> String {
        "ecs".into()
    }

    /// `DescribeServices` lists a service's deployments still in effect (the primary one,
    /// and the previous while a rollout runs), not its whole history: the deployment in force
    /// when the alert fired is the one found.
    async fn deployments(&self, query: &EvidenceQuery) -> Result<Vec<Deployment>, SourceError> {
        let mut wanted: Vec<(String, String)> = Vec::new();
        for service in services_for(query) {
            for ecs in self.config.services.resolve(&service, is_ecs_service_name) {
                if !wanted.iter().any(|(s, e)| *s == service && *e == ecs) {
                    wanted.push((service.clone(), ecs));
                }
            }
        }
        let mut names: Vec<String> = wanted.iter().map(|(_, e)| e.clone()).collect();
        names.sort();
        names.dedup();
        let (since, until) = (query.window.deployments_since, query.window.end);
        let mut out = Vec::new();
        for batch in names.chunks(ECS_DESCRIBE_BATCH) {
            let what = format!(
                "services {} in cluster {}",
                batch.join(", "),
                self.config.cluster
            );
            let reply = self
                .client
                .describe_services()
                .cluster(&self.config.cluster)
                .set_services(Some(batch.to_vec()))
                .send()
                .await
                .map_err(|e| sdk_failure("ecs", &what, e, self.config.request_timeout))?;
            // A service missing from the cluster (`MISSING`) has no deployments here: the
            // alert may be about something ECS does not run.
            for f in reply.failures() {
                if f.reason() != Some("MISSING") {
                    tracing::warn!(arn = ?f.arn(), reason = ?f.reason(), detail = ?f.detail(), "ecs: DescribeServices failure");
                }
            }
            for s in reply.services() {
                let ecs_name = s.service_name().unwrap_or_default();
                for (service, _) in wanted.iter().filter(|(_, e)| e == ecs_name) {
                    out.extend(s.deployments().iter().filter_map(|d| {
                        ecs_deployment(service, ecs_name, &self.config.cluster, d, since, until)
                    }));
                }
            }
        }
        out.sort_by_key(|d| d.timestamp);
        Ok(out)
    }
}

#[derive(Debug, Clone)]
pub struct CodeDeployConfig {
    /// The application, or a template with `{service}`.
    pub application: String,
    /// IRAS service → deployment group(s); default: the same name.
    pub groups: ServiceMap,
    pub request_timeout: Duration,
}

impl CodeDeployConfig {
    /// `CODEDEPLOY_APPLICATION` (unset: `None`) and `CODEDEPLOY_DEPLOYMENT_GROUPS`: see
    /// [`crate::aws_evidence_from_vars`].
    pub(crate) fn from_vars(vars: &Vars) -> Result<Option<Self>, ConfigError> {
        let Some(application) = vars.get("CODEDEPLOY_APPLICATION") else {
            if vars.get("CODEDEPLOY_DEPLOYMENT_GROUPS").is_some() {
                return Err(error(
                    "CODEDEPLOY_APPLICATION",
                    "CODEDEPLOY_DEPLOYMENT_GROUPS is set but no application is named",
                ));
            }
            return Ok(None);
        };
        if !is_codedeploy_name(&application.replace("{service}", "x")) {
            return Err(error(
                "CODEDEPLOY_APPLICATION",
                format!("`{application}` is not an application name (letters, digits, . _ -, or {{service}})"),
            ));
        }
        let groups = match vars.get("CODEDEPLOY_DEPLOYMENT_GROUPS") {
            Some(v) => ServiceMap::parse(v, is_codedeploy_name, "deployment group")
                .map_err(|p| error("CODEDEPLOY_DEPLOYMENT_GROUPS", p))?,
            None => ServiceMap::template("{service}"),
        };
        Ok(Some(CodeDeployConfig {
            application: application.to_string(),
            groups,
            request_timeout: vars.timeout()?,
        }))
    }
}

pub struct CodeDeployDeployments {
    config: CodeDeployConfig,
    client: aws_sdk_codedeploy::Client,
}

impl std::fmt::Debug for CodeDeployDeployments {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CodeDeployDeployments")
            .field("config", &self.config)
            .finish()
    }
}

/// A deployment counts unless it failed or was stopped: those are rolled back (CodeDeploy's
/// automatic rollback is a deployment of its own, listed with the others) or never went out.
pub fn codedeploy_counts(status: Option<&DeploymentStatus>) -> bool {
    !matches!(
        status,
        Some(DeploymentStatus::Failed) | Some(DeploymentStatus::Stopped)
    )
}

/// What was deployed, as a person would name it: the commit, the bundle's file name, the
/// AppSpec's digest; the deployment id when the revision says nothing.
pub fn codedeploy_version(d: &DeploymentInfo) -> String {
    let id = d.deployment_id().unwrap_or_default().to_string();
    let Some(r) = d.revision() else {
        return id;
    };
    if let Some(commit) = r.git_hub_location().and_then(|g| g.commit_id()) {
        return commit.chars().take(7).collect();
    }
    if let Some(s3) = r.s3_location() {
        if let Some(key) = s3.key() {
            let file = key.rsplit('/').next().unwrap_or(key).to_string();
            return match s3.version() {
                Some(v) if !v.is_empty() => format!("{file}@{v}"),
                _ => file,
            };
        }
    }
    if let Some(sha) = r.app_spec_content().and_then(|a| a.sha256()) {
        return format!("appspec {}", sha.chars().take(12).collect::<String>());
    }
    if let Some(sha) = r.string().and_then(|s| s.sha256()) {
        return format!("appspec {}", sha.chars().take(12).collect::<String>());
    }
    id
}

fn codedeploy_deployment(service: &str, d: &DeploymentInfo) -> Option<Deployment> {
    if !codedeploy_counts(d.status()) {
        return None;
    }
    let created = d.create_time().and_then(to_chrono)?;
    let mut description = format!(
        "CodeDeploy deployment {} of {}/{}: {}",
        d.deployment_id().unwrap_or("?"),
        d.application_name().unwrap_or("?"),
        d.deployment_group_name().unwrap_or("?"),
        d.status().map(|s| s.as_str()).unwrap_or("unknown status"),
    );
    match d.creator() {
        Some(DeploymentCreator::CodeDeployRollback) => {
            description.push_str(", an automatic rollback")
        }
        Some(DeploymentCreator::Autoscaling) => description.push_str(", started by Auto Scaling"),
        _ => {}
    }
    if let Some(text) = d.description().filter(|t| !t.trim().is_empty()) {
        description.push_str(&format!("; {}", text.trim()));
    }
    Some(Deployment {
        service: service.to_string(),
        version: codedeploy_version(d),
        timestamp: created,
        description,
        author: String::new(),
    })
}

impl CodeDeployDeployments {
    pub fn new(sdk: &SdkConfig, config: CodeDeployConfig) -> Self {
        let client = aws_sdk_codedeploy::Client::from_conf(
            aws_sdk_codedeploy::config::Builder::from(sdk)
                .timeout_config(timeouts(config.request_timeout))
                .build(),
        );
        CodeDeployDeployments { config, client }
    }

    async fn group_deployments(
        &self,
        service: &str,
        application: &str,
        group: &str,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Vec<Deployment>, SourceError> {
        let what = format!("deployments of {application}/{group}");
        let fail = |e| sdk_failure("codedeploy", &what, e, self.config.request_timeout);
        let range = TimeRange::builder()
            .start(aws_smithy_types::DateTime::from_secs(since.timestamp()))
            .end(aws_smithy_types::DateTime::from_secs(until.timestamp() + 1))
            .build();
        let mut ids: Vec<String> = Vec::new();
        let mut token: Option<String> = None;
        for _ in 0..CODEDEPLOY_MAX_PAGES {
            let reply = self
                .client
                .list_deployments()
                .application_name(application)
                .deployment_group_name(group)
                .create_time_range(range.clone())
                .set_next_token(token.take())
                .send()
                .await;
            let reply = match reply {
                Ok(r) => r,
                // This service has no deployment group here: no deployments, not a failure.
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|s| s.is_deployment_group_does_not_exist_exception()) =>
                {
                    return Ok(Vec::new())
                }
                Err(e) => return Err(fail(e)),
            };
            ids.extend(reply.deployments().iter().cloned());
            match reply.next_token() {
                Some(t) if !t.is_empty() => token = Some(t.to_string()),
                _ => break,
            }
        }
        let mut out = Vec::new();
        for batch in ids.chunks(CODEDEPLOY_BATCH) {
            let reply = self
                .client
                .batch_get_deployments()
                .set_deployment_ids(Some(batch.to_vec()))
                .send()
                .await
                .map_err(|e| sdk_failure("codedeploy", &what, e, self.config.request_timeout))?;
            out.extend(
                reply
                    .deployments_info()
                    .iter()
                    .filter_map(|d| codedeploy_deployment(service, d))
                    // The range is applied by CodeDeploy; applied again so an answer that
                    // ignores it cannot bring in deployments from another day.
                    .filter(|d| d.timestamp >= since && d.timestamp <= until),
            );
        }
        Ok(out)
    }
}

#[async_trait]
impl DeploymentSource for CodeDeployDeployments {
    fn name(&self) -> String {
        "codedeploy".into()
    }

    async fn deployments(&self, query: &EvidenceQuery) -> Result<Vec<Deployment>, SourceError> {
        let (since, until) = (query.window.deployments_since, query.window.end);
        let mut out = Vec::new();
        for service in services_for(query) {
            let application = self.config.application.replace("{service}", &service);
            if !is_codedeploy_name(&application) {
                continue;
            }
            for group in self.config.groups.resolve(&service, is_codedeploy_name) {
                out.extend(
                    self.group_deployments(&service, &application, &group, since, until)
                        .await?,
                );
            }
        }
        out.sort_by_key(|d| d.timestamp);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_codedeploy::types::{GitHubLocation, RevisionLocation, S3Location};

    #[test]
    fn task_definitions_read_as_family_and_revision() {
        assert_eq!(
            task_definition_version("arn:aws:ecs:us-east-1:1:task-definition/checkout:42"),
            "checkout:42"
        );
        assert_eq!(task_definition_version("checkout:7"), "checkout:7");
    }

    #[test]
    fn failed_and_stopped_codedeploy_deployments_do_not_count() {
        for s in [DeploymentStatus::Failed, DeploymentStatus::Stopped] {
            assert!(!codedeploy_counts(Some(&s)));
        }
        for s in [
            DeploymentStatus::Succeeded,
            DeploymentStatus::InProgress,
            DeploymentStatus::Created,
            DeploymentStatus::Baking,
        ] {
            assert!(codedeploy_counts(Some(&s)));
        }
    }

    #[test]
    fn codedeploy_versions_name_the_revision() {
        let with = |r: RevisionLocation| {
            DeploymentInfo::builder()
                .deployment_id("d-123")
                .revision(r)
                .build()
        };
        let gh = with(
            RevisionLocation::builder()
                .git_hub_location(
                    GitHubLocation::builder()
                        .repository("acme/checkout")
                        .commit_id("0123456789abcdef")
                        .build(),
                )
                .build(),
        );
        assert_eq!(codedeploy_version(&gh), "0123456");
        let s3 = with(
            RevisionLocation::builder()
                .s3_location(
                    S3Location::builder()
                        .bucket("b")
                        .key("releases/checkout-2.3.1.zip")
                        .build(),
                )
                .build(),
        );
        assert_eq!(codedeploy_version(&s3), "checkout-2.3.1.zip");
        assert_eq!(
            codedeploy_version(&DeploymentInfo::builder().deployment_id("d-9").build()),
            "d-9"
        );
    }
}
