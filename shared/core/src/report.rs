//! The whole record of an incident as a person (or `--json`, or `GET /incidents/{id}`) sees
//! it: incident, every investigation attempt, step results, post-mortem. Never the task token.

use serde_json::{json, Value};

use crate::domain::IncidentId;
use crate::ports::{IncidentStore, StoreError};

/// Anomalies shown per attempt; the rest stay in the store.
const TOP_ANOMALIES: usize = 8;

pub async fn incident_report(
    store: &dyn IncidentStore,
    id: &IncidentId,
) -> Result<Option<Value>, StoreError> {
    let Some(incident) = store.get_incident(id).await? else {
        return Ok(None);
    };
    let incident = incident.redacted();
    let attempts = store.attempts(id).await?;
    let steps = store.steps(id).await?;
    let postmortem = store.postmortem(id).await?;
    let mut v = serde_json::to_value(&incident).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let obj = v
        .as_object_mut()
        .expect("an incident serialises to an object");
    let rca: Vec<Value> = attempts
        .iter()
        .map(|a| {
            json!({
                "attempt": a.attempt,
                "gathered_at": a.gathered_at,
                "window": a.context.window,
                "evidence": {
                    "services": a.context.services,
                    "log_lines": a.context.logs.len(),
                    "problem_log_lines": a.context.logs.iter().filter(|l| l.level.is_problem()).count(),
                    "series": a.context.metrics.len(),
                    "top_anomalies": a.context.anomalies.iter().take(TOP_ANOMALIES).collect::<Vec<_>>(),
                    "deployments": a.context.deployments,
                    "sources": a.context.sources,
                    "failed_sources": a.context.failed_sources,
                    "truncated": a.context.truncated,
                },
                "hypothesis": a.hypothesis,
            })
        })
        .collect();
    obj.insert("rca".into(), Value::Array(rca));
    obj.insert("steps".into(), json!(steps));
    obj.insert("postmortem".into(), json!(postmortem));
    Ok(Some(v))
}
