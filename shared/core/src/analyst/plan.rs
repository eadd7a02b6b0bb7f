//! Remediation plans from a small catalogue of safe typed actions. Each action is built from
//! names taken from the evidence (services, namespaces, flags, tables) only when they are
//! plain identifiers, otherwise the step is left out and the summary says why. Kubernetes
//! and flag changes go through the operator's runner; AWS resources are changed directly.

use std::collections::BTreeMap;

use super::metrics;
use super::rca::fault_phrase;
use super::text::{clean, flag_key, is_flag_deployment, safe_name};
use super::triage::tag;
use crate::domain::*;

/// What the catalogue does about a kind of fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Remedy {
    /// Undo the change that caused it (a deploy, or a flag).
    RollBack,
    /// Turn off the flag whose change caused it; a code deploy is rolled back.
    ToggleFlag,
    /// Fail over away from a dependency that is down.
    FailOver,
    /// More table capacity.
    Capacity,
    /// Fresh instances (a leak, a crash loop): buys time.
    Restart,
    /// More replicas to absorb load; a restart when the count is unknown.
    ScaleOut,
    /// Pause the workload that starves its neighbours.
    Pause,
    /// Nothing catalogued.
    Manual,
}

/// The one place fault labels are read: a renamed label is a one-line change here.
fn remedy_for(fault: &str) -> Remedy {
    match fault {
        "bad_deploy" => Remedy::RollBack,
        "config_change" => Remedy::ToggleFlag,
        "dependency_outage" => Remedy::FailOver,
        "dynamodb_throttling" => Remedy::Capacity,
        "memory_leak" | "crash" => Remedy::Restart,
        "connection_pool_exhaustion" | "retry_storm" | "resource_exhaustion" | "throttling" => {
            Remedy::ScaleOut
        }
        "noisy_neighbour" => Remedy::Pause,
        _ => Remedy::Manual,
    }
}

/// Whether rolling back a deploy that preceded the onset fits this fault.
fn deploy_rollback_fits(fault: &str) -> bool {
    matches!(
        remedy_for(fault),
        Remedy::RollBack | Remedy::Restart | Remedy::ScaleOut | Remedy::Pause
    ) || fault == "unknown"
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    Kubernetes,
    Ecs,
    Lambda,
    DynamoDb,
}

/// X-Ray style node names carry their AWS type: `PetSearch_AWS::ECS::Fargate`.
fn shape_of(svc: &str, fault: &str, ctx: &ContextBundle) -> Shape {
    let lower = svc.to_ascii_lowercase();
    if lower.contains("aws::dynamodb") || remedy_for(fault) == Remedy::Capacity {
        return Shape::DynamoDb;
    }
    if lower.contains("aws::lambda") {
        return Shape::Lambda;
    }
    if lower.contains("aws::ecs")
        || lower.contains("fargate")
        || ctx
            .deployments
            .iter()
            .any(|d| d.service == svc && ecs_names(d).is_some())
    {
        return Shape::Ecs;
    }
    let names: Vec<String> = ctx
        .metrics
        .iter()
        .filter(|m| m.service == svc)
        .map(|m| m.name.to_ascii_lowercase())
        .chain(
            ctx.anomalies
                .iter()
                .filter(|a| a.service == svc)
                .map(|a| a.metric.to_ascii_lowercase()),
        )
        .collect();
    if names
        .iter()
        .any(|n| n.contains("capacityunits") || n.contains("throttleevents"))
    {
        return Shape::DynamoDb;
    }
    if names
        .iter()
        .any(|n| n == "invocations" || n.contains("concurrentexecutions"))
    {
        return Shape::Lambda;
    }
    Shape::Kubernetes
}

/// The resource name inside an X-Ray node name (`PetSearch_AWS::ECS::Fargate` -> `PetSearch`).
fn resource_name(svc: &str) -> &str {
    match svc.find("_AWS::") {
        Some(i) if i > 0 => &svc[..i],
        _ => svc,
    }
}

/// The last value of a service's metric whose name contains all of `words` (lowercase).
fn last_value(ctx: &ContextBundle, svc: &str, words: &[&str]) -> Option<f64> {
    ctx.metrics
        .iter()
        .filter(|m| m.service == svc)
        .filter(|m| {
            let n = metrics::tokens(&m.name).join("_");
            words.iter().all(|w| n.contains(w))
        })
        .find_map(|m| m.points.iter().rev().find_map(|p| p.1))
        .filter(|v| v.is_finite() && *v >= 0.0)
}

/// `(cluster, service)` from the ECS deployment evidence ("... of service X in cluster Y").
fn ecs_names(d: &Deployment) -> Option<(String, String)> {
    let rest = d.description.strip_prefix("ECS deployment ")?;
    let (_, after) = rest.split_once(" of service ")?;
    let (service, after) = after.split_once(" in cluster ")?;
    let cluster = after.split([';', ' ', ',']).next()?;
    (safe_name(service) && safe_name(cluster)).then(|| (cluster.to_string(), service.to_string()))
}

/// The task definition before `family:N`: the one deployed before it, from the evidence, or
/// revision N-1 of the same family.
fn previous_task_definition(ctx: &ContextBundle, svc: &str, d: &Deployment) -> Option<String> {
    let earlier = ctx
        .deployments
        .iter()
        .filter(|p| p.service == svc && p.timestamp < d.timestamp && p.version != d.version)
        .max_by_key(|p| p.timestamp)
        .map(|p| p.version.clone());
    earlier.or_else(|| {
        let (family, rev) = d.version.rsplit_once(':')?;
        let n: u64 = rev.parse().ok()?;
        (n > 1).then(|| format!("{family}:{}", n - 1))
    })
}

fn runner(operation: &str, target: String, params: &[(&str, String)]) -> Action {
    Action::Runner {
        operation: operation.into(),
        target,
        parameters: params
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect::<BTreeMap<_, _>>(),
    }
}

fn step(description: String, action: Action, risk: RiskLevel, seconds: u64) -> RemediationStep {
    RemediationStep::new(description, action, risk, seconds)
}

pub fn plan(alert: &Alert, h: &RootCauseHypothesis, ctx: &ContextBundle) -> RemediationPlan {
    let svc = h.root_cause_service.as_str();
    let fault = h.fault.as_str();
    let remedy = remedy_for(fault);
    let mut notes: Vec<String> = Vec::new();
    let mut steps: Vec<RemediationStep> = Vec::new();

    let namespace = tag(alert, "namespace")
        .or_else(|| tag(alert, "kube_namespace"))
        .unwrap_or_else(|| "default".into());
    let env = tag(alert, "env")
        .or_else(|| tag(alert, "environment"))
        .unwrap_or_else(|| "production".into());
    let ns_ok = safe_name(&namespace);
    let env_ok = safe_name(&env);
    if !ns_ok {
        notes.push("the alert's namespace is not a plain name; Kubernetes steps left out".into());
    }
    if !env_ok {
        notes.push("the alert's environment is not a plain name; flag steps left out".into());
    }

    let shape = shape_of(svc, fault, ctx);
    let name = resource_name(svc);
    let k8s_ok = ns_ok && shape == Shape::Kubernetes;

    if !safe_name(svc) || !safe_name(name) {
        notes.push(format!(
            "the root-cause service name `{}` is not a plain identifier: no action can name it",
            clean(svc, 60)
        ));
    } else {
        let suspect = h.suspect_deployment.as_ref().filter(|d| d.service == svc);
        let flag = suspect.filter(|d| is_flag_deployment(d));
        let code_deploy = suspect.filter(|d| !is_flag_deployment(d));
        let replicas = last_value(ctx, svc, &["ready", "replicas"])
            .or_else(|| last_value(ctx, svc, &["available", "replicas"]))
            .map(|v| v.round() as u64)
            .filter(|v| *v >= 1);
        let deployment = format!("{namespace}/deployment/{name}");
        let ecs = suspect
            .and_then(ecs_names)
            .or_else(|| {
                ctx.deployments
                    .iter()
                    .filter(|d| d.service == svc)
                    .find_map(ecs_names)
            })
            .unwrap_or_else(|| {
                let cluster = tag(alert, "cluster").unwrap_or_else(|| "default".into());
                (cluster, name.to_string())
            });
        let ecs_ok = safe_name(&ecs.0) && safe_name(&ecs.1);

        if let (Some(d), true) = (
            flag,
            matches!(remedy, Remedy::ToggleFlag | Remedy::RollBack),
        ) {
            match (flag_key(d), env_ok) {
                (Some(key), true) => steps.push(step(
                    format!(
                        "Turn off flag {key}: its change ({}) preceded the errors",
                        clean(&d.description, 80)
                    ),
                    runner(
                        "feature_flag.set",
                        format!("{env}/{key}"),
                        &[("value", "off".into())],
                    ),
                    RiskLevel::Low,
                    30,
                )),
                (None, _) => notes
                    .push("the flag change names no usable flag key: turn it off by hand".into()),
                _ => {}
            }
        } else if let (Some(d), true) = (code_deploy, deploy_rollback_fits(fault)) {
            match shape {
                Shape::Kubernetes if k8s_ok => {
                    steps.push(step(
                        format!(
                            "Roll {name} back from {}: the deployment preceded the onset",
                            clean(&d.version, 40)
                        ),
                        runner("kubernetes.rollout_undo", deployment.clone(), &[]),
                        RiskLevel::Medium,
                        120,
                    ));
                }
                Shape::Lambda => {
                    let previous = ctx
                        .deployments
                        .iter()
                        .filter(|p| p.service == svc && p.timestamp < d.timestamp)
                        .max_by_key(|p| p.timestamp)
                        .map(|p| p.version.clone());
                    let alias = tag(alert, "alias").unwrap_or_else(|| "live".into());
                    match previous {
                        Some(prev) if safe_name(&prev) && safe_name(&alias) && safe_name(&d.version) => {
                            steps.push(step(
                                format!("Point alias {alias} of {name} back to version {prev}"),
                                Action::LambdaSetAlias {
                                    function_name: name.to_string(),
                                    alias,
                                    version: prev,
                                    from: Some(d.version.clone()),
                                },
                                RiskLevel::Medium,
                                30,
                            ));
                        }
                        _ => notes.push(format!(
                            "the version before {} of {name} is unknown: roll the alias back by hand",
                            clean(&d.version, 40)
                        )),
                    }
                }
                Shape::Ecs => match previous_task_definition(ctx, svc, d) {
                    Some(prev) if ecs_ok && safe_name(&prev) && safe_name(&d.version) => {
                        steps.push(step(
                            format!(
                                "Roll ECS service {}/{} back from {} to {prev}: the deployment preceded the onset",
                                ecs.0,
                                ecs.1,
                                clean(&d.version, 40)
                            ),
                            Action::EcsSetTaskDefinition {
                                cluster: ecs.0.clone(),
                                service: ecs.1.clone(),
                                task_definition: prev,
                                from: Some(d.version.clone()),
                            },
                            RiskLevel::Medium,
                            300,
                        ));
                    }
                    _ => notes.push(format!(
                        "{name} runs on ECS and its previous task definition is unknown: roll it back by hand"
                    )),
                },
                _ => {}
            }
        } else {
            match remedy {
                Remedy::FailOver if env_ok => {
                    let flag = format!("{name}-failover");
                    if safe_name(&flag) {
                        steps.push(step(
                            format!("Fail over away from {name} (circuit-breaker / fallback flag)"),
                            runner(
                                "feature_flag.set",
                                format!("{env}/{flag}"),
                                &[("value", "on".into())],
                            ),
                            RiskLevel::Medium,
                            30,
                        ));
                    }
                }
                Remedy::Capacity => steps.push(step(
                    format!("Switch {name} to on-demand capacity so writes stop being throttled"),
                    Action::DynamoDbSetCapacity {
                        table_name: name.to_string(),
                        capacity: TableCapacity::OnDemand,
                    },
                    RiskLevel::Medium,
                    60,
                )),
                Remedy::Restart => match shape {
                    Shape::Kubernetes if k8s_ok => steps.push(step(
                        format!("Restart {name}'s pods to release leaked memory (buys time; the leak stays)"),
                        runner("kubernetes.rollout_restart", deployment.clone(), &[]),
                        RiskLevel::Medium,
                        180,
                    )),
                    Shape::Ecs if ecs_ok => steps.push(step(
                        format!(
                            "Replace {name}'s tasks (cluster {}) to release leaked memory",
                            ecs.0
                        ),
                        Action::EcsForceNewDeployment {
                            cluster: ecs.0.clone(),
                            service: ecs.1.clone(),
                        },
                        RiskLevel::Medium,
                        300,
                    )),
                    _ => {}
                },
                Remedy::ScaleOut | Remedy::Pause if k8s_ok => match (replicas, remedy) {
                    (_, Remedy::Pause) => steps.push(step(
                        format!("Pause {name}, which starves its neighbours"),
                        runner(
                            "kubernetes.scale",
                            deployment.clone(),
                            &[("replicas", "0".into())],
                        ),
                        RiskLevel::Medium,
                        60,
                    )),
                    (Some(n), _) => {
                        let target = (n * 3).div_ceil(2).max(n + 1);
                        steps.push(step(
                            format!("Scale {name} from {n} to {target} replicas to absorb the load"),
                            runner(
                                "kubernetes.scale",
                                deployment.clone(),
                                &[("replicas", target.to_string())],
                            ),
                            RiskLevel::Medium,
                            90,
                        ));
                    }
                    (None, _) if fault == "connection_pool_exhaustion" => {
                        notes.push(format!("{name}'s replica count is unknown, so it is restarted rather than scaled"));
                        steps.push(step(
                            format!("Restart {name}'s pods to return leaked pool connections"),
                            runner("kubernetes.rollout_restart", deployment.clone(), &[]),
                            RiskLevel::Medium,
                            180,
                        ));
                    }
                    (None, _) => notes.push(format!(
                        "{name}'s replica count is unknown: choose a scale-out target by hand"
                    )),
                },
                _ => {}
            }
        }
        // Watch the rollout settle after anything that changed the deployment.
        if k8s_ok
            && steps.iter().any(|s| {
                matches!(&s.action, Some(Action::Runner { operation, .. }) if operation.starts_with("kubernetes."))
            })
        {
            steps.push(step(
                format!("Verify that {name} is healthy again"),
                runner("kubernetes.rollout_status", deployment, &[]),
                RiskLevel::Low,
                120,
            ));
        }
    }

    if steps.is_empty() {
        notes.push(match fault {
            "certificate_expiry" => "renew the certificate (and fix its renewal) by hand: no catalogued action does that".into(),
            "disk_full" => "free or grow the volume by hand: no catalogued action does that".into(),
            "dns_resolution_failure" => "relieve DNS (scale resolvers, node-local cache, fewer search-domain lookups) by hand".into(),
            "cache_eviction" => "grow the cache or expire the unbounded keys by hand".into(),
            _ => "no catalogued action fits this fault: a human must decide".into(),
        });
    }
    let reversible = !steps.is_empty() && steps.iter().all(RemediationStep::has_rollback);
    let risky = steps.iter().any(|s| s.risk_level >= RiskLevel::Medium);
    let mut summary = format!(
        "{} in {} (confidence {:.2}): ",
        capitalise(fault_phrase(fault)),
        clean(svc, 60),
        h.confidence
    );
    if steps.is_empty() {
        summary.push_str("no automated step proposed");
    } else {
        let actions: Vec<String> = steps.iter().map(|s| s.description.clone()).collect();
        summary.push_str(&actions.join("; then "));
    }
    if !notes.is_empty() {
        summary.push_str(". Notes: ");
        summary.push_str(&notes.join("; "));
    }
    if h.confidence < 0.7 {
        summary.push_str(". The root cause is uncertain: check the evidence before approving");
    }
    summary.push('.');
    RemediationPlan {
        summary,
        steps,
        reversible,
        requires_human_approval: !reversible || risky || h.confidence < 0.7,
        blocked_by_policy: false,
        policy: vec![],
        safety_notes: vec![],
        analyst: "offline".into(),
        required_approvers: 1,
    }
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().collect::<String>() + c.as_str(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::RemediationPolicy;
    use serde_json::json;

    fn alert(labels: serde_json::Value) -> Alert {
        Alert::from_json(
            json!({"title": "t", "timestamp": "2024-03-12T14:07:30Z", "labels": labels}),
        )
        .unwrap()
    }

    fn hyp(svc: &str, fault: &str, dep: Option<Deployment>) -> RootCauseHypothesis {
        RootCauseHypothesis {
            primary_cause: String::new(),
            root_cause_service: svc.into(),
            fault: fault.into(),
            candidates: vec![],
            contributing_factors: vec![],
            evidence: vec![],
            confidence: 0.8,
            alternatives: vec![],
            suspect_deployment: dep,
            analyst: "offline".into(),
        }
    }

    fn dep(svc: &str, version: &str, desc: &str) -> Deployment {
        Deployment {
            service: svc.into(),
            version: version.into(),
            timestamp: chrono::Utc::now(),
            description: desc.into(),
            author: String::new(),
        }
    }

    fn cli(p: &RemediationPlan, i: usize) -> String {
        p.steps[i].text().cli
    }

    fn all_valid(p: &RemediationPlan) {
        let policy = RemediationPolicy::default();
        for s in &p.steps {
            policy
                .check(s.action.as_ref().unwrap())
                .unwrap_or_else(|e| panic!("{}: {e}", s.text().cli));
        }
    }

    #[test]
    fn bad_deploy_is_rolled_back_through_the_runner_and_verified() {
        let h = hyp(
            "payment-service",
            "bad_deploy",
            Some(dep("payment-service", "v2.3.1", "x")),
        );
        let p = plan(
            &alert(json!({"namespace": "shop"})),
            &h,
            &ContextBundle::default(),
        );
        assert_eq!(
            cli(&p, 0),
            "runner kubernetes.rollout_undo shop/deployment/payment-service"
        );
        assert!(p.steps[0].has_rollback());
        assert_eq!(
            cli(&p, 1),
            "runner kubernetes.rollout_status shop/deployment/payment-service"
        );
        all_valid(&p);
    }

    #[test]
    fn a_bad_ecs_deploy_rolls_the_service_back_to_the_task_definition_before_it() {
        let d = dep(
            "payment",
            "payment:2",
            "ECS deployment ecs-svc/2 (PRIMARY) of service payment in cluster shop; task definition arn:aws:ecs:us-east-1:1:task-definition/payment:2",
        );
        let ctx = ContextBundle {
            deployments: vec![d.clone()],
            ..Default::default()
        };
        let p = plan(
            &alert(json!({})),
            &hyp("payment", "bad_deploy", Some(d)),
            &ctx,
        );
        assert_eq!(
            p.steps[0].action,
            Some(Action::EcsSetTaskDefinition {
                cluster: "shop".into(),
                service: "payment".into(),
                task_definition: "payment:1".into(),
                from: Some("payment:2".into()),
            })
        );
        assert_eq!(p.steps.len(), 1);
        assert!(p.reversible);
        all_valid(&p);
    }

    #[test]
    fn flag_change_is_toggled_off_in_the_alerts_environment() {
        let d = dep(
            "pricing-service",
            "flag:pricing.dynamic-discounts-v2@v37",
            "LaunchDarkly (production): rollout 5% -> 100%",
        );
        let h = hyp("pricing-service", "config_change", Some(d));
        let a = Alert::from_json(json!({"title": "t", "timestamp": "2024-03-12T14:07:30Z",
            "tags": "env:production,service:graphql-gateway"}))
        .unwrap();
        let p = plan(&a, &h, &ContextBundle::default());
        assert_eq!(
            cli(&p, 0),
            "runner feature_flag.set production/pricing.dynamic-discounts-v2 value=off"
        );
        assert_eq!(p.steps[0].risk_level, RiskLevel::Low);
        all_valid(&p);
    }

    #[test]
    fn leak_restart_has_no_rollback_and_needs_approval() {
        let p = plan(
            &alert(json!({})),
            &hyp("cart-service", "memory_leak", None),
            &ContextBundle::default(),
        );
        assert_eq!(
            cli(&p, 0),
            "runner kubernetes.rollout_restart default/deployment/cart-service"
        );
        assert!(!p.steps[0].has_rollback());
        assert!(!p.reversible && p.requires_human_approval);
        all_valid(&p);
    }

    #[test]
    fn scale_uses_the_known_replica_count_or_nothing() {
        let series = MetricSeries {
            service: "inventory-service".into(),
            name: "ready_replicas".into(),
            unit: String::new(),
            points: vec![(0, Some(4.0)), (60, Some(4.0))],
            baseline: vec![],
        };
        let ctx = ContextBundle {
            metrics: vec![series],
            ..Default::default()
        };
        let p = plan(
            &alert(json!({"namespace": "shop"})),
            &hyp("inventory-service", "retry_storm", None),
            &ctx,
        );
        assert_eq!(
            cli(&p, 0),
            "runner kubernetes.scale shop/deployment/inventory-service replicas=6"
        );
        assert!(
            p.steps[0].has_rollback(),
            "the runner restores the count it recorded"
        );
        all_valid(&p);
        let p = plan(
            &alert(json!({})),
            &hyp("inventory-service", "retry_storm", None),
            &ContextBundle::default(),
        );
        assert!(p.steps.is_empty());
        assert!(
            p.summary.contains("replica count is unknown"),
            "{}",
            p.summary
        );
    }

    #[test]
    fn dynamodb_goes_on_demand_and_is_restored_from_the_recorded_capacity() {
        let p = plan(
            &alert(json!({})),
            &hyp("orders-table", "dynamodb_throttling", None),
            &ContextBundle::default(),
        );
        assert_eq!(
            cli(&p, 0),
            "aws dynamodb update-table --table-name orders-table --billing-mode PAY_PER_REQUEST"
        );
        assert!(
            p.steps[0].has_rollback(),
            "no invented rollback: the live capacity is recorded"
        );
        all_valid(&p);
        let p = plan(
            &alert(json!({"env": "prod"})),
            &hyp("shipengine-api", "dependency_outage", None),
            &ContextBundle::default(),
        );
        assert_eq!(
            cli(&p, 0),
            "runner feature_flag.set prod/shipengine-api-failover value=on"
        );
        all_valid(&p);
    }

    #[test]
    fn unsafe_names_are_never_put_in_actions() {
        let h = hyp(
            "pay; rm -rf /",
            "bad_deploy",
            Some(dep("pay; rm -rf /", "v1", "")),
        );
        let p = plan(
            &alert(json!({"namespace": "shop"})),
            &h,
            &ContextBundle::default(),
        );
        assert!(p.steps.is_empty());
        assert!(p.summary.contains("not a plain identifier"));
        let h = hyp(
            "payment-service",
            "bad_deploy",
            Some(dep("payment-service", "v1", "")),
        );
        let p = plan(
            &alert(json!({"namespace": "shop $(id)"})),
            &h,
            &ContextBundle::default(),
        );
        assert!(p.steps.is_empty(), "{p:?}");
    }

    #[test]
    fn ecs_nodes_from_xray_names_restart_on_ecs() {
        let p = plan(
            &alert(json!({})),
            &hyp("PetSearch_AWS::ECS::Fargate", "memory_leak", None),
            &ContextBundle::default(),
        );
        assert_eq!(
            cli(&p, 0),
            "aws ecs update-service --cluster default --service PetSearch --force-new-deployment"
        );
        all_valid(&p);
    }
}
