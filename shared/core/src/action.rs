//! Remediation actions as typed values: what a step changes, on which resource, to what.
//! The text a person approves (the AWS CLI equivalent, the resource, the change) is rendered
//! from the action, and the executors run the action itself, so what is approved is what runs.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// How a DynamoDB table pays for its capacity.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum TableCapacity {
    OnDemand,
    Provisioned {
        read_capacity_units: u32,
        write_capacity_units: u32,
    },
}

/// Where an SSM command runs: named instances, or every instance with a tag.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(tag = "by", rename_all = "snake_case")]
pub enum CommandTargets {
    InstanceIds { instance_ids: Vec<String> },
    Tag { key: String, values: Vec<String> },
}

/// One change to one resource. Tagged by `type` (`ecs_set_task_definition`, ...): the tag is
/// also the name a remediation policy's rule lists.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Action {
    /// Roll an ECS service to another task definition (`family:revision`), usually the one
    /// before the deploy that broke it.
    EcsSetTaskDefinition {
        cluster: String,
        service: String,
        task_definition: String,
        /// The task definition the evidence says is live; the executor refuses to act if the
        /// live one is neither this nor the target.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        from: Option<String>,
    },
    /// Replace an ECS service's tasks with fresh ones (same task definition).
    EcsForceNewDeployment { cluster: String, service: String },
    EcsSetDesiredCount {
        cluster: String,
        service: String,
        desired_count: u32,
    },
    /// Point a Lambda alias at another published version.
    LambdaSetAlias {
        function_name: String,
        alias: String,
        version: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        from: Option<String>,
    },
    LambdaSetReservedConcurrency {
        function_name: String,
        reserved_concurrency: u32,
    },
    /// Stop a CodeDeploy deployment and let CodeDeploy roll back to the last good revision.
    CodeDeployStopDeployment {
        application: String,
        deployment_group: String,
        deployment_id: String,
    },
    AutoScalingSetDesiredCapacity {
        group_name: String,
        desired_capacity: u32,
    },
    DynamoDbSetCapacity {
        table_name: String,
        capacity: TableCapacity,
    },
    /// Set an SSM Parameter Store value (a feature flag off, a limit down).
    SsmPutParameter { name: String, value: String },
    /// Run an SSM document (one the policy lists) on instances, and wait for it to finish.
    SsmRunCommand {
        document: String,
        #[serde(default)]
        parameters: BTreeMap<String, Vec<String>>,
        targets: CommandTargets,
    },
    /// Start an SSM Automation runbook (`AWS-RestartEC2Instance`, ...) and wait for it.
    SsmStartAutomation {
        document: String,
        #[serde(default)]
        parameters: BTreeMap<String, Vec<String>>,
    },
    /// A change IRAS does not drive itself (Kubernetes, on-prem): a signed call to the
    /// operator's runner, which records the prior state and restores it on rollback.
    Runner {
        /// What the runner does, e.g. `kubernetes.rollout_undo`, `kubernetes.scale`.
        operation: String,
        /// What it acts on, e.g. `shop/deployment/payment-service`.
        target: String,
        #[serde(default)]
        parameters: BTreeMap<String, String>,
    },
}

/// An action as a person reads it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionText {
    /// What the step does, as the AWS CLI (or the runner call) would say it.
    pub cli: String,
    /// The resource, as a person names it (`ECS service shop/payment`).
    pub resource: String,
    /// The change, `from → to`; `from` is the live value when it is only known at run time.
    pub change: String,
    /// How the step is undone.
    pub rollback: String,
}

/// Runner operations that only read (and so may carry low risk).
const READ_ONLY_RUNNER_OPERATIONS: &[&str] = &["kubernetes.rollout_status"];
/// Runner operations whose effect the runner can undo from the state it recorded.
const REVERSIBLE_RUNNER_OPERATIONS: &[&str] = &[
    "kubernetes.rollout_undo",
    "kubernetes.scale",
    "kubernetes.rollout_status",
    "feature_flag.set",
];

fn quote(s: &str) -> String {
    if s.chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_./:=,@".contains(c))
        && !s.is_empty()
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

fn join_params(p: &BTreeMap<String, Vec<String>>) -> String {
    let body: Vec<String> = p
        .iter()
        .map(|(k, v)| {
            let vals: Vec<String> = v.iter().map(|x| format!("\"{x}\"")).collect();
            format!("\"{k}\":[{}]", vals.join(","))
        })
        .collect();
    format!("{{{}}}", body.join(","))
}

fn capacity_text(c: &TableCapacity) -> String {
    match c {
        TableCapacity::OnDemand => "on-demand (PAY_PER_REQUEST)".into(),
        TableCapacity::Provisioned {
            read_capacity_units,
            write_capacity_units,
        } => format!("provisioned {read_capacity_units} RCU / {write_capacity_units} WCU"),
    }
}

impl Action {
    /// The serde tag: the name a policy rule lists.
    pub fn kind(&self) -> &'static str {
        match self {
            Action::EcsSetTaskDefinition { .. } => "ecs_set_task_definition",
            Action::EcsForceNewDeployment { .. } => "ecs_force_new_deployment",
            Action::EcsSetDesiredCount { .. } => "ecs_set_desired_count",
            Action::LambdaSetAlias { .. } => "lambda_set_alias",
            Action::LambdaSetReservedConcurrency { .. } => "lambda_set_reserved_concurrency",
            Action::CodeDeployStopDeployment { .. } => "code_deploy_stop_deployment",
            Action::AutoScalingSetDesiredCapacity { .. } => "auto_scaling_set_desired_capacity",
            Action::DynamoDbSetCapacity { .. } => "dynamo_db_set_capacity",
            Action::SsmPutParameter { .. } => "ssm_put_parameter",
            Action::SsmRunCommand { .. } => "ssm_run_command",
            Action::SsmStartAutomation { .. } => "ssm_start_automation",
            Action::Runner { .. } => "runner",
        }
    }

    /// Every action type, for policy validation and documentation.
    pub const KINDS: &'static [&'static str] = &[
        "ecs_set_task_definition",
        "ecs_force_new_deployment",
        "ecs_set_desired_count",
        "lambda_set_alias",
        "lambda_set_reserved_concurrency",
        "code_deploy_stop_deployment",
        "auto_scaling_set_desired_capacity",
        "dynamo_db_set_capacity",
        "ssm_put_parameter",
        "ssm_run_command",
        "ssm_start_automation",
        "runner",
    ];

    /// The SSM document the action runs, which a policy rule must list.
    pub fn document(&self) -> Option<&str> {
        match self {
            Action::SsmRunCommand { document, .. }
            | Action::SsmStartAutomation { document, .. } => Some(document),
            _ => None,
        }
    }

    /// The resources the action touches, each as its plain name and, when the policy says
    /// which account and region it is for, its ARN. A policy pattern may match either.
    pub fn resources(
        &self,
        account: Option<&str>,
        region: Option<&str>,
    ) -> Vec<(String, Option<String>)> {
        let arn = |service: &str, rest: String| match (region, account) {
            (Some(r), Some(a)) => Some(format!("arn:aws:{service}:{r}:{a}:{rest}")),
            _ => None,
        };
        match self {
            Action::EcsSetTaskDefinition {
                cluster, service, ..
            }
            | Action::EcsForceNewDeployment { cluster, service }
            | Action::EcsSetDesiredCount {
                cluster, service, ..
            } => vec![(
                format!("{cluster}/{service}"),
                arn("ecs", format!("service/{cluster}/{service}")),
            )],
            Action::LambdaSetAlias { function_name, .. }
            | Action::LambdaSetReservedConcurrency { function_name, .. } => vec![(
                function_name.clone(),
                arn("lambda", format!("function:{function_name}")),
            )],
            Action::CodeDeployStopDeployment {
                application,
                deployment_group,
                ..
            } => vec![(
                format!("{application}/{deployment_group}"),
                arn(
                    "codedeploy",
                    format!("deploymentgroup:{application}/{deployment_group}"),
                ),
            )],
            Action::AutoScalingSetDesiredCapacity { group_name, .. } => {
                vec![(group_name.clone(), None)]
            }
            Action::DynamoDbSetCapacity { table_name, .. } => vec![(
                table_name.clone(),
                arn("dynamodb", format!("table/{table_name}")),
            )],
            Action::SsmPutParameter { name, .. } => vec![(
                name.clone(),
                arn("ssm", format!("parameter/{}", name.trim_start_matches('/'))),
            )],
            Action::SsmRunCommand { targets, .. } => match targets {
                CommandTargets::InstanceIds { instance_ids } => {
                    instance_ids.iter().map(|i| (i.clone(), None)).collect()
                }
                CommandTargets::Tag { key, values } => values
                    .iter()
                    .map(|v| (format!("tag:{key}={v}"), None))
                    .collect(),
            },
            Action::SsmStartAutomation { parameters, .. } => parameters
                .get("InstanceId")
                .map(|ids| ids.iter().map(|i| (i.clone(), None)).collect())
                .unwrap_or_default(),
            Action::Runner { target, .. } => vec![(target.clone(), None)],
        }
    }

    /// Whether the executor can put back what was live before (from the recorded state).
    pub fn reversible(&self) -> bool {
        match self {
            Action::EcsSetTaskDefinition { .. }
            | Action::EcsSetDesiredCount { .. }
            | Action::LambdaSetAlias { .. }
            | Action::LambdaSetReservedConcurrency { .. }
            | Action::AutoScalingSetDesiredCapacity { .. }
            | Action::DynamoDbSetCapacity { .. }
            | Action::SsmPutParameter { .. } => true,
            // Replaced tasks, a stopped deployment, a command that ran: there is no prior
            // state to put back.
            Action::EcsForceNewDeployment { .. }
            | Action::CodeDeployStopDeployment { .. }
            | Action::SsmRunCommand { .. }
            | Action::SsmStartAutomation { .. } => false,
            Action::Runner { operation, .. } => {
                REVERSIBLE_RUNNER_OPERATIONS.contains(&operation.as_str())
            }
        }
    }

    /// True for actions that only read.
    pub fn read_only(&self) -> bool {
        matches!(self, Action::Runner { operation, .. } if READ_ONLY_RUNNER_OPERATIONS.contains(&operation.as_str()))
    }

    /// Every name and value the action carries, for validation.
    fn fields(&self) -> Vec<(&'static str, &str)> {
        let mut v: Vec<(&'static str, &str)> = Vec::new();
        match self {
            Action::EcsSetTaskDefinition {
                cluster,
                service,
                task_definition,
                from,
            } => {
                v.extend([
                    ("cluster", cluster.as_str()),
                    ("service", service),
                    ("task_definition", task_definition),
                ]);
                v.extend(from.as_deref().map(|f| ("from", f)));
            }
            Action::EcsForceNewDeployment { cluster, service }
            | Action::EcsSetDesiredCount {
                cluster, service, ..
            } => v.extend([("cluster", cluster.as_str()), ("service", service)]),
            Action::LambdaSetAlias {
                function_name,
                alias,
                version,
                from,
            } => {
                v.extend([
                    ("function_name", function_name.as_str()),
                    ("alias", alias),
                    ("version", version),
                ]);
                v.extend(from.as_deref().map(|f| ("from", f)));
            }
            Action::LambdaSetReservedConcurrency { function_name, .. } => {
                v.push(("function_name", function_name))
            }
            Action::CodeDeployStopDeployment {
                application,
                deployment_group,
                deployment_id,
            } => v.extend([
                ("application", application.as_str()),
                ("deployment_group", deployment_group),
                ("deployment_id", deployment_id),
            ]),
            Action::AutoScalingSetDesiredCapacity { group_name, .. } => {
                v.push(("group_name", group_name))
            }
            Action::DynamoDbSetCapacity { table_name, .. } => v.push(("table_name", table_name)),
            Action::SsmPutParameter { name, .. } => v.push(("name", name)),
            Action::SsmRunCommand {
                document, targets, ..
            } => {
                v.push(("document", document));
                match targets {
                    CommandTargets::InstanceIds { instance_ids } => {
                        v.extend(instance_ids.iter().map(|i| ("instance_ids", i.as_str())))
                    }
                    CommandTargets::Tag { key, values } => {
                        v.push(("targets.key", key));
                        v.extend(values.iter().map(|i| ("targets.values", i.as_str())));
                    }
                }
            }
            Action::SsmStartAutomation { document, .. } => v.push(("document", document)),
            Action::Runner {
                operation, target, ..
            } => v.extend([("operation", operation.as_str()), ("target", target)]),
        }
        v
    }

    /// Names must be plain: no control characters, no spaces, no shell or glob syntax, so a
    /// name can never widen a policy pattern or smuggle a second command into a runner.
    pub fn validate(&self) -> Result<(), String> {
        for (field, value) in self.fields() {
            if value.trim().is_empty() {
                return Err(format!("`{field}` is empty"));
            }
            if value.len() > 256 {
                return Err(format!("`{field}` is longer than 256 characters"));
            }
            if let Some(c) = value
                .chars()
                .find(|c| !(c.is_ascii_alphanumeric() || "-_./:=@+".contains(*c)))
            {
                return Err(format!(
                    "`{field}` contains `{}`, which a resource name may not",
                    c.escape_debug()
                ));
            }
        }
        if let Action::SsmRunCommand { targets, .. } = self {
            let empty = match targets {
                CommandTargets::InstanceIds { instance_ids } => instance_ids.is_empty(),
                CommandTargets::Tag { values, .. } => values.is_empty(),
            };
            if empty {
                return Err("the command names no target".into());
            }
        }
        Ok(())
    }

    /// The text a person approves, rendered from the action.
    pub fn render(&self) -> ActionText {
        let live = "the live value (recorded before the change)";
        match self {
            Action::EcsSetTaskDefinition {
                cluster,
                service,
                task_definition,
                from,
            } => ActionText {
                cli: format!(
                    "aws ecs update-service --cluster {} --service {} --task-definition {}",
                    quote(cluster),
                    quote(service),
                    quote(task_definition)
                ),
                resource: format!("ECS service {cluster}/{service}"),
                change: format!(
                    "task definition {} → {task_definition}",
                    from.as_deref().unwrap_or(live)
                ),
                rollback: "restore the task definition recorded before the change".into(),
            },
            Action::EcsForceNewDeployment { cluster, service } => ActionText {
                cli: format!(
                    "aws ecs update-service --cluster {} --service {} --force-new-deployment",
                    quote(cluster),
                    quote(service)
                ),
                resource: format!("ECS service {cluster}/{service}"),
                change: "running tasks → fresh tasks of the same task definition".into(),
                rollback: "none: replaced tasks cannot be brought back".into(),
            },
            Action::EcsSetDesiredCount {
                cluster,
                service,
                desired_count,
            } => ActionText {
                cli: format!(
                    "aws ecs update-service --cluster {} --service {} --desired-count {desired_count}",
                    quote(cluster),
                    quote(service)
                ),
                resource: format!("ECS service {cluster}/{service}"),
                change: format!("desired count {live} → {desired_count}"),
                rollback: "restore the desired count recorded before the change".into(),
            },
            Action::LambdaSetAlias {
                function_name,
                alias,
                version,
                from,
            } => ActionText {
                cli: format!(
                    "aws lambda update-alias --function-name {} --name {} --function-version {}",
                    quote(function_name),
                    quote(alias),
                    quote(version)
                ),
                resource: format!("Lambda alias {function_name}:{alias}"),
                change: format!(
                    "version {} → {version}",
                    from.as_deref().unwrap_or(live)
                ),
                rollback: "point the alias back at the version recorded before the change".into(),
            },
            Action::LambdaSetReservedConcurrency {
                function_name,
                reserved_concurrency,
            } => ActionText {
                cli: format!(
                    "aws lambda put-function-concurrency --function-name {} --reserved-concurrent-executions {reserved_concurrency}",
                    quote(function_name)
                ),
                resource: format!("Lambda function {function_name}"),
                change: format!("reserved concurrency {live} → {reserved_concurrency}"),
                rollback: "restore the reserved concurrency recorded before the change (or none)"
                    .into(),
            },
            Action::CodeDeployStopDeployment {
                application,
                deployment_group,
                deployment_id,
            } => ActionText {
                cli: format!(
                    "aws deploy stop-deployment --deployment-id {} --auto-rollback-enabled",
                    quote(deployment_id)
                ),
                resource: format!(
                    "CodeDeploy deployment {deployment_id} ({application}/{deployment_group})"
                ),
                change: "in progress → stopped, CodeDeploy rolls back to the last good revision"
                    .into(),
                rollback: "none: a stopped deployment is not resumed".into(),
            },
            Action::AutoScalingSetDesiredCapacity {
                group_name,
                desired_capacity,
            } => ActionText {
                cli: format!(
                    "aws autoscaling set-desired-capacity --auto-scaling-group-name {} --desired-capacity {desired_capacity}",
                    quote(group_name)
                ),
                resource: format!("Auto Scaling group {group_name}"),
                change: format!("desired capacity {live} → {desired_capacity}"),
                rollback: "restore the desired capacity recorded before the change".into(),
            },
            Action::DynamoDbSetCapacity {
                table_name,
                capacity,
            } => ActionText {
                cli: match capacity {
                    TableCapacity::OnDemand => format!(
                        "aws dynamodb update-table --table-name {} --billing-mode PAY_PER_REQUEST",
                        quote(table_name)
                    ),
                    TableCapacity::Provisioned {
                        read_capacity_units,
                        write_capacity_units,
                    } => format!(
                        "aws dynamodb update-table --table-name {} --billing-mode PROVISIONED --provisioned-throughput ReadCapacityUnits={read_capacity_units},WriteCapacityUnits={write_capacity_units}",
                        quote(table_name)
                    ),
                },
                resource: format!("DynamoDB table {table_name}"),
                change: format!("capacity {live} → {}", capacity_text(capacity)),
                rollback: "restore the billing mode and throughput recorded before the change"
                    .into(),
            },
            Action::SsmPutParameter { name, value } => ActionText {
                cli: format!(
                    "aws ssm put-parameter --name {} --value {} --overwrite",
                    quote(name),
                    quote(value)
                ),
                resource: format!("SSM parameter {name}"),
                change: format!("value {live} → {value:?}"),
                rollback: "restore the value recorded before the change (or delete the parameter if it did not exist)".into(),
            },
            Action::SsmRunCommand {
                document,
                parameters,
                targets,
            } => {
                let (cli_targets, shown) = match targets {
                    CommandTargets::InstanceIds { instance_ids } => (
                        format!("--instance-ids {}", instance_ids.join(" ")),
                        format!("instances {}", instance_ids.join(", ")),
                    ),
                    CommandTargets::Tag { key, values } => (
                        format!("--targets Key=tag:{key},Values={}", values.join(",")),
                        format!("instances tagged {key}={}", values.join("|")),
                    ),
                };
                ActionText {
                    cli: format!(
                        "aws ssm send-command --document-name {} {cli_targets} --parameters '{}'",
                        quote(document),
                        join_params(parameters)
                    ),
                    resource: shown,
                    change: format!("runs SSM document {document} and waits for it to finish"),
                    rollback: "none: a command that ran cannot be unrun".into(),
                }
            }
            Action::SsmStartAutomation {
                document,
                parameters,
            } => ActionText {
                cli: format!(
                    "aws ssm start-automation-execution --document-name {} --parameters '{}'",
                    quote(document),
                    join_params(parameters)
                ),
                resource: format!("SSM Automation {document}"),
                change: format!("runs runbook {document} and waits for it to finish"),
                rollback: "none: a runbook that ran cannot be unrun".into(),
            },
            Action::Runner {
                operation,
                target,
                parameters,
            } => {
                let mut cli = format!("runner {operation} {target}");
                for (k, v) in parameters {
                    let _ = write!(cli, " {k}={}", quote(v));
                }
                ActionText {
                    cli,
                    resource: format!("{target} (through the operator's runner)"),
                    change: match parameters.get("replicas") {
                        Some(r) => format!("replicas {live} → {r}"),
                        None => format!("{operation} on {target}"),
                    },
                    rollback: if self.reversible() {
                        "the runner restores the state it recorded before the change".into()
                    } else {
                        "none: the runner cannot undo this".into()
                    },
                }
            }
        }
    }
}

/// What was live on the resource, as an executor read it. Rollback puts exactly this back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ResourceState {
    EcsService {
        task_definition: String,
        desired_count: i32,
        /// The PRIMARY deployment's id: a forced deployment shows as a new one.
        #[serde(default)]
        primary_deployment: String,
    },
    LambdaAlias {
        version: String,
    },
    LambdaConcurrency {
        /// `None`: the function had no reserved concurrency.
        reserved: Option<i32>,
    },
    CodeDeployDeployment {
        status: String,
    },
    AutoScalingGroup {
        desired_capacity: i32,
    },
    DynamoDbTable {
        billing_mode: String,
        #[serde(default)]
        read_capacity_units: Option<i64>,
        #[serde(default)]
        write_capacity_units: Option<i64>,
    },
    SsmParameter {
        /// `None`: the parameter did not exist.
        value: Option<String>,
        #[serde(default)]
        parameter_type: Option<String>,
    },
    /// A command or runbook: what ran and how it ended.
    SsmExecution {
        #[serde(default)]
        id: Option<String>,
        status: String,
    },
    /// Whatever the runner reported; handed back to it on rollback.
    Runner {
        state: serde_json::Value,
    },
    /// Nothing was read (the dry-run executor).
    NotRead,
}

impl ResourceState {
    pub fn describe(&self) -> String {
        match self {
            ResourceState::EcsService {
                task_definition,
                desired_count,
                ..
            } => format!("task definition {task_definition}, desired count {desired_count}"),
            ResourceState::LambdaAlias { version } => format!("version {version}"),
            ResourceState::LambdaConcurrency { reserved } => match reserved {
                Some(n) => format!("reserved concurrency {n}"),
                None => "no reserved concurrency".into(),
            },
            ResourceState::CodeDeployDeployment { status } => format!("deployment {status}"),
            ResourceState::AutoScalingGroup { desired_capacity } => {
                format!("desired capacity {desired_capacity}")
            }
            ResourceState::DynamoDbTable {
                billing_mode,
                read_capacity_units,
                write_capacity_units,
            } => match (read_capacity_units, write_capacity_units) {
                (Some(r), Some(w)) if billing_mode == "PROVISIONED" => {
                    format!("provisioned {r} RCU / {w} WCU")
                }
                _ => format!("billing mode {billing_mode}"),
            },
            ResourceState::SsmParameter { value, .. } => match value {
                Some(v) => format!("value {v:?}"),
                None => "no such parameter".into(),
            },
            ResourceState::SsmExecution { id, status } => {
                format!("{} {status}", id.as_deref().unwrap_or("execution"))
            }
            ResourceState::Runner { state } => format!("runner state {state}"),
            ResourceState::NotRead => "not read (dry-run)".into(),
        }
    }
}

/// The `family:revision` part of a task definition ARN (or the name as given).
pub fn task_definition_name(s: &str) -> &str {
    s.rsplit_once(":task-definition/")
        .map(|(_, n)| n)
        .or_else(|| s.rsplit('/').next())
        .unwrap_or(s)
}

/// The hash an approval is bound to: every step's action, risk and rollback text, in order.
/// A plan edited after approval (another action, another parameter, another step) hashes
/// differently.
pub fn actions_hash(steps: &[crate::domain::RemediationStep]) -> String {
    let canonical: Vec<serde_json::Value> = steps
        .iter()
        .map(|s| {
            serde_json::json!({
                "action": s.action,
                "command": s.command,
                "risk": s.risk_level,
                "rollback": s.action.as_ref().map(|a| a.render().rollback),
            })
        })
        .collect();
    let bytes = serde_json::to_vec(&canonical).unwrap_or_default();
    hex::encode(Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_action_is_tagged_by_its_type_and_reads_back_the_same() {
        let a = Action::EcsSetTaskDefinition {
            cluster: "shop".into(),
            service: "payment".into(),
            task_definition: "payment:41".into(),
            from: Some("payment:42".into()),
        };
        let v = serde_json::to_value(&a).unwrap();
        assert_eq!(v["type"], "ecs_set_task_definition");
        assert_eq!(serde_json::from_value::<Action>(v).unwrap(), a);
        let t = a.render();
        assert_eq!(
            t.cli,
            "aws ecs update-service --cluster shop --service payment --task-definition payment:41"
        );
        assert_eq!(t.change, "task definition payment:42 → payment:41");
    }

    #[test]
    fn every_kind_is_listed_once() {
        let a: Action = serde_json::from_value(json!({
            "type": "dynamo_db_set_capacity", "table_name": "orders",
            "capacity": {"mode": "on_demand"}
        }))
        .unwrap();
        assert!(Action::KINDS.contains(&a.kind()));
        let mut kinds = Action::KINDS.to_vec();
        kinds.dedup();
        assert_eq!(kinds.len(), 12);
    }

    #[test]
    fn names_with_shell_or_glob_syntax_are_refused() {
        for bad in ["pay;rm", "pay ment", "pay*", "$(id)", ""] {
            let a = Action::EcsForceNewDeployment {
                cluster: "shop".into(),
                service: bad.into(),
            };
            assert!(a.validate().is_err(), "{bad:?}");
        }
        let ok = Action::SsmPutParameter {
            name: "/flags/checkout-v2".into(),
            value: "off; anything".into(),
        };
        assert!(
            ok.validate().is_ok(),
            "a parameter value is data, not a name"
        );
    }

    #[test]
    fn the_hash_changes_with_any_parameter() {
        use crate::domain::{RemediationStep, RiskLevel};
        let step = |n: u32| RemediationStep {
            description: "scale".into(),
            action: Some(Action::EcsSetDesiredCount {
                cluster: "shop".into(),
                service: "payment".into(),
                desired_count: n,
            }),
            command: String::new(),
            rollback_command: String::new(),
            risk_level: RiskLevel::Medium,
            estimated_duration_seconds: 60,
            timeout_seconds: None,
        };
        assert_eq!(actions_hash(&[step(4)]), actions_hash(&[step(4)]));
        assert_ne!(actions_hash(&[step(4)]), actions_hash(&[step(40)]));
        assert_ne!(actions_hash(&[step(4)]), actions_hash(&[step(4), step(4)]));
    }

    #[test]
    fn task_definition_arns_compare_by_family_and_revision() {
        assert_eq!(
            task_definition_name("arn:aws:ecs:us-east-1:123456789012:task-definition/payment:41"),
            "payment:41"
        );
        assert_eq!(task_definition_name("payment:41"), "payment:41");
    }
}
