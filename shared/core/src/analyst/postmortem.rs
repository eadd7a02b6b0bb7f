//! The post-mortem's prose, from recorded facts only. Timings and counts are the stage's: this
//! writes no number that is not in the facts.

use super::rca::fault_phrase;
use super::text::clean;
use super::triage::tag;
use crate::domain::*;
use crate::ports::{PostMortemFacts, PostMortemNarrative};

fn action_items_for(fault: &str, svc: &str) -> Vec<(String, &'static str)> {
    let v: Vec<(String, &'static str)> = match fault {
        "bad_deploy" => vec![
            (format!("Add a regression test for the failure {svc} shipped"), "high"),
            (format!("Gate {svc} rollouts on error rate (canary with automatic rollback)"), "high"),
        ],
        "config_change" => vec![
            ("Ramp feature flags in steps with an error-rate guard".to_string(), "high"),
            (format!("Cover the flagged code path of {svc} with tests for every input class"), "medium"),
        ],
        "memory_leak" => vec![
            (format!("Find and fix the unbounded growth in {svc} (heap profile)"), "high"),
            (format!("Alert on {svc} memory growth before the container limit"), "medium"),
        ],
        "connection_pool_exhaustion" => vec![
            (format!("Fix the code path in {svc} that does not return its connections"), "high"),
            ("Enable pool leak detection alerts and a pending-connections alarm".to_string(), "medium"),
        ],
        "certificate_expiry" => vec![
            ("Repair certificate renewal and alert on renewal failures".to_string(), "high"),
            ("Alert when a serving certificate has less than 14 days left".to_string(), "high"),
        ],
        "disk_full" => vec![
            (format!("Free space on {svc} and find what filled it"), "high"),
            ("Alert on disk usage trend, not only on a full disk".to_string(), "medium"),
        ],
        "dns_resolution_failure" => vec![
            ("Add node-local DNS caching and reduce search-domain expansion (ndots)".to_string(), "high"),
            ("Alert on resolver SERVFAIL ratio".to_string(), "medium"),
        ],
        "dependency_outage" => vec![
            (format!("Give calls to {svc} tight timeouts and an earlier circuit breaker"), "high"),
            (format!("Keep a tested fallback for when {svc} is down"), "medium"),
        ],
        "dynamodb_throttling" => vec![
            (format!("Review {svc}'s capacity mode and auto-scaling limits"), "high"),
            ("Alert on throttled requests before callers time out".to_string(), "medium"),
        ],
        "retry_storm" => vec![
            ("Add retry budgets and exponential backoff with jitter to every caller".to_string(), "high"),
            (format!("Give {svc} load shedding that protects its capacity"), "medium"),
        ],
        "noisy_neighbour" => vec![
            (format!("Set CPU and memory limits on {svc} and isolate it from latency-sensitive workloads"), "high"),
        ],
        "cache_eviction" => vec![
            (format!("Set TTLs on every key written to {svc} and size it for peak"), "high"),
            ("Alert on cache evictions and hit-ratio drops".to_string(), "medium"),
        ],
        _ => vec![(format!("Investigate {svc} further: the offline analysis found no clear fault"), "high")],
    };
    v
}

fn lessons_for(fault: &str) -> Vec<String> {
    let l: &[&str] = match fault {
        "bad_deploy" => {
            &["A deploy shortly before the onset was the cause: make rollback the first reflex."]
        }
        "config_change" => &["Flag changes are deployments: they need the same guard rails."],
        "memory_leak" => {
            &["A leak shipped well before the incident: deploy-to-failure time can be hours."]
        }
        "certificate_expiry" => {
            &["Certificate renewal failed silently for days before the expiry."]
        }
        "disk_full" => &["Disk filled gradually: the trend was visible long before the outage."],
        "dns_resolution_failure" => {
            &["Shared infrastructure (DNS) failed many unrelated services at once."]
        }
        "dependency_outage" => {
            &["A third-party slowdown spread through callers that waited too long."]
        }
        "retry_storm" => {
            &["Retries at several layers multiplied load and kept the system overloaded."]
        }
        "noisy_neighbour" => &["A workload without limits starved its neighbours on shared nodes."],
        "cache_eviction" => &["Cache growth without TTLs turned into database load at peak."],
        "connection_pool_exhaustion" => {
            &["A rare error path leaked pooled connections until the pool drained."]
        }
        "dynamodb_throttling" => {
            &["Capped provisioned capacity turned a traffic ramp into errors."]
        }
        _ => &[],
    };
    l.iter().map(|s| s.to_string()).collect()
}

pub fn postmortem(facts: &PostMortemFacts<'_>) -> PostMortemNarrative {
    let inc = facts.incident;
    let h = inc.hypothesis.as_ref().or_else(|| {
        facts
            .attempts
            .iter()
            .rev()
            .find_map(|a| a.hypothesis.as_ref())
    });
    let service = inc
        .service
        .clone()
        .unwrap_or_else(|| "an unnamed service".into());
    let severity = inc.severity.map(|s| s.as_str()).unwrap_or("untriaged");
    let outcome = match (inc.status, &inc.escalation) {
        (IncidentStatus::Resolved, _) => "resolved",
        (_, Some(_)) | (IncidentStatus::Escalated, _) => "escalated to on-call",
        _ => "still open",
    };

    let mut summary = format!(
        "{} ({severity}) on {}; {outcome}.",
        clean(&inc.title, 160),
        clean(&service, 60)
    );
    if let Some(h) = h {
        summary.push_str(&format!(
            " The offline analysis attributed it to {} in {} (confidence {:.2}).",
            fault_phrase(&h.fault),
            clean(&h.root_cause_service, 60),
            h.confidence
        ));
    }
    if let Some(t) = &inc.triage {
        summary.push_str(&format!(
            " Impact: {}.",
            clean(&t.estimated_user_impact, 160)
        ));
    }

    let root_cause = match h {
        Some(h) => {
            let mut s = clean(&h.primary_cause, 300);
            if !h.evidence.is_empty() {
                let ev: Vec<String> = h.evidence.iter().take(4).map(|e| clean(e, 160)).collect();
                s.push_str(&format!(". Evidence: {}.", ev.join("; ")));
            }
            if h.confidence < 0.7 {
                s.push_str(" The analysis was not confident; treat this as a lead to confirm.");
            }
            s
        }
        None => "Not determined: no root-cause hypothesis was recorded.".into(),
    };

    let mut resolution_parts: Vec<String> = Vec::new();
    for r in facts.steps {
        let cmd = clean(&r.command, 160);
        let line = match (r.phase, r.status) {
            (StepPhase::Apply, StepStatus::Succeeded) => format!("ran `{cmd}`"),
            (StepPhase::Apply, StepStatus::Failed) => format!("`{cmd}` failed"),
            (StepPhase::Apply, StepStatus::Started) => format!("`{cmd}` started, outcome unknown"),
            (StepPhase::Rollback, StepStatus::Succeeded) => format!("rolled back with `{cmd}`"),
            (StepPhase::Rollback, StepStatus::Failed) => format!("rollback `{cmd}` failed"),
            (StepPhase::Rollback, StepStatus::Started) => {
                format!("rollback `{cmd}` started, outcome unknown")
            }
        };
        resolution_parts.push(line);
    }
    let mut resolution = if resolution_parts.is_empty() {
        "No remediation command was run.".to_string()
    } else {
        format!("{}.", capitalise(&resolution_parts.join("; ")))
    };
    match inc.remediation {
        Some(RemediationOutcome::Applied) => {
            resolution.push_str(" The remediation plan was applied.")
        }
        Some(RemediationOutcome::RolledBack) => {
            resolution.push_str(" The remediation was rolled back.")
        }
        None => {}
    }
    if let Some(e) = &inc.escalation {
        resolution.push_str(&format!(
            " Escalated: {} ({}), paged via {}.",
            e.reason.describe(),
            clean(&e.detail, 200),
            clean(&e.paged_via, 40)
        ));
    }

    let owner = tag(&inc.alert, "team").unwrap_or_default();
    let (fault, rc_service) = h
        .map(|h| (h.fault.clone(), h.root_cause_service.clone()))
        .unwrap_or_else(|| ("unknown".into(), service.clone()));
    let mut action_items: Vec<ActionItem> = action_items_for(&fault, &clean(&rc_service, 60))
        .into_iter()
        .map(|(description, priority)| ActionItem {
            description,
            owner: clean(&owner, 60),
            priority: priority.into(),
        })
        .collect();
    if let Some(e) = &inc.escalation {
        if e.reason == EscalationReason::LowConfidence {
            action_items.push(ActionItem {
                description:
                    "Add the telemetry that was missing to pin the root cause automatically".into(),
                owner: clean(&owner, 60),
                priority: "medium".into(),
            });
        }
    }
    let mut lessons = lessons_for(&fault);
    if let Some(h) = h {
        if h.root_cause_service != service && inc.service.is_some() {
            lessons.push(format!(
                "The alert fired on {} but the cause sat in {}: symptoms travel to callers.",
                clean(&service, 60),
                clean(&h.root_cause_service, 60)
            ));
        }
    }
    PostMortemNarrative {
        summary,
        root_cause,
        resolution,
        action_items,
        lessons,
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
    use serde_json::json;

    #[test]
    fn narrative_uses_the_records_and_the_team_label() {
        let alert = Alert::from_json(json!({"title": "High error rate on payment-service",
            "timestamp": "2024-03-12T14:07:30Z", "service": "payment-service",
            "labels": {"team": "payments"}}))
        .unwrap();
        let now = alert.timestamp;
        let mut inc = Incident::open(IncidentId::generate(), alert, now);
        inc.status = IncidentStatus::Resolved;
        inc.severity = Some(Severity::P1);
        inc.remediation = Some(RemediationOutcome::Applied);
        inc.hypothesis = Some(RootCauseHypothesis {
            primary_cause: "A faulty deployment in payment-service".into(),
            root_cause_service: "payment-service".into(),
            fault: "bad_deploy".into(),
            candidates: vec![],
            contributing_factors: vec![],
            evidence: vec!["error_rate 0.45 vs baseline 0.002".into()],
            confidence: 0.9,
            alternatives: vec![],
            suspect_deployment: None,
            analyst: "offline".into(),
        });
        let steps = vec![StepRecord {
            phase: StepPhase::Apply,
            step: 0,
            command: "kubectl rollout undo deployment/payment-service -n shop".into(),
            rollback_command: String::new(),
            action: None,
            prior: None,
            after: None,
            status: StepStatus::Succeeded,
            executor: "dry-run".into(),
            started_at: now,
            ended_at: Some(now),
            output: String::new(),
        }];
        let n = postmortem(&PostMortemFacts {
            incident: &inc,
            steps: &steps,
            attempts: &[],
        });
        assert!(
            n.summary.contains("P1") && n.summary.contains("resolved"),
            "{}",
            n.summary
        );
        assert!(n.root_cause.contains("error_rate"));
        assert!(n
            .resolution
            .contains("kubectl rollout undo deployment/payment-service -n shop"));
        assert!(n.action_items.iter().all(|a| a.owner == "payments"));
        assert!(!n.lessons.is_empty());
    }

    #[test]
    fn escalation_without_hypothesis_says_so() {
        let alert =
            Alert::from_json(json!({"title": "t", "timestamp": "2024-03-12T14:07:30Z"})).unwrap();
        let now = alert.timestamp;
        let mut inc = Incident::open(IncidentId::generate(), alert, now);
        inc.status = IncidentStatus::Escalated;
        inc.escalation = Some(Escalation {
            reason: EscalationReason::LowConfidence,
            detail: "confidence 0.3 after 3 attempts".into(),
            escalated_at: now,
            paged_via: "console".into(),
        });
        let n = postmortem(&PostMortemFacts {
            incident: &inc,
            steps: &[],
            attempts: &[],
        });
        assert!(n.root_cause.starts_with("Not determined"));
        assert!(n.resolution.contains("No remediation") && n.resolution.contains("Escalated"));
        assert!(n
            .action_items
            .iter()
            .any(|a| a.description.contains("telemetry")));
    }
}
