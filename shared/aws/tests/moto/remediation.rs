//! The AWS executor against moto, through the Remediate stage: an approved plan changes each
//! live resource (read back through its API), a later failing step restores each one to the
//! state recorded before it changed (read back too), a step interrupted after its change is
//! not applied twice on restart, and an action outside the policy makes no mutating call.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use iras_aws::{AwsExecutor, EcsSettle};
use iras_core::policy::{enforce, RemediationPolicy};
use iras_core::ports::{Executor, StepCall};
use iras_core::stages::{remediate, Deps, RemediateInput};
use iras_core::testing::MemoryStore;
use iras_core::*;

use crate::support::Moto;

const POLICY: &str = r#"
rules:
  - actions: [ecs_set_task_definition, ecs_set_desired_count, ecs_force_new_deployment]
    resources: ["shop/payment"]
  - actions: [lambda_set_alias, lambda_set_reserved_concurrency]
    resources: ["pay-api"]
  - actions: [auto_scaling_set_desired_capacity]
    resources: ["web"]
  - actions: [ssm_put_parameter]
    resources: ["/flags/*"]
  - actions: [dynamo_db_set_capacity]
    resources: ["orders*"]
  - actions: [ssm_run_command]
    documents: [AWS-RunShellScript]
    resources: ["i-*"]
"#;

/// moto needs the role a Lambda function names to exist: one IAM CreateRole, by hand (the
/// Query API), so the tests need no IAM SDK.
fn create_role(moto: &Moto) {
    let body =
        "Action=CreateRole&Version=2010-05-08&RoleName=lambda&AssumeRolePolicyDocument=%7B%7D";
    let mut s = TcpStream::connect(moto.addr).unwrap();
    write!(
        s,
        "POST / HTTP/1.0\r\nHost: {}\r\nContent-Type: application/x-www-form-urlencoded\r\n\
         Authorization: AWS4-HMAC-SHA256 Credential=test/20240101/us-east-1/iam/aws4_request, SignedHeaders=host, Signature=0\r\n\
         Content-Length: {}\r\n\r\n{body}",
        moto.addr,
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(out.contains("CreateRoleResponse"), "{out}");
}

/// ECS service shop/payment on payment:2 (payment:1 before it) with 3 tasks; Lambda pay-api
/// with versions 1 and 2 and alias live on 2; Auto Scaling group web at 3; parameter
/// /flags/checkout-v2 = on; table orders provisioned 7/3.
async fn resources(moto: &Moto) {
    let ecs = aws_sdk_ecs::Client::new(&moto.config);
    ecs.create_cluster()
        .cluster_name("shop")
        .send()
        .await
        .unwrap();
    let mut arns = vec![];
    for image in ["acme/payment:2.3.0", "acme/payment:2.3.1"] {
        let td = ecs
            .register_task_definition()
            .family("payment")
            .container_definitions(
                aws_sdk_ecs::types::ContainerDefinition::builder()
                    .name("app")
                    .image(image)
                    .memory(128)
                    .build(),
            )
            .send()
            .await
            .unwrap();
        arns.push(td.task_definition.unwrap().task_definition_arn.unwrap());
    }
    ecs.create_service()
        .cluster("shop")
        .service_name("payment")
        .task_definition(&arns[1])
        .desired_count(3)
        .send()
        .await
        .unwrap();

    create_role(moto);
    let lambda = aws_sdk_lambda::Client::new(&moto.config);
    lambda
        .create_function()
        .function_name("pay-api")
        .runtime(aws_sdk_lambda::types::Runtime::Providedal2023)
        .role("arn:aws:iam::123456789012:role/lambda")
        .handler("bootstrap")
        .code(
            aws_sdk_lambda::types::FunctionCode::builder()
                .zip_file(aws_sdk_lambda::primitives::Blob::new(b"v1".to_vec()))
                .build(),
        )
        .send()
        .await
        .unwrap();
    lambda
        .publish_version()
        .function_name("pay-api")
        .send()
        .await
        .unwrap();
    lambda
        .update_function_code()
        .function_name("pay-api")
        .zip_file(aws_sdk_lambda::primitives::Blob::new(b"v2".to_vec()))
        .send()
        .await
        .unwrap();
    let v2 = lambda
        .publish_version()
        .function_name("pay-api")
        .send()
        .await
        .unwrap();
    assert_eq!(v2.version(), Some("2"));
    lambda
        .create_alias()
        .function_name("pay-api")
        .name("live")
        .function_version("2")
        .send()
        .await
        .unwrap();

    let asg = aws_sdk_autoscaling::Client::new(&moto.config);
    asg.create_launch_configuration()
        .launch_configuration_name("lc")
        .image_id("ami-12c6146b")
        .instance_type("t2.micro")
        .send()
        .await
        .unwrap();
    asg.create_auto_scaling_group()
        .auto_scaling_group_name("web")
        .launch_configuration_name("lc")
        .min_size(0)
        .max_size(10)
        .desired_capacity(3)
        .availability_zones("us-east-1a")
        .send()
        .await
        .unwrap();

    aws_sdk_ssm::Client::new(&moto.config)
        .put_parameter()
        .name("/flags/checkout-v2")
        .value("on")
        .r#type(aws_sdk_ssm::types::ParameterType::String)
        .send()
        .await
        .unwrap();

    use aws_sdk_dynamodb::types::*;
    moto.dynamodb()
        .create_table()
        .table_name("orders")
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("pk")
                .key_type(KeyType::Hash)
                .build()
                .unwrap(),
        )
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("pk")
                .attribute_type(ScalarAttributeType::S)
                .build()
                .unwrap(),
        )
        .provisioned_throughput(
            ProvisionedThroughput::builder()
                .read_capacity_units(7)
                .write_capacity_units(3)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
}

/// What a person would look at after the fact, read through each service's API.
#[derive(Debug, PartialEq)]
struct Live {
    task_definition: String,
    desired_count: i32,
    alias: String,
    concurrency: Option<i32>,
    capacity: i32,
    flag: String,
    billing: String,
    throughput: (i64, i64),
}

async fn live(moto: &Moto) -> Live {
    let s = aws_sdk_ecs::Client::new(&moto.config)
        .describe_services()
        .cluster("shop")
        .services("payment")
        .send()
        .await
        .unwrap();
    let s = &s.services()[0];
    let lambda = aws_sdk_lambda::Client::new(&moto.config);
    let alias = lambda
        .get_alias()
        .function_name("pay-api")
        .name("live")
        .send()
        .await
        .unwrap();
    let concurrency = lambda
        .get_function_concurrency()
        .function_name("pay-api")
        .send()
        .await
        .unwrap();
    let g = aws_sdk_autoscaling::Client::new(&moto.config)
        .describe_auto_scaling_groups()
        .auto_scaling_group_names("web")
        .send()
        .await
        .unwrap();
    let flag = aws_sdk_ssm::Client::new(&moto.config)
        .get_parameter()
        .name("/flags/checkout-v2")
        .send()
        .await
        .unwrap();
    let t = moto
        .dynamodb()
        .describe_table()
        .table_name("orders")
        .send()
        .await
        .unwrap();
    let t = t.table().unwrap();
    let pt = t.provisioned_throughput().unwrap();
    Live {
        task_definition: iras_core::action::task_definition_name(s.task_definition().unwrap())
            .to_string(),
        desired_count: s.desired_count(),
        alias: alias.function_version().unwrap().to_string(),
        concurrency: concurrency.reserved_concurrent_executions(),
        capacity: g.auto_scaling_groups()[0].desired_capacity().unwrap(),
        flag: flag.parameter().unwrap().value().unwrap().to_string(),
        billing: t
            .billing_mode_summary()
            .and_then(|b| b.billing_mode())
            .map(|m| m.as_str().to_string())
            .unwrap_or_else(|| "PROVISIONED".into()),
        throughput: (
            pt.read_capacity_units().unwrap_or_default(),
            pt.write_capacity_units().unwrap_or_default(),
        ),
    }
}

fn executor(moto: &Moto, policy: &RemediationPolicy) -> AwsExecutor {
    let mut e = AwsExecutor::new(&moto.config, policy.clone());
    e.poll = Duration::from_millis(50);
    // moto never starts an ECS service's tasks: settled means the configuration reads back.
    e.ecs_settle = EcsSettle::ReadBack;
    e
}

fn step(action: Action) -> RemediationStep {
    RemediationStep::new("step".into(), action, RiskLevel::Medium, 30)
}

fn every_action() -> Vec<RemediationStep> {
    vec![
        step(Action::EcsSetTaskDefinition {
            cluster: "shop".into(),
            service: "payment".into(),
            task_definition: "payment:1".into(),
            from: Some("payment:2".into()),
        }),
        step(Action::EcsSetDesiredCount {
            cluster: "shop".into(),
            service: "payment".into(),
            desired_count: 6,
        }),
        step(Action::LambdaSetAlias {
            function_name: "pay-api".into(),
            alias: "live".into(),
            version: "1".into(),
            from: Some("2".into()),
        }),
        step(Action::LambdaSetReservedConcurrency {
            function_name: "pay-api".into(),
            reserved_concurrency: 5,
        }),
        step(Action::AutoScalingSetDesiredCapacity {
            group_name: "web".into(),
            desired_capacity: 5,
        }),
        step(Action::SsmPutParameter {
            name: "/flags/checkout-v2".into(),
            value: "off".into(),
        }),
        step(Action::DynamoDbSetCapacity {
            table_name: "orders".into(),
            capacity: TableCapacity::OnDemand,
        }),
    ]
}

/// An incident whose plan (made under `policy`) was approved by alice, in a fresh store.
async fn approved(
    steps: Vec<RemediationStep>,
    policy: &RemediationPolicy,
    exec: AwsExecutor,
) -> (Deps, IncidentId) {
    let store = Arc::new(MemoryStore::default());
    let mut config = PipelineConfig::default();
    config.policy = policy.clone();
    config.executor = iras_core::config::ExecutorKind::Aws;
    let deps = Deps::builder(store.clone())
        .executor(Arc::new(exec))
        .config(config)
        .build();
    let alert = Alert::from_json(serde_json::json!({
        "title": "High error rate on payment", "timestamp": "2024-03-12T14:07:30Z"
    }))
    .unwrap();
    let now = chrono::Utc::now();
    let mut inc = Incident::open(IncidentId::generate(), alert, now);
    let plan = enforce(
        RemediationPlan {
            summary: "roll back".into(),
            steps,
            reversible: true,
            requires_human_approval: true,
            blocked_by_policy: false,
            policy: vec![],
            safety_notes: vec![],
            analyst: "test".into(),
            required_approvers: 1,
        },
        policy,
        None,
        true,
    );
    let decision = ApprovalDecision {
        decision: Decision::Approved,
        approver: "alice".into(),
        channel: "cli".into(),
        decided_at: now,
        comment: None,
        plan_hash: plan.actions_hash(),
        delivery_pending: false,
        identity: Default::default(),
    };
    inc.approval = Some(ApprovalRequest {
        approval_id: "apr-1".into(),
        task_token: "t".into(),
        requested_at: now,
        expires_at: now,
        decision: Some(decision.clone()),
        message_ref: None,
        plan_hash: plan.actions_hash(),
        required_approvers: 1,
        approvals: vec![decision],
    });
    inc.plan = Some(plan);
    store.create_incident(&inc).await.unwrap();
    (deps, inc.incident_id)
}

fn input(id: &IncidentId) -> RemediateInput {
    RemediateInput {
        incident_id: id.clone(),
        rollback: None,
    }
}

#[tokio::test]
async fn an_approved_plan_changes_every_live_resource() {
    let Some(moto) = Moto::start().await else {
        return;
    };
    resources(&moto).await;
    let policy = RemediationPolicy::parse(POLICY, "policy.yaml").unwrap();
    let mut steps = every_action();
    steps.push(step(Action::SsmRunCommand {
        document: "AWS-RunShellScript".into(),
        parameters: [(
            "commands".to_string(),
            vec!["systemctl restart app".to_string()],
        )]
        .into_iter()
        .collect(),
        targets: CommandTargets::InstanceIds {
            instance_ids: vec!["i-0123456789abcdef0".into()],
        },
    }));
    let (deps, id) = approved(steps, &policy, executor(&moto, &policy)).await;
    let out = remediate(&deps, &input(&id)).await.unwrap();
    assert_eq!(out.outcome, RemediationOutcome::Applied, "{}", out.summary);
    let now = live(&moto).await;
    assert_eq!(
        now,
        Live {
            task_definition: "payment:1".into(),
            desired_count: 6,
            alias: "1".into(),
            concurrency: Some(5),
            capacity: 5,
            flag: "off".into(),
            billing: "PAY_PER_REQUEST".into(),
            // On-demand tables report whatever throughput they last had.
            throughput: now.throughput,
        }
    );
    let records = deps.store.steps(&id).await.unwrap();
    let ran = records[7]
        .after
        .as_ref()
        .map(ResourceState::describe)
        .unwrap_or_default();
    assert!(
        ran.ends_with("Success"),
        "the command ran to Success: {:?}",
        records[7]
    );
}

/// The PRIMARY deployment of shop/payment as ECS reports it.
async fn primary_deployment(moto: &Moto) -> String {
    let s = aws_sdk_ecs::Client::new(&moto.config)
        .describe_services()
        .cluster("shop")
        .services("payment")
        .send()
        .await
        .unwrap();
    s.services()[0]
        .deployments()
        .iter()
        .find(|d| d.status() == Some("PRIMARY"))
        .and_then(|d| d.id())
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn a_forced_deployment_replaces_the_primary_deployment_once() {
    let Some(moto) = Moto::start().await else {
        return;
    };
    resources(&moto).await;
    let policy = RemediationPolicy::parse(POLICY, "policy.yaml").unwrap();
    let before = primary_deployment(&moto).await;
    let force = Action::EcsForceNewDeployment {
        cluster: "shop".into(),
        service: "payment".into(),
    };
    let (deps, id) = approved(vec![step(force)], &policy, executor(&moto, &policy)).await;
    let out = remediate(&deps, &input(&id)).await.unwrap();
    assert_eq!(out.outcome, RemediationOutcome::Applied, "{}", out.summary);
    let after = primary_deployment(&moto).await;
    assert_ne!(after, before, "a new deployment replaced the tasks");
    let rec = &deps.store.steps(&id).await.unwrap()[0];
    assert!(
        matches!(rec.after, Some(ResourceState::EcsService { ref primary_deployment, .. }) if *primary_deployment == after),
        "{rec:?}"
    );
    // Run again (a retried Lambda): the recorded prior deployment is gone, so nothing is forced.
    remediate(&deps, &input(&id)).await.unwrap();
    assert_eq!(primary_deployment(&moto).await, after);
    let live = live(&moto).await;
    assert_eq!(live.task_definition, "payment:2", "same task definition");
}

#[tokio::test]
async fn a_later_failing_step_restores_each_earlier_one_to_its_recorded_state() {
    let Some(moto) = Moto::start().await else {
        return;
    };
    resources(&moto).await;
    let before = live(&moto).await;
    let policy = RemediationPolicy::parse(POLICY, "policy.yaml").unwrap();
    let mut steps = every_action();
    // The last step names a table that does not exist: it fails before changing anything.
    steps.push(step(Action::DynamoDbSetCapacity {
        table_name: "orders-archive".into(),
        capacity: TableCapacity::OnDemand,
    }));
    let (deps, id) = approved(steps, &policy, executor(&moto, &policy)).await;
    let out = remediate(&deps, &input(&id)).await.unwrap();
    assert_eq!(
        out.outcome,
        RemediationOutcome::RolledBack,
        "{}",
        out.summary
    );
    assert_eq!(out.failed_step, Some(7));
    assert_eq!(
        live(&moto).await,
        before,
        "every resource is back as it was"
    );
    let records = deps.store.steps(&id).await.unwrap();
    // The states restored are the ones read before the change, not guesses.
    let prior = |i: usize| {
        records
            .iter()
            .find(|r| r.phase == StepPhase::Apply && r.step == i)
            .and_then(|r| r.prior.clone())
            .unwrap()
    };
    assert!(
        matches!(
            prior(0),
            ResourceState::EcsService { ref task_definition, desired_count: 3, .. }
                if task_definition == "payment:2"
        ),
        "{:?}",
        prior(0)
    );
    assert_eq!(
        prior(3),
        ResourceState::LambdaConcurrency { reserved: None }
    );
    assert_eq!(
        prior(6),
        ResourceState::DynamoDbTable {
            billing_mode: "PROVISIONED".into(),
            read_capacity_units: Some(7),
            write_capacity_units: Some(3),
        }
    );
    let rolled: Vec<usize> = records
        .iter()
        .filter(|r| r.phase == StepPhase::Rollback && r.status == StepStatus::Succeeded)
        .map(|r| r.step)
        .collect();
    assert_eq!(rolled, vec![6, 5, 4, 3, 2, 1, 0], "newest first");
}

#[tokio::test]
async fn a_step_interrupted_after_its_change_is_not_applied_again_on_restart() {
    let Some(moto) = Moto::start().await else {
        return;
    };
    resources(&moto).await;
    let policy = RemediationPolicy::parse(POLICY, "policy.yaml").unwrap();
    let flag = Action::SsmPutParameter {
        name: "/flags/checkout-v2".into(),
        value: "off".into(),
    };
    let exec = executor(&moto, &policy);
    // The first invocation: claimed, prior recorded, changed, then the Lambda died before
    // recording the end.
    let first = executor(&moto, &policy);
    let (deps, id) = approved(vec![step(flag.clone())], &policy, exec).await;
    let call = StepCall {
        incident: &id,
        step: 0,
        phase: StepPhase::Apply,
        action: &flag,
        timeout: Duration::from_secs(30),
    };
    let prior = first.observe(&call).await.unwrap();
    deps.store
        .claim_step(
            &id,
            &StepRecord {
                phase: StepPhase::Apply,
                step: 0,
                command: flag.render().cli,
                rollback_command: String::new(),
                action: Some(flag.clone()),
                prior: Some(prior.clone()),
                after: None,
                status: StepStatus::Started,
                executor: "aws".into(),
                started_at: chrono::Utc::now(),
                ended_at: None,
                output: String::new(),
            },
        )
        .await
        .unwrap();
    first.apply(&call, &prior).await.unwrap();

    // The retried invocation.
    let out = remediate(&deps, &input(&id)).await.unwrap();
    assert_eq!(out.outcome, RemediationOutcome::Applied);
    let history = aws_sdk_ssm::Client::new(&moto.config)
        .get_parameter_history()
        .name("/flags/checkout-v2")
        .send()
        .await
        .unwrap();
    let values: Vec<&str> = history
        .parameters()
        .iter()
        .filter_map(|p| p.value())
        .collect();
    assert_eq!(values, ["on", "off"], "created once, changed once");
    let rec = &deps.store.steps(&id).await.unwrap()[0];
    assert_eq!(rec.status, StepStatus::Succeeded);
    assert!(rec.output.contains("nothing changed"), "{}", rec.output);
}

#[tokio::test]
async fn an_action_outside_the_policy_makes_no_mutating_call() {
    let Some(moto) = Moto::start().await else {
        return;
    };
    resources(&moto).await;
    let before = live(&moto).await;
    let narrow = RemediationPolicy::parse(
        "rules:\n  - actions: [ssm_put_parameter]\n    resources: [\"/flags/*\"]\n",
        "narrow.yaml",
    )
    .unwrap();
    let rollback = Action::EcsSetTaskDefinition {
        cluster: "shop".into(),
        service: "payment".into(),
        task_definition: "payment:1".into(),
        from: None,
    };
    // Even handed the action directly, the executor refuses before any SDK call.
    let exec = executor(&moto, &narrow);
    let id = IncidentId::generate();
    let call = StepCall {
        incident: &id,
        step: 0,
        phase: StepPhase::Apply,
        action: &rollback,
        timeout: Duration::from_secs(5),
    };
    let prior = ResourceState::NotRead;
    let e = exec.apply(&call, &prior).await.unwrap_err();
    assert!(matches!(e, iras_core::ExecError::Refused(_)), "{e:?}");
    // And through the stage: the plan is blocked and Remediate refuses it.
    let (deps, id) = approved(
        vec![step(rollback.clone())],
        &narrow,
        executor(&moto, &narrow),
    )
    .await;
    let e = remediate(&deps, &input(&id)).await.unwrap_err();
    assert_eq!(e.name(), "PolicyViolation");
    assert_eq!(live(&moto).await, before, "nothing changed");
    // Without a policy file nothing runs for real, whatever the action.
    let none = executor(&moto, &RemediationPolicy::default());
    let flag = Action::SsmPutParameter {
        name: "/flags/checkout-v2".into(),
        value: "off".into(),
    };
    let call = StepCall {
        action: &flag,
        ..call
    };
    assert!(none.apply(&call, &prior).await.is_err());
    assert_eq!(live(&moto).await, before);
}
