//! The operator CLI on the same data dir as `iras serve`: read incidents straight from the
//! store; decide through the running server, which alone drives the executions.

use std::path::Path;

use iras_core::ports::{IncidentQuery, IncidentStore};
use iras_core::*;
use serde_json::{json, Value};

use crate::serve::{API_KEY_FILE, SERVER_FILE};
use crate::store::SqliteStore;

fn open_store(data: &Path) -> Result<SqliteStore, String> {
    let db = data.join("iras.db");
    if !db.exists() {
        return Err(format!(
            "no IRAS store in {} (start `iras serve --data {}` first)",
            data.display(),
            data.display()
        ));
    }
    SqliteStore::open(&db).map_err(|e| e.to_string())
}

pub async fn list(data: &Path, status: Option<&str>, json_out: bool) -> Result<(), String> {
    let status = match status {
        Some(s) => Some(IncidentStatus::parse(s).ok_or_else(|| {
            format!("unknown status `{s}` (processing, awaiting_approval, remediating, resolved, escalated)")
        })?),
        None => None,
    };
    let store = open_store(data)?;
    let page = store
        .list_incidents(&IncidentQuery {
            status,
            limit: 200,
            ..Default::default()
        })
        .await
        .map_err(|e| e.to_string())?;
    if json_out {
        let v: Vec<Value> = page.incidents.iter().map(|i| json!(i.redacted())).collect();
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        return Ok(());
    }
    if page.incidents.is_empty() {
        println!("no incidents");
        return Ok(());
    }
    println!(
        "{:<38} {:<18} {:<4} {:<20} TITLE",
        "INCIDENT", "STATUS", "SEV", "OPENED (UTC)"
    );
    for i in &page.incidents {
        println!(
            "{:<38} {:<18} {:<4} {:<20} {}",
            i.incident_id,
            i.status.as_str(),
            i.severity.map(|s| s.as_str()).unwrap_or("-"),
            i.created_at.format("%Y-%m-%d %H:%M:%S"),
            i.title.replace(['\n', '\r'], " ")
        );
    }
    Ok(())
}

pub async fn show(data: &Path, id: &str, json_out: bool) -> Result<(), String> {
    let id = IncidentId::parse(id).ok_or_else(|| format!("`{id}` is not an incident id"))?;
    let store = open_store(data)?;
    let report = iras_core::report::incident_report(&store, &id)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("no incident {id} in {}", data.display()))?;
    if json_out {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).unwrap_or_default()
        );
        return Ok(());
    }
    let inc = store
        .get_incident(&id)
        .await
        .map_err(|e| e.to_string())?
        .ok_or("incident vanished")?;
    println!("{} — {}", inc.incident_id, inc.title);
    println!(
        "status {} · severity {} · opened {}",
        inc.status,
        inc.severity.map(|s| s.as_str()).unwrap_or("-"),
        inc.created_at.to_rfc3339()
    );
    if let Some(h) = &inc.hypothesis {
        println!(
            "root cause: {} (confidence {:.2})",
            h.primary_cause, h.confidence
        );
    }
    if let Some(p) = &inc.plan {
        println!("plan: {}", p.summary);
        for (i, s) in p.steps.iter().enumerate() {
            println!(
                "  {}. [{}] {}\n     run:      {}\n     rollback: {}",
                i + 1,
                s.risk_level.as_str(),
                s.description,
                s.command,
                if s.has_rollback() {
                    s.rollback_command.as_str()
                } else {
                    "(none: irreversible)"
                }
            );
        }
    }
    if let Some(a) = &inc.approval {
        match &a.decision {
            Some(d) => println!(
                "approval: {} by {} via {} at {}",
                d.decision.as_str(),
                d.approver,
                d.channel,
                d.decided_at.to_rfc3339()
            ),
            None => println!("approval: pending until {}", a.expires_at.to_rfc3339()),
        }
    }
    if let Some(e) = &inc.escalation {
        println!("escalated: {} — {}", e.reason.as_str(), e.detail);
    }
    println!("timeline:");
    for e in &inc.timeline {
        println!("  {} [{}] {}", e.at.format("%H:%M:%S"), e.stage, e.message);
    }
    Ok(())
}

/// Approves or rejects through the running server with the data dir's API key.
pub async fn decide(
    data: &Path,
    id: &str,
    decision: Decision,
    approver: Option<String>,
    comment: Option<String>,
) -> Result<(), String> {
    let id = IncidentId::parse(id).ok_or_else(|| format!("`{id}` is not an incident id"))?;
    let server: Value = std::fs::read_to_string(data.join(SERVER_FILE))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .ok_or_else(|| {
            format!(
                "no running `iras serve` recorded in {} (start it with `iras serve --data {}`)",
                data.display(),
                data.display()
            )
        })?;
    let url = server["url"].as_str().ok_or("server.json has no url")?;
    let key = match std::env::var("APPROVAL_API_KEY") {
        Ok(k) if !k.trim().is_empty() => k.split(',').next().unwrap_or_default().trim().to_string(),
        _ => std::fs::read_to_string(data.join(API_KEY_FILE))
            .map(|k| k.trim().to_string())
            .map_err(|_| "no API key: set APPROVAL_API_KEY".to_string())?,
    };
    let approver = approver.unwrap_or_else(|| {
        std::env::var("USER")
            .map(|u| format!("{u} (cli)"))
            .unwrap_or_else(|_| "cli".into())
    });
    let verb = match decision {
        Decision::Approved => "approve",
        Decision::Rejected => "reject",
    };
    let response = reqwest::Client::new()
        .post(format!("{url}/incidents/{id}/{verb}"))
        .bearer_auth(key)
        .json(&json!({"approver": approver, "comment": comment}))
        .send()
        .await
        .map_err(|e| format!("cannot reach iras serve at {url}: {e}"))?;
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    if status.is_success() {
        println!(
            "{} {} as {}",
            id,
            body["decision"].as_str().unwrap_or(verb),
            body["approver"].as_str().unwrap_or(&approver)
        );
        Ok(())
    } else {
        Err(format!(
            "{verb} refused ({}): {}",
            status.as_u16(),
            body["error"].as_str().unwrap_or("no detail")
        ))
    }
}
