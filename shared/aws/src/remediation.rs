//! The AWS executor: typed actions through the AWS SDK (ECS, Lambda, CodeDeploy, Auto Scaling,
//! DynamoDB, SSM). For each action it reads the live state, changes it only when it differs
//! from the target (so a step re-run after a crash changes nothing twice), waits until the
//! resource is stable or the step's timeout passes, and restores exactly the recorded prior
//! state on rollback. Every call is checked against the remediation policy first: an action
//! outside it never reaches an SDK call.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_config::SdkConfig;
use iras_core::action::task_definition_name;
use iras_core::policy::RemediationPolicy;
use iras_core::ports::{ExecError, Executor, StepCall, StepOutcome};
use iras_core::{Action, CommandTargets, ResourceState, TableCapacity};
use sha2::{Digest, Sha256};
use tokio::time::Instant;

use crate::describe;

/// An ECS service as read: its state, whether it is steady, and why its newest rollout failed.
struct EcsLive {
    state: ResourceState,
    steady: bool,
    failed_rollout: Option<String>,
}

/// How an ECS change counts as settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EcsSettle {
    /// The `services-stable` rule: one deployment, as many tasks running as desired.
    SteadyState,
    /// The service's configuration reads back as set: for emulators that never start tasks.
    ReadBack,
}

pub struct AwsExecutor {
    ecs: aws_sdk_ecs::Client,
    lambda: aws_sdk_lambda::Client,
    autoscaling: aws_sdk_autoscaling::Client,
    dynamodb: aws_sdk_dynamodb::Client,
    ssm: aws_sdk_ssm::Client,
    codedeploy: aws_sdk_codedeploy::Client,
    policy: RemediationPolicy,
    /// Runner actions go here when a runner is configured.
    runner: Option<Arc<dyn Executor>>,
    /// Between two reads while waiting for a resource to settle.
    pub poll: Duration,
    pub ecs_settle: EcsSettle,
}

fn failed(what: &str, e: impl std::error::Error + 'static) -> ExecError {
    ExecError::Failed(format!("{what}: {}", describe(&e)))
}

fn unexpected(state: &ResourceState, action: &Action) -> ExecError {
    ExecError::Failed(format!(
        "recorded state {} does not belong to a {} action",
        state.describe(),
        action.kind()
    ))
}

/// SSM Automation's ClientToken must be a UUID: derived from the idempotency key, so a retry
/// of the same call sends the same token and AWS starts the runbook once.
fn client_token(key: &str) -> String {
    let h = hex::encode(Sha256::digest(key.as_bytes()));
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

impl AwsExecutor {
    pub fn new(sdk: &SdkConfig, policy: RemediationPolicy) -> Self {
        AwsExecutor {
            ecs: aws_sdk_ecs::Client::new(sdk),
            lambda: aws_sdk_lambda::Client::new(sdk),
            autoscaling: aws_sdk_autoscaling::Client::new(sdk),
            dynamodb: aws_sdk_dynamodb::Client::new(sdk),
            ssm: aws_sdk_ssm::Client::new(sdk),
            codedeploy: aws_sdk_codedeploy::Client::new(sdk),
            policy,
            runner: None,
            poll: Duration::from_secs(5),
            ecs_settle: EcsSettle::SteadyState,
        }
    }

    /// Sends runner actions to `runner`.
    pub fn with_runner(mut self, runner: Arc<dyn Executor>) -> Self {
        self.runner = Some(runner);
        self
    }

    /// Refuses before any SDK call whatever the policy does not allow.
    fn allowed(&self, action: &Action) -> Result<(), ExecError> {
        if !self.policy.permits_real_execution {
            return Err(ExecError::Refused(
                "no remediation policy allows real changes (REMEDIATION_POLICY)".into(),
            ));
        }
        self.policy
            .check(action)
            .map(|_| ())
            .map_err(ExecError::Refused)
    }

    fn runner(&self) -> Result<&Arc<dyn Executor>, ExecError> {
        self.runner.as_ref().ok_or_else(|| {
            ExecError::Refused(
                "a runner action and no runner is configured (REMEDIATION_RUNNER_URL)".into(),
            )
        })
    }

    async fn read(&self, action: &Action) -> Result<ResourceState, ExecError> {
        match action {
            Action::EcsSetTaskDefinition {
                cluster, service, ..
            }
            | Action::EcsForceNewDeployment { cluster, service }
            | Action::EcsSetDesiredCount {
                cluster, service, ..
            } => self.ecs_state(cluster, service).await.map(|l| l.state),
            Action::LambdaSetAlias {
                function_name,
                alias,
                ..
            } => {
                let a = self
                    .lambda
                    .get_alias()
                    .function_name(function_name)
                    .name(alias)
                    .send()
                    .await
                    .map_err(|e| failed("lambda GetAlias", e))?;
                Ok(ResourceState::LambdaAlias {
                    version: a.function_version().unwrap_or_default().to_string(),
                })
            }
            Action::LambdaSetReservedConcurrency { function_name, .. } => {
                let c = self
                    .lambda
                    .get_function_concurrency()
                    .function_name(function_name)
                    .send()
                    .await
                    .map_err(|e| failed("lambda GetFunctionConcurrency", e))?;
                Ok(ResourceState::LambdaConcurrency {
                    reserved: c.reserved_concurrent_executions(),
                })
            }
            Action::CodeDeployStopDeployment { deployment_id, .. } => {
                let d = self
                    .codedeploy
                    .get_deployment()
                    .deployment_id(deployment_id)
                    .send()
                    .await
                    .map_err(|e| failed("codedeploy GetDeployment", e))?;
                Ok(ResourceState::CodeDeployDeployment {
                    status: d
                        .deployment_info()
                        .and_then(|i| i.status())
                        .map(|s| s.as_str().to_string())
                        .unwrap_or_default(),
                })
            }
            Action::AutoScalingSetDesiredCapacity { group_name, .. } => {
                let (desired, _) = self.asg_state(group_name).await?;
                Ok(ResourceState::AutoScalingGroup {
                    desired_capacity: desired,
                })
            }
            Action::DynamoDbSetCapacity { table_name, .. } => {
                self.table_state(table_name).await.map(|(s, _)| s)
            }
            Action::SsmPutParameter { name, .. } => self.parameter_state(name).await,
            Action::SsmRunCommand { .. } | Action::SsmStartAutomation { .. } => {
                Ok(ResourceState::SsmExecution {
                    id: None,
                    status: "not started".into(),
                })
            }
            Action::Runner { .. } => Err(ExecError::Refused("runner action".into())),
        }
    }

    async fn ecs_state(&self, cluster: &str, service: &str) -> Result<EcsLive, ExecError> {
        let out = self
            .ecs
            .describe_services()
            .cluster(cluster)
            .services(service)
            .send()
            .await
            .map_err(|e| failed("ecs DescribeServices", e))?;
        let s = out.services().first().ok_or_else(|| {
            ExecError::Failed(format!("ECS service {cluster}/{service} not found"))
        })?;
        let primary = s
            .deployments()
            .iter()
            .find(|d| d.status() == Some("PRIMARY"));
        // A FAILED rollout of the PRIMARY deployment (the circuit breaker stopped it): the
        // settle wait fails on it only when the wait's own change started that deployment.
        let failed_rollout = primary
            .filter(|d| d.rollout_state().is_some_and(|r| r.as_str() == "FAILED"))
            .map(|d| {
                format!(
                    "ECS service {cluster}/{service}: the rollout of deployment {} FAILED ({})",
                    d.id().unwrap_or("?"),
                    d.rollout_state_reason().unwrap_or("no reason given")
                )
            });
        let steady = s.deployments().len() == 1 && s.running_count() == s.desired_count();
        Ok(EcsLive {
            state: ResourceState::EcsService {
                task_definition: task_definition_name(s.task_definition().unwrap_or_default())
                    .to_string(),
                desired_count: s.desired_count(),
                primary_deployment: primary.and_then(|d| d.id()).unwrap_or_default().to_string(),
            },
            steady,
            failed_rollout,
        })
    }

    async fn asg_state(&self, group: &str) -> Result<(i32, usize), ExecError> {
        let out = self
            .autoscaling
            .describe_auto_scaling_groups()
            .auto_scaling_group_names(group)
            .send()
            .await
            .map_err(|e| failed("autoscaling DescribeAutoScalingGroups", e))?;
        let g = out
            .auto_scaling_groups()
            .first()
            .ok_or_else(|| ExecError::Failed(format!("Auto Scaling group {group} not found")))?;
        let in_service = g
            .instances()
            .iter()
            .filter(|i| {
                i.lifecycle_state()
                    .is_some_and(|s| s.as_str() == "InService")
            })
            .count();
        Ok((g.desired_capacity().unwrap_or_default(), in_service))
    }

    async fn table_state(&self, table: &str) -> Result<(ResourceState, bool), ExecError> {
        let out = self
            .dynamodb
            .describe_table()
            .table_name(table)
            .send()
            .await
            .map_err(|e| failed("dynamodb DescribeTable", e))?;
        let t = out
            .table()
            .ok_or_else(|| ExecError::Failed(format!("DynamoDB table {table} not found")))?;
        let mode = t
            .billing_mode_summary()
            .and_then(|b| b.billing_mode())
            .map(|m| m.as_str().to_string())
            .unwrap_or_else(|| "PROVISIONED".into());
        let pt = t.provisioned_throughput();
        let active = t.table_status().is_some_and(|s| s.as_str() == "ACTIVE");
        Ok((
            ResourceState::DynamoDbTable {
                read_capacity_units: (mode == "PROVISIONED")
                    .then(|| pt.and_then(|p| p.read_capacity_units()))
                    .flatten(),
                write_capacity_units: (mode == "PROVISIONED")
                    .then(|| pt.and_then(|p| p.write_capacity_units()))
                    .flatten(),
                billing_mode: mode,
            },
            active,
        ))
    }

    async fn parameter_state(&self, name: &str) -> Result<ResourceState, ExecError> {
        match self.ssm.get_parameter().name(name).send().await {
            Ok(out) => Ok(ResourceState::SsmParameter {
                value: out.parameter().and_then(|p| p.value()).map(str::to_string),
                parameter_type: out
                    .parameter()
                    .and_then(|p| p.r#type())
                    .map(|t| t.as_str().to_string()),
            }),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_parameter_not_found()) =>
            {
                Ok(ResourceState::SsmParameter {
                    value: None,
                    parameter_type: None,
                })
            }
            Err(e) => Err(failed("ssm GetParameter", e)),
        }
    }

    /// Polls `check` until it says settled or `timeout` passes (then `NotStable`).
    async fn settle<F, Fut>(
        &self,
        what: &str,
        timeout: Duration,
        mut check: F,
    ) -> Result<(), ExecError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<bool, ExecError>>,
    {
        let deadline = Instant::now() + timeout;
        loop {
            if check().await? {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(ExecError::NotStable(format!(
                    "{what} was not stable after {}s",
                    timeout.as_secs()
                )));
            }
            tokio::time::sleep(self.poll).await;
        }
    }

    /// Waits until the service reads back as `wanted` and (unless the emulator never starts
    /// tasks) is steady; `from` is its state before the change, so a FAILED rollout counts only
    /// when this change started it.
    async fn settle_ecs(
        &self,
        cluster: &str,
        service: &str,
        from: &ResourceState,
        wanted: impl Fn(&ResourceState) -> bool,
        timeout: Duration,
    ) -> Result<ResourceState, ExecError> {
        let what = format!("ECS service {cluster}/{service}");
        let primary = |s: &ResourceState| match s {
            ResourceState::EcsService {
                primary_deployment, ..
            } => primary_deployment.clone(),
            _ => String::new(),
        };
        let before = primary(from);
        self.settle(&what, timeout, || async {
            let live = self.ecs_state(cluster, service).await?;
            if let Some(failure) = live.failed_rollout {
                if primary(&live.state) != before {
                    return Err(ExecError::NotStable(failure));
                }
            }
            Ok(wanted(&live.state) && (live.steady || self.ecs_settle == EcsSettle::ReadBack))
        })
        .await?;
        self.ecs_state(cluster, service).await.map(|l| l.state)
    }

    async fn update_ecs(
        &self,
        cluster: &str,
        service: &str,
        task_definition: Option<&str>,
        desired: Option<i32>,
        force: bool,
    ) -> Result<(), ExecError> {
        self.ecs
            .update_service()
            .cluster(cluster)
            .service(service)
            .set_task_definition(task_definition.map(str::to_string))
            .set_desired_count(desired)
            .set_force_new_deployment(force.then_some(true))
            .send()
            .await
            .map_err(|e| failed("ecs UpdateService", e))?;
        Ok(())
    }

    async fn set_asg(&self, group: &str, n: i32, timeout: Duration) -> Result<(), ExecError> {
        self.autoscaling
            .set_desired_capacity()
            .auto_scaling_group_name(group)
            .desired_capacity(n)
            .honor_cooldown(false)
            .send()
            .await
            .map_err(|e| failed("autoscaling SetDesiredCapacity", e))?;
        self.settle(&format!("Auto Scaling group {group}"), timeout, || async {
            let (desired, in_service) = self.asg_state(group).await?;
            Ok(desired == n && in_service == n as usize)
        })
        .await
    }

    async fn set_table(
        &self,
        table: &str,
        mode: &str,
        read: Option<i64>,
        write: Option<i64>,
        timeout: Duration,
    ) -> Result<(), ExecError> {
        use aws_sdk_dynamodb::types::{BillingMode, ProvisionedThroughput};
        let mut req = self.dynamodb.update_table().table_name(table);
        req = if mode == "PAY_PER_REQUEST" {
            req.billing_mode(BillingMode::PayPerRequest)
        } else {
            let pt = ProvisionedThroughput::builder()
                .read_capacity_units(read.unwrap_or(1))
                .write_capacity_units(write.unwrap_or(1))
                .build()
                .map_err(|e| failed("dynamodb ProvisionedThroughput", e))?;
            req.billing_mode(BillingMode::Provisioned)
                .provisioned_throughput(pt)
        };
        req.send()
            .await
            .map_err(|e| failed("dynamodb UpdateTable", e))?;
        self.settle(&format!("DynamoDB table {table}"), timeout, || async {
            Ok(self.table_state(table).await?.1)
        })
        .await
    }

    async fn put_parameter(
        &self,
        name: &str,
        value: &str,
        kind: Option<&str>,
    ) -> Result<(), ExecError> {
        let kind = aws_sdk_ssm::types::ParameterType::from(kind.unwrap_or("String"));
        self.ssm
            .put_parameter()
            .name(name)
            .value(value)
            .r#type(kind)
            .overwrite(true)
            .send()
            .await
            .map_err(|e| failed("ssm PutParameter", e))?;
        Ok(())
    }

    async fn run_command(
        &self,
        call: &StepCall<'_>,
        document: &str,
        parameters: &std::collections::BTreeMap<String, Vec<String>>,
        targets: &CommandTargets,
    ) -> Result<StepOutcome, ExecError> {
        // The idempotency key rides in the command's comment: a retry finds the command it sent.
        let key = call.idempotency_key();
        let comment: String = key.chars().take(100).collect();
        let listed = self
            .ssm
            .list_commands()
            .send()
            .await
            .map_err(|e| failed("ssm ListCommands", e))?;
        let existing = listed
            .commands()
            .iter()
            .find(|c| c.comment() == Some(comment.as_str()))
            .and_then(|c| c.command_id())
            .map(str::to_string);
        let id = match existing {
            Some(id) => id,
            None => {
                let mut req = self
                    .ssm
                    .send_command()
                    .document_name(document)
                    .comment(&comment)
                    .set_parameters(Some(
                        parameters
                            .iter()
                            .map(|(k, v)| (k.clone(), v.clone()))
                            .collect::<HashMap<_, _>>(),
                    ));
                req = match targets {
                    CommandTargets::InstanceIds { instance_ids } => {
                        req.set_instance_ids(Some(instance_ids.clone()))
                    }
                    CommandTargets::Tag { key, values } => req.targets(
                        aws_sdk_ssm::types::Target::builder()
                            .key(format!("tag:{key}"))
                            .set_values(Some(values.clone()))
                            .build(),
                    ),
                };
                req.send()
                    .await
                    .map_err(|e| failed("ssm SendCommand", e))?
                    .command()
                    .and_then(|c| c.command_id())
                    .unwrap_or_default()
                    .to_string()
            }
        };
        let status = std::sync::Mutex::new(String::new());
        let what = format!("SSM command {id}");
        let waited = self
            .settle(&what, call.timeout, || async {
                let out = self
                    .ssm
                    .list_commands()
                    .command_id(&id)
                    .send()
                    .await
                    .map_err(|e| failed("ssm ListCommands", e))?;
                let s = out
                    .commands()
                    .first()
                    .and_then(|c| c.status())
                    .map(|s| s.as_str().to_string())
                    .unwrap_or_default();
                let done = !matches!(s.as_str(), "Pending" | "InProgress" | "Cancelling" | "");
                *status.lock().unwrap() = s;
                Ok(done)
            })
            .await;
        waited?;
        let status = status.into_inner().unwrap_or_default();
        let after = ResourceState::SsmExecution {
            id: Some(id.clone()),
            status: status.clone(),
        };
        if status != "Success" {
            return Err(ExecError::Failed(format!(
                "SSM command {id} ended {status}"
            )));
        }
        Ok(StepOutcome {
            after,
            output: format!("SSM command {id} ({document}) ended Success"),
        })
    }

    async fn automation(
        &self,
        call: &StepCall<'_>,
        document: &str,
        parameters: &std::collections::BTreeMap<String, Vec<String>>,
    ) -> Result<StepOutcome, ExecError> {
        let id = self
            .ssm
            .start_automation_execution()
            .document_name(document)
            .client_token(client_token(&call.idempotency_key()))
            .set_parameters(Some(
                parameters
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect::<HashMap<_, _>>(),
            ))
            .send()
            .await
            .map_err(|e| failed("ssm StartAutomationExecution", e))?
            .automation_execution_id()
            .unwrap_or_default()
            .to_string();
        let status = std::sync::Mutex::new(String::new());
        self.settle(&format!("SSM Automation {id}"), call.timeout, || async {
            let out = self
                .ssm
                .get_automation_execution()
                .automation_execution_id(&id)
                .send()
                .await
                .map_err(|e| failed("ssm GetAutomationExecution", e))?;
            let s = out
                .automation_execution()
                .and_then(|a| a.automation_execution_status())
                .map(|s| s.as_str().to_string())
                .unwrap_or_default();
            let done = matches!(
                s.as_str(),
                "Success"
                    | "Failed"
                    | "Cancelled"
                    | "TimedOut"
                    | "CompletedWithFailure"
                    | "CompletedWithSuccess"
                    | "Exited"
            );
            *status.lock().unwrap() = s;
            Ok(done)
        })
        .await?;
        let status = status.into_inner().unwrap_or_default();
        if status != "Success" && status != "CompletedWithSuccess" {
            return Err(ExecError::Failed(format!(
                "SSM Automation {id} ({document}) ended {status}"
            )));
        }
        Ok(StepOutcome {
            after: ResourceState::SsmExecution {
                id: Some(id.clone()),
                status,
            },
            output: format!("SSM Automation {id} ({document}) ended Success"),
        })
    }

    fn unchanged(after: ResourceState) -> StepOutcome {
        StepOutcome {
            output: format!("already {}: nothing changed", after.describe()),
            after,
        }
    }

    fn changed(prior: &ResourceState, after: ResourceState) -> StepOutcome {
        StepOutcome {
            output: format!("{} → {}", prior.describe(), after.describe()),
            after,
        }
    }
}

#[async_trait]
impl Executor for AwsExecutor {
    fn name(&self) -> String {
        "aws".into()
    }

    async fn observe(&self, call: &StepCall<'_>) -> Result<ResourceState, ExecError> {
        if let Action::Runner { .. } = call.action {
            return self.runner()?.observe(call).await;
        }
        self.allowed(call.action)?;
        self.read(call.action).await
    }

    async fn apply(
        &self,
        call: &StepCall<'_>,
        prior: &ResourceState,
    ) -> Result<StepOutcome, ExecError> {
        let action = call.action;
        if let Action::Runner { .. } = action {
            return self.runner()?.apply(call, prior).await;
        }
        self.allowed(action)?;
        // Read again: after a crash the change may already be live, and then it is not made twice.
        let live = self.read(action).await?;
        match action {
            Action::EcsSetTaskDefinition {
                cluster,
                service,
                task_definition,
                from,
            } => {
                let target = task_definition_name(task_definition).to_string();
                let ResourceState::EcsService {
                    task_definition: now,
                    ..
                } = &live
                else {
                    return Err(unexpected(&live, action));
                };
                if *now != target {
                    if let Some(from) = from.as_deref().map(task_definition_name) {
                        if from != now {
                            return Err(ExecError::Refused(format!(
                                "the live task definition is {now}, not {from} as approved"
                            )));
                        }
                    }
                    self.update_ecs(cluster, service, Some(task_definition), None, false)
                        .await?;
                } else {
                    return Ok(Self::unchanged(live));
                }
                let after = self
                    .settle_ecs(
                        cluster,
                        service,
                        &live,
                        |s| matches!(s, ResourceState::EcsService { task_definition, .. } if *task_definition == target),
                        call.timeout,
                    )
                    .await?;
                Ok(Self::changed(prior, after))
            }
            Action::EcsForceNewDeployment { cluster, service } => {
                let (
                    ResourceState::EcsService {
                        primary_deployment: before,
                        ..
                    },
                    ResourceState::EcsService {
                        primary_deployment: now,
                        ..
                    },
                ) = (prior, &live)
                else {
                    return Err(unexpected(prior, action));
                };
                if before != now {
                    return Ok(Self::unchanged(live));
                }
                self.update_ecs(cluster, service, None, None, true).await?;
                let old = before.clone();
                let after = self
                    .settle_ecs(
                        cluster,
                        service,
                        &live,
                        |s| matches!(s, ResourceState::EcsService { primary_deployment, .. } if *primary_deployment != old),
                        call.timeout,
                    )
                    .await?;
                Ok(Self::changed(prior, after))
            }
            Action::EcsSetDesiredCount {
                cluster,
                service,
                desired_count,
            } => {
                let n = *desired_count as i32;
                if matches!(&live, ResourceState::EcsService { desired_count, .. } if *desired_count == n)
                {
                    return Ok(Self::unchanged(live));
                }
                self.update_ecs(cluster, service, None, Some(n), false)
                    .await?;
                let after = self
                    .settle_ecs(
                        cluster,
                        service,
                        &live,
                        |s| matches!(s, ResourceState::EcsService { desired_count, .. } if *desired_count == n),
                        call.timeout,
                    )
                    .await?;
                Ok(Self::changed(prior, after))
            }
            Action::LambdaSetAlias {
                function_name,
                alias,
                version,
                from,
            } => {
                let ResourceState::LambdaAlias { version: now } = &live else {
                    return Err(unexpected(&live, action));
                };
                if now == version {
                    return Ok(Self::unchanged(live));
                }
                if let Some(from) = from {
                    if from != now {
                        return Err(ExecError::Refused(format!(
                            "the alias points at version {now}, not {from} as approved"
                        )));
                    }
                }
                self.lambda
                    .update_alias()
                    .function_name(function_name)
                    .name(alias)
                    .function_version(version)
                    .send()
                    .await
                    .map_err(|e| failed("lambda UpdateAlias", e))?;
                Ok(Self::changed(prior, self.read(action).await?))
            }
            Action::LambdaSetReservedConcurrency {
                function_name,
                reserved_concurrency,
            } => {
                let n = *reserved_concurrency as i32;
                if live == (ResourceState::LambdaConcurrency { reserved: Some(n) }) {
                    return Ok(Self::unchanged(live));
                }
                self.lambda
                    .put_function_concurrency()
                    .function_name(function_name)
                    .reserved_concurrent_executions(n)
                    .send()
                    .await
                    .map_err(|e| failed("lambda PutFunctionConcurrency", e))?;
                Ok(Self::changed(prior, self.read(action).await?))
            }
            Action::CodeDeployStopDeployment { deployment_id, .. } => {
                let finished = |s: &ResourceState| matches!(s, ResourceState::CodeDeployDeployment { status } if matches!(status.as_str(), "Stopped" | "Succeeded" | "Failed"));
                if finished(&live) {
                    return Ok(Self::unchanged(live));
                }
                let stopped = self
                    .codedeploy
                    .stop_deployment()
                    .deployment_id(deployment_id)
                    .auto_rollback_enabled(true)
                    .send()
                    .await;
                if let Err(e) = stopped {
                    // It finished between the read and the stop: there is nothing left to stop,
                    // and Verify judges whether its end helped.
                    let done = e
                        .as_service_error()
                        .is_some_and(|e| e.is_deployment_already_completed_exception());
                    if !done {
                        return Err(failed("codedeploy StopDeployment", e));
                    }
                    return Ok(Self::unchanged(self.read(action).await?));
                }
                self.settle(
                    &format!("CodeDeploy deployment {deployment_id}"),
                    call.timeout,
                    || async { Ok(finished(&self.read(action).await?)) },
                )
                .await?;
                Ok(Self::changed(prior, self.read(action).await?))
            }
            Action::AutoScalingSetDesiredCapacity {
                group_name,
                desired_capacity,
            } => {
                let n = *desired_capacity as i32;
                let (desired, in_service) = self.asg_state(group_name).await?;
                if desired == n && in_service == n as usize {
                    return Ok(Self::unchanged(live));
                }
                self.set_asg(group_name, n, call.timeout).await?;
                Ok(Self::changed(prior, self.read(action).await?))
            }
            Action::DynamoDbSetCapacity {
                table_name,
                capacity,
            } => {
                let (mode, r, w) = match capacity {
                    TableCapacity::OnDemand => ("PAY_PER_REQUEST", None, None),
                    TableCapacity::Provisioned {
                        read_capacity_units,
                        write_capacity_units,
                    } => (
                        "PROVISIONED",
                        Some(i64::from(*read_capacity_units)),
                        Some(i64::from(*write_capacity_units)),
                    ),
                };
                let wanted = ResourceState::DynamoDbTable {
                    billing_mode: mode.into(),
                    read_capacity_units: r,
                    write_capacity_units: w,
                };
                if live == wanted {
                    return Ok(Self::unchanged(live));
                }
                self.set_table(table_name, mode, r, w, call.timeout).await?;
                Ok(Self::changed(prior, self.read(action).await?))
            }
            Action::SsmPutParameter { name, value } => {
                let ResourceState::SsmParameter {
                    value: now,
                    parameter_type,
                } = &live
                else {
                    return Err(unexpected(&live, action));
                };
                if now.as_deref() == Some(value.as_str()) {
                    return Ok(Self::unchanged(live));
                }
                self.put_parameter(name, value, parameter_type.as_deref())
                    .await?;
                Ok(Self::changed(prior, self.read(action).await?))
            }
            Action::SsmRunCommand {
                document,
                parameters,
                targets,
            } => self.run_command(call, document, parameters, targets).await,
            Action::SsmStartAutomation {
                document,
                parameters,
            } => self.automation(call, document, parameters).await,
            Action::Runner { .. } => {
                Err(ExecError::Refused("runner actions are the runner's".into()))
            }
        }
    }

    async fn restore(
        &self,
        call: &StepCall<'_>,
        prior: &ResourceState,
    ) -> Result<StepOutcome, ExecError> {
        let action = call.action;
        if let Action::Runner { .. } = action {
            return self.runner()?.restore(call, prior).await;
        }
        self.allowed(action)?;
        let live = self.read(action).await?;
        match (action, prior) {
            (
                Action::EcsSetTaskDefinition {
                    cluster, service, ..
                },
                ResourceState::EcsService {
                    task_definition, ..
                },
            ) => {
                if matches!(&live, ResourceState::EcsService { task_definition: t, .. } if t == task_definition)
                {
                    return Ok(Self::unchanged(live));
                }
                self.update_ecs(cluster, service, Some(task_definition), None, false)
                    .await?;
                let target = task_definition.clone();
                let after = self
                    .settle_ecs(
                        cluster,
                        service,
                        &live,
                        |s| matches!(s, ResourceState::EcsService { task_definition, .. } if *task_definition == target),
                        call.timeout,
                    )
                    .await?;
                Ok(Self::changed(&live, after))
            }
            (
                Action::EcsSetDesiredCount {
                    cluster, service, ..
                },
                ResourceState::EcsService { desired_count, .. },
            ) => {
                let n = *desired_count;
                if matches!(&live, ResourceState::EcsService { desired_count, .. } if *desired_count == n)
                {
                    return Ok(Self::unchanged(live));
                }
                self.update_ecs(cluster, service, None, Some(n), false)
                    .await?;
                let after = self
                    .settle_ecs(
                        cluster,
                        service,
                        &live,
                        |s| matches!(s, ResourceState::EcsService { desired_count, .. } if *desired_count == n),
                        call.timeout,
                    )
                    .await?;
                Ok(Self::changed(&live, after))
            }
            (
                Action::LambdaSetAlias {
                    function_name,
                    alias,
                    ..
                },
                ResourceState::LambdaAlias { version },
            ) => {
                if live == *prior {
                    return Ok(Self::unchanged(live));
                }
                self.lambda
                    .update_alias()
                    .function_name(function_name)
                    .name(alias)
                    .function_version(version)
                    .send()
                    .await
                    .map_err(|e| failed("lambda UpdateAlias", e))?;
                Ok(Self::changed(&live, self.read(action).await?))
            }
            (
                Action::LambdaSetReservedConcurrency { function_name, .. },
                ResourceState::LambdaConcurrency { reserved },
            ) => {
                if live == *prior {
                    return Ok(Self::unchanged(live));
                }
                match reserved {
                    Some(n) => {
                        self.lambda
                            .put_function_concurrency()
                            .function_name(function_name)
                            .reserved_concurrent_executions(*n)
                            .send()
                            .await
                            .map_err(|e| failed("lambda PutFunctionConcurrency", e))?;
                    }
                    None => {
                        self.lambda
                            .delete_function_concurrency()
                            .function_name(function_name)
                            .send()
                            .await
                            .map_err(|e| failed("lambda DeleteFunctionConcurrency", e))?;
                    }
                }
                Ok(Self::changed(&live, self.read(action).await?))
            }
            (
                Action::AutoScalingSetDesiredCapacity { group_name, .. },
                ResourceState::AutoScalingGroup { desired_capacity },
            ) => {
                if live == *prior {
                    return Ok(Self::unchanged(live));
                }
                self.set_asg(group_name, *desired_capacity, call.timeout)
                    .await?;
                Ok(Self::changed(&live, self.read(action).await?))
            }
            (
                Action::DynamoDbSetCapacity { table_name, .. },
                ResourceState::DynamoDbTable {
                    billing_mode,
                    read_capacity_units,
                    write_capacity_units,
                },
            ) => {
                if live == *prior {
                    return Ok(Self::unchanged(live));
                }
                self.set_table(
                    table_name,
                    billing_mode,
                    *read_capacity_units,
                    *write_capacity_units,
                    call.timeout,
                )
                .await?;
                Ok(Self::changed(&live, self.read(action).await?))
            }
            (
                Action::SsmPutParameter { name, .. },
                ResourceState::SsmParameter {
                    value,
                    parameter_type,
                },
            ) => {
                if live == *prior {
                    return Ok(Self::unchanged(live));
                }
                match value {
                    Some(v) => {
                        self.put_parameter(name, v, parameter_type.as_deref())
                            .await?
                    }
                    // It did not exist before the change: it does not exist after the undo.
                    None => {
                        self.ssm
                            .delete_parameter()
                            .name(name)
                            .send()
                            .await
                            .map_err(|e| failed("ssm DeleteParameter", e))?;
                    }
                }
                Ok(Self::changed(&live, self.read(action).await?))
            }
            (a, p) if !a.reversible() => Err(ExecError::Refused(format!(
                "{} cannot be undone (recorded: {})",
                a.kind(),
                p.describe()
            ))),
            (a, p) => Err(unexpected(p, a)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_automation_token_is_a_uuid_and_the_same_for_the_same_call() {
        let a = client_token("inc-1:0:apply");
        assert_eq!(a, client_token("inc-1:0:apply"));
        assert_ne!(a, client_token("inc-1:0:rollback"));
        let parts: Vec<usize> = a.split('-').map(str::len).collect();
        assert_eq!(parts, vec![8, 4, 4, 4, 12]);
    }
}
