//! Remediation plans from a small catalogue of safe actions, each with its undo. Every command
//! is built from a fixed template whose shape the default remediation policy allows; names
//! taken from the evidence (services, namespaces, flags, tables) are used only when they are
//! plain identifiers, otherwise the step is left out and the summary says why.

use super::metrics;
use super::rca::fault_phrase;
use super::text::{clean, flag_key, is_flag_deployment, safe_name};
use super::triage::tag;
use crate::domain::*;

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
    if lower.contains("aws::dynamodb") || fault == "dynamodb_throttling" {
        return Shape::DynamoDb;
    }
    if lower.contains("aws::lambda") {
        return Shape::Lambda;
    }
    if lower.contains("aws::ecs") || lower.contains("fargate") {
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

fn step(
    description: String,
    command: String,
    rollback: String,
    risk: RiskLevel,
    seconds: u64,
) -> RemediationStep {
    RemediationStep {
        description,
        command,
        rollback_command: rollback,
        risk_level: risk,
        estimated_duration_seconds: seconds,
    }
}

pub fn plan(alert: &Alert, h: &RootCauseHypothesis, ctx: &ContextBundle) -> RemediationPlan {
    let svc = h.root_cause_service.as_str();
    let fault = h.fault.as_str();
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
            "the root-cause service name `{}` is not a plain identifier: no command can name it",
            clean(svc, 60)
        ));
    } else {
        let suspect = h.suspect_deployment.as_ref().filter(|d| d.service == svc);
        let flag = suspect.filter(|d| is_flag_deployment(d));
        let code_deploy = suspect.filter(|d| !is_flag_deployment(d));
        let rollback_fits = matches!(
            fault,
            "bad_deploy"
                | "memory_leak"
                | "noisy_neighbour"
                | "resource_exhaustion"
                | "connection_pool_exhaustion"
                | "crash"
                | "unknown"
        );
        let replicas = last_value(ctx, svc, &["ready", "replicas"])
            .or_else(|| last_value(ctx, svc, &["available", "replicas"]))
            .map(|v| v.round() as u64)
            .filter(|v| *v >= 1);
        let deploy_ref = format!("deployment/{name}");

        if let (Some(d), true) = (flag, fault == "config_change" || fault == "bad_deploy") {
            match (flag_key(d), env_ok) {
                (Some(key), true) => steps.push(step(
                    format!(
                        "Turn off flag {key}: its change ({}) preceded the errors",
                        clean(&d.description, 80)
                    ),
                    format!("ldcli flags toggle-off --flag {key} --environment {env}"),
                    format!("ldcli flags toggle-on --flag {key} --environment {env}"),
                    RiskLevel::Low,
                    30,
                )),
                (None, _) => notes
                    .push("the flag change names no usable flag key: turn it off by hand".into()),
                _ => {}
            }
        } else if let (Some(d), true) = (code_deploy, rollback_fits) {
            match shape {
                Shape::Kubernetes if k8s_ok => {
                    steps.push(step(
                        format!(
                            "Roll {name} back from {}: the deployment preceded the onset",
                            clean(&d.version, 40)
                        ),
                        format!("kubectl rollout undo {deploy_ref} -n {namespace}"),
                        // Undoing an undo returns to the newer revision.
                        format!("kubectl rollout undo {deploy_ref} -n {namespace}"),
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
                                format!("aws lambda update-alias --function-name {name} --name {alias} --function-version {prev}"),
                                format!("aws lambda update-alias --function-name {name} --name {alias} --function-version {}", d.version),
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
                Shape::Ecs => notes.push(format!(
                    "{name} runs on ECS and its previous task definition is unknown: roll it back by hand"
                )),
                _ => {}
            }
        } else {
            match fault {
                "dependency_outage" if env_ok => {
                    let flag = format!("{name}-failover");
                    if safe_name(&flag) {
                        steps.push(step(
                            format!("Fail over away from {name} (circuit-breaker / fallback flag)"),
                            format!("ldcli flags toggle-on --flag {flag} --environment {env}"),
                            format!("ldcli flags toggle-off --flag {flag} --environment {env}"),
                            RiskLevel::Medium,
                            30,
                        ));
                    }
                }
                "dynamodb_throttling" => {
                    let read = last_value(ctx, svc, &["provisioned", "read", "capacity"]);
                    let write = last_value(ctx, svc, &["provisioned", "write", "capacity"]);
                    let rollback = match (read, write) {
                        (Some(r), Some(w)) => format!(
                            "aws dynamodb update-table --table-name {name} --billing-mode PROVISIONED --provisioned-throughput ReadCapacityUnits={},WriteCapacityUnits={}",
                            r.round() as u64,
                            w.round() as u64
                        ),
                        _ => {
                            notes.push(format!(
                                "{name}'s provisioned read and write capacity are not both known: switching back to PROVISIONED is left to a human"
                            ));
                            String::new()
                        }
                    };
                    steps.push(step(
                        format!("Switch {name} to on-demand capacity so writes stop being throttled"),
                        format!("aws dynamodb update-table --table-name {name} --billing-mode PAY_PER_REQUEST"),
                        rollback,
                        RiskLevel::Medium,
                        60,
                    ));
                }
                "memory_leak" | "crash" => match shape {
                    Shape::Kubernetes if k8s_ok => steps.push(step(
                        format!("Restart {name}'s pods to release leaked memory (buys time; the leak stays)"),
                        format!("kubectl rollout restart {deploy_ref} -n {namespace}"),
                        String::new(),
                        RiskLevel::Medium,
                        180,
                    )),
                    Shape::Ecs => {
                        let cluster = tag(alert, "cluster").unwrap_or_else(|| "default".into());
                        if safe_name(&cluster) {
                            steps.push(step(
                                format!("Replace {name}'s tasks (cluster {cluster}) to release leaked memory"),
                                format!("aws ecs update-service --cluster {cluster} --service {name} --force-new-deployment"),
                                String::new(),
                                RiskLevel::Medium,
                                300,
                            ));
                        }
                    }
                    _ => {}
                },
                "connection_pool_exhaustion" | "retry_storm" | "resource_exhaustion"
                | "throttling" | "noisy_neighbour"
                    if k8s_ok =>
                {
                    match (replicas, fault) {
                        (_, "noisy_neighbour") => steps.push(step(
                            format!("Pause {name}, which starves its neighbours"),
                            format!("kubectl scale {deploy_ref} -n {namespace} --replicas=0"),
                            replicas
                                .map(|n| format!("kubectl scale {deploy_ref} -n {namespace} --replicas={n}"))
                                .unwrap_or_default(),
                            RiskLevel::Medium,
                            60,
                        )),
                        (Some(n), _) => {
                            let target = (n * 3).div_ceil(2).max(n + 1);
                            steps.push(step(
                                format!("Scale {name} from {n} to {target} replicas to absorb the load"),
                                format!("kubectl scale {deploy_ref} -n {namespace} --replicas={target}"),
                                format!("kubectl scale {deploy_ref} -n {namespace} --replicas={n}"),
                                RiskLevel::Medium,
                                90,
                            ));
                        }
                        (None, "connection_pool_exhaustion") => {
                            notes.push(format!("{name}'s replica count is unknown, so it is restarted rather than scaled"));
                            steps.push(step(
                                format!("Restart {name}'s pods to return leaked pool connections"),
                                format!("kubectl rollout restart {deploy_ref} -n {namespace}"),
                                String::new(),
                                RiskLevel::Medium,
                                180,
                            ));
                        }
                        (None, _) => notes.push(format!(
                            "{name}'s replica count is unknown: choose a scale-out target by hand"
                        )),
                    }
                }
                _ => {}
            }
        }
        // Watch the rollout settle after anything that changed the deployment.
        if k8s_ok
            && steps.iter().any(|s| {
                s.command.starts_with("kubectl rollout") || s.command.starts_with("kubectl scale")
            })
        {
            let status = format!("kubectl rollout status {deploy_ref} -n {namespace}");
            steps.push(step(
                format!("Verify that {name} is healthy again"),
                status.clone(),
                status,
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

    fn all_allowed(p: &RemediationPlan) {
        let policy = RemediationPolicy::default();
        for s in &p.steps {
            policy
                .check(&s.command)
                .unwrap_or_else(|e| panic!("{}: {e}", s.command));
            if s.has_rollback() {
                policy
                    .check(&s.rollback_command)
                    .unwrap_or_else(|e| panic!("{}: {e}", s.rollback_command));
            }
        }
    }

    #[test]
    fn bad_deploy_is_rolled_back_and_verified() {
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
            p.steps[0].command,
            "kubectl rollout undo deployment/payment-service -n shop"
        );
        assert_eq!(p.steps[0].rollback_command, p.steps[0].command);
        assert!(p.steps[1].command.starts_with("kubectl rollout status"));
        all_allowed(&p);
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
            p.steps[0].command,
            "ldcli flags toggle-off --flag pricing.dynamic-discounts-v2 --environment production"
        );
        assert_eq!(p.steps[0].risk_level, RiskLevel::Low);
        all_allowed(&p);
    }

    #[test]
    fn leak_restart_has_no_rollback_and_needs_approval() {
        let p = plan(
            &alert(json!({})),
            &hyp("cart-service", "memory_leak", None),
            &ContextBundle::default(),
        );
        assert_eq!(
            p.steps[0].command,
            "kubectl rollout restart deployment/cart-service -n default"
        );
        assert!(!p.steps[0].has_rollback());
        assert!(!p.reversible && p.requires_human_approval);
        all_allowed(&p);
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
            p.steps[0].command,
            "kubectl scale deployment/inventory-service -n shop --replicas=6"
        );
        assert_eq!(
            p.steps[0].rollback_command,
            "kubectl scale deployment/inventory-service -n shop --replicas=4"
        );
        all_allowed(&p);
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
    fn dynamodb_and_failover_use_their_catalogue_entries() {
        let p = plan(
            &alert(json!({})),
            &hyp("orders-table", "dynamodb_throttling", None),
            &ContextBundle::default(),
        );
        assert_eq!(
            p.steps[0].command,
            "aws dynamodb update-table --table-name orders-table --billing-mode PAY_PER_REQUEST"
        );
        assert!(
            !p.steps[0].has_rollback(),
            "capacity unknown: no invented rollback"
        );
        all_allowed(&p);
        let p = plan(
            &alert(json!({"env": "prod"})),
            &hyp("shipengine-api", "dependency_outage", None),
            &ContextBundle::default(),
        );
        assert_eq!(
            p.steps[0].command,
            "ldcli flags toggle-on --flag shipengine-api-failover --environment prod"
        );
        all_allowed(&p);
    }

    #[test]
    fn unsafe_names_are_never_put_in_commands() {
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
            p.steps[0].command,
            "aws ecs update-service --cluster default --service PetSearch --force-new-deployment"
        );
        all_allowed(&p);
    }
}
