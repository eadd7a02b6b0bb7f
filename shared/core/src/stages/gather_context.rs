//! GatherContext: pull logs, metrics, deployments and the service graph for one attempt.

use std::collections::{BTreeSet, VecDeque};
use std::future::Future;

use chrono::Duration;
use serde::{Deserialize, Serialize};

use super::{load, mutate, AttemptInput, Deps, StageError};
use crate::analyst;
use crate::domain::*;
use crate::ports::*;

/// Bounds that keep one attempt's record small whatever the backends return.
const MAX_LOG_LINES: usize = 2_000;
const MAX_LOG_MESSAGE_CHARS: usize = 2_000;
const MAX_SERIES: usize = 600;
const MAX_DEPLOYMENTS: usize = 200;

/// Attempt 1 reads `lookback` before the alert; each retry doubles it (and triples the
/// deployment lookback), so a cause that started earlier than we first looked can be found.
pub fn evidence_window(
    alert_time: Timestamp,
    attempt: u32,
    config: &crate::PipelineConfig,
) -> EvidenceWindow {
    let n = attempt.clamp(1, 8) - 1;
    let lookback = config.evidence_lookback_minutes * (1i64 << n);
    let deploy_hours = config.deployment_lookback_hours * 3i64.pow(n);
    EvidenceWindow {
        start: alert_time - Duration::minutes(lookback),
        end: alert_time + Duration::minutes(config.evidence_horizon_minutes),
        deployments_since: alert_time - Duration::hours(deploy_hours),
    }
}

/// The affected services and everything they call, transitively: causes sit downstream of
/// symptoms. Empty when the graph is unknown, meaning "ask the sources for everything".
pub fn services_to_investigate(affected: &[String], topology: &[ServiceEdge]) -> Vec<String> {
    if topology.is_empty() {
        return Vec::new();
    }
    let mut seen: BTreeSet<String> = affected.iter().cloned().collect();
    let mut queue: VecDeque<String> = affected.iter().cloned().collect();
    while let Some(s) = queue.pop_front() {
        for e in topology.iter().filter(|e| e.from == s) {
            if seen.insert(e.to.clone()) {
                queue.push_back(e.to.clone());
            }
        }
    }
    // Neighbours sharing a dependency with what we investigate (a batch job on the same
    // database) can starve it: the other callers of every service below the affected ones.
    let closure: Vec<String> = seen
        .iter()
        .filter(|s| !affected.contains(s))
        .cloned()
        .collect();
    for s in &closure {
        for e in topology.iter().filter(|e| &e.to == s) {
            seen.insert(e.from.clone());
        }
    }
    // An alert on a service missing from the graph says nothing about where to look.
    if !affected
        .iter()
        .any(|a| topology.iter().any(|e| &e.from == a || &e.to == a))
    {
        return Vec::new();
    }
    seen.into_iter().collect()
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GatherOutput {
    pub attempt: u32,
    pub failed_sources: Vec<String>,
    pub summary: String,
}

async fn bounded<T, F>(
    deps: &Deps,
    source: String,
    kind: &str,
    fut: F,
    failed: &mut Vec<FailedSource>,
) -> Option<T>
where
    F: Future<Output = Result<T, SourceError>>,
{
    let result = match tokio::time::timeout(deps.source_timeout, fut).await {
        Ok(r) => r,
        Err(_) => Err(SourceError::Timeout(deps.source_timeout.as_millis() as u64)),
    };
    match result {
        Ok(v) => Some(v),
        Err(e) => {
            tracing::warn!(%source, kind, error = %e, "evidence source failed; continuing without it");
            failed.push(FailedSource {
                source,
                kind: kind.to_string(),
                error: e.to_string(),
            });
            None
        }
    }
}

pub async fn gather_context(deps: &Deps, input: &AttemptInput) -> Result<GatherOutput, StageError> {
    let incident = load(deps, &input.incident_id).await?;
    let alert_time = incident.alert.timestamp;
    let window = evidence_window(alert_time, input.attempt, &deps.config);
    let mut failed = Vec::new();
    let mut answered = Vec::new();

    let mut topology = Vec::new();
    for src in &deps.evidence.topology {
        if let Some(edges) = bounded(
            deps,
            src.name(),
            "topology",
            src.topology(&incident.alert),
            &mut failed,
        )
        .await
        {
            answered.push(src.name());
            topology.extend(edges);
        }
    }
    topology.sort();
    topology.dedup();

    let affected = incident
        .triage
        .as_ref()
        .map(|t| t.affected_services.clone())
        .or_else(|| incident.service.clone().map(|s| vec![s]))
        .unwrap_or_default();
    let query = EvidenceQuery {
        services: services_to_investigate(&affected, &topology),
        window,
        alert: incident.alert.clone(),
        since_change: None,
    };

    // Every source at once; each bounded by its own timeout.
    let logs_f = async {
        let mut out = (Vec::new(), Vec::new(), Vec::new());
        for s in &deps.evidence.logs {
            if let Some(v) = bounded(deps, s.name(), "logs", s.logs(&query), &mut out.1).await {
                out.0.extend(v);
                out.2.push(s.name());
            }
        }
        out
    };
    let metrics_f = async {
        let mut out = (Vec::new(), Vec::new(), Vec::new());
        for s in &deps.evidence.metrics {
            if let Some(v) = bounded(deps, s.name(), "metrics", s.metrics(&query), &mut out.1).await
            {
                out.0.extend(v);
                out.2.push(s.name());
            }
        }
        out
    };
    let deploys_f = async {
        let mut out = (Vec::new(), Vec::new(), Vec::new());
        for s in &deps.evidence.deployments {
            if let Some(v) = bounded(
                deps,
                s.name(),
                "deployments",
                s.deployments(&query),
                &mut out.1,
            )
            .await
            {
                out.0.extend(v);
                out.2.push(s.name());
            }
        }
        out
    };
    let ((mut logs, f1, a1), (mut metrics, f2, a2), (mut deployments, f3, a3)) =
        tokio::join!(logs_f, metrics_f, deploys_f);
    // Shared infrastructure outside the call graph (DNS, nodes): asked for without a scope,
    // kept only for services the graph does not know.
    if !query.services.is_empty() {
        let in_graph = |s: &str| topology.iter().any(|e| e.from == s || e.to == s);
        let wide = EvidenceQuery {
            services: Vec::new(),
            ..query.clone()
        };
        // The scoped query above already reported each source's health; a second failure of
        // the same source would only repeat it.
        let mut failed = Vec::new();
        for src in &deps.evidence.metrics {
            if let Some(v) =
                bounded(deps, src.name(), "metrics", src.metrics(&wide), &mut failed).await
            {
                metrics.extend(v.into_iter().filter(|m| !in_graph(&m.service)));
            }
        }
        for src in &deps.evidence.logs {
            if let Some(v) = bounded(deps, src.name(), "logs", src.logs(&wide), &mut failed).await {
                logs.extend(v.into_iter().filter(|l| !in_graph(&l.service)));
            }
        }
    }
    for (f, a) in [(f1, a1), (f2, a2), (f3, a3)] {
        failed.extend(f);
        answered.extend(a);
    }

    let mut truncated = Vec::new();
    // Keep the lines that matter when there are too many: problems first, then the newest.
    if logs.len() > MAX_LOG_LINES {
        let dropped = logs.len() - MAX_LOG_LINES;
        logs.sort_by_key(|l| (!l.level.is_problem(), std::cmp::Reverse(l.timestamp)));
        logs.truncate(MAX_LOG_LINES);
        truncated.push(format!(
            "{dropped} log lines dropped (limit {MAX_LOG_LINES})"
        ));
    }
    logs.sort_by_key(|l| l.timestamp);
    let mut cut_messages = 0;
    for l in logs.iter_mut() {
        if l.message.chars().count() > MAX_LOG_MESSAGE_CHARS {
            l.message = l
                .message
                .chars()
                .take(MAX_LOG_MESSAGE_CHARS)
                .collect::<String>()
                + " …[truncated]";
            cut_messages += 1;
        }
    }
    if cut_messages > 0 {
        truncated.push(format!(
            "{cut_messages} long log messages cut to {MAX_LOG_MESSAGE_CHARS} characters"
        ));
    }
    if metrics.len() > MAX_SERIES {
        truncated.push(format!(
            "{} metric series dropped (limit {MAX_SERIES})",
            metrics.len() - MAX_SERIES
        ));
        metrics.truncate(MAX_SERIES);
    }
    deployments.sort_by_key(|d| d.timestamp);
    if deployments.len() > MAX_DEPLOYMENTS {
        let drop = deployments.len() - MAX_DEPLOYMENTS;
        deployments.drain(..drop);
        truncated.push(format!("{drop} older deployments dropped"));
    }

    let mut anomalies: Vec<MetricAnomaly> = metrics
        .iter()
        .filter_map(|m| analyst::metrics::anomaly(m, alert_time))
        .collect();
    anomalies.sort_by(|a, b| b.score.total_cmp(&a.score));

    let mut services: BTreeSet<String> = query.services.iter().cloned().collect();
    if services.is_empty() {
        services.extend(metrics.iter().map(|m| m.service.clone()));
        services.extend(logs.iter().map(|l| l.service.clone()));
        services.extend(affected.iter().cloned());
    }

    let context = ContextBundle {
        attempt: input.attempt,
        window: Some(window),
        services: services.into_iter().collect(),
        topology,
        logs,
        metrics,
        anomalies,
        deployments,
        failed_sources: failed,
        sources: answered,
        truncated,
    };
    let summary = format!(
        "{} log lines, {} series ({} anomalous), {} deployments{}",
        context.logs.len(),
        context.metrics.len(),
        context
            .anomalies
            .iter()
            .filter(|a| analyst::metrics::is_significant(a))
            .count(),
        context.deployments.len(),
        if context.failed_sources.is_empty() {
            String::new()
        } else {
            format!(
                "; failed: {}",
                context
                    .failed_sources
                    .iter()
                    .map(|f| f.source.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }
    );
    let failed_names: Vec<String> = context
        .failed_sources
        .iter()
        .map(|f| f.source.clone())
        .collect();
    deps.store
        .put_attempt(
            &input.incident_id,
            InvestigationAttempt {
                attempt: input.attempt,
                context,
                hypothesis: None,
                gathered_at: deps.clock.now(),
            },
        )
        .await?;
    let now = deps.clock.now();
    let n = input.attempt;
    let line = summary.clone();
    mutate(deps, &input.incident_id, |inc| {
        let key = format!("gather:{n}");
        if inc.has_event(&key) {
            return Ok(false);
        }
        inc.record(
            now,
            key,
            "gather_context",
            format!(
                "attempt {n}: evidence from {} to {}: {line}",
                window.start.format("%H:%M"),
                window.end.format("%H:%M")
            ),
        );
        Ok(true)
    })
    .await?;
    Ok(GatherOutput {
        attempt: n,
        failed_sources: failed_names,
        summary,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn edge(a: &str, b: &str) -> ServiceEdge {
        ServiceEdge {
            from: a.into(),
            to: b.into(),
        }
    }

    #[test]
    fn investigation_follows_calls_downstream() {
        let topo = vec![
            edge("gw", "checkout"),
            edge("checkout", "payment"),
            edge("payment", "db"),
            edge("gw", "catalog"),
        ];
        let s = services_to_investigate(&["checkout".into()], &topo);
        assert_eq!(s, vec!["checkout", "db", "payment"]);
        assert!(services_to_investigate(&["unknown".into()], &topo).is_empty());
        assert!(services_to_investigate(&["checkout".into()], &[]).is_empty());
    }

    #[test]
    fn retries_widen_the_window() {
        let c = crate::PipelineConfig::default();
        let t = chrono::Utc::now();
        let w1 = evidence_window(t, 1, &c);
        let w2 = evidence_window(t, 2, &c);
        assert!(w2.start < w1.start);
        assert!(w2.deployments_since < w1.deployments_since);
        assert_eq!(w1.end, w2.end);
        assert_eq!(t - w1.start, Duration::minutes(30));
        assert_eq!(t - w2.start, Duration::minutes(60));
    }
}
