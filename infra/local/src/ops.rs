//! The operator CLI on the same data dir as `iras serve`: read incidents straight from the
//! store; decide through the running server, which alone drives the executions.

use std::path::Path;

use iras_core::audit::{AuditKey, Verification};
use iras_core::ports::{IncidentQuery, IncidentStore, StoreError};
use iras_core::*;
use serde_json::{json, Value};

use crate::serve::{API_KEY_FILE, AUDIT_KEY_FILE, SERVER_FILE};
use crate::store::SqliteStore;

fn open_store(data: &Path) -> Result<SqliteStore, String> {
    let db = crate::data_dir::DataFiles::in_dir(data).incidents;
    if !db.exists() {
        return Err(format!(
            "no IRAS store in {} (start `iras serve --data {}` first)",
            data.display(),
            data.display()
        ));
    }
    SqliteStore::open(&db).map_err(|e| e.to_string())
}

/// How many incidents `iras incidents` shows unless `--limit` says otherwise.
pub const DEFAULT_LIMIT: usize = 50;

pub async fn list(
    data: &Path,
    status: Option<&str>,
    limit: usize,
    json_out: bool,
) -> Result<(), String> {
    let status = match status {
        Some(s) => Some(IncidentStatus::parse(s).ok_or_else(|| {
            format!("unknown status `{s}` (processing, awaiting_approval, remediating, resolved, escalated)")
        })?),
        None => None,
    };
    let store = open_store(data)?;
    let incidents = newest(&store, status, limit.max(1)).await?;
    if json_out {
        let v: Vec<Value> = incidents.iter().map(|i| json!(i.redacted())).collect();
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        return Ok(());
    }
    if incidents.is_empty() {
        println!("no incidents");
        return Ok(());
    }
    print!("{}", table(&incidents));
    Ok(())
}

/// Up to `limit` incidents, newest first, across the store's pages.
async fn newest(
    store: &SqliteStore,
    status: Option<IncidentStatus>,
    limit: usize,
) -> Result<Vec<Incident>, String> {
    let mut out = Vec::new();
    let mut cursor = None;
    while out.len() < limit {
        let page = store
            .list_incidents(&IncidentQuery {
                status,
                limit: (limit - out.len()).min(200),
                cursor,
                ..Default::default()
            })
            .await
            .map_err(|e| e.to_string())?;
        out.extend(page.incidents);
        match page.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    out.truncate(limit);
    Ok(out)
}

/// One line per incident, columns as wide as their widest cell.
fn table(incidents: &[Incident]) -> String {
    let rows: Vec<[String; 5]> = incidents
        .iter()
        .map(|i| {
            [
                i.incident_id.to_string(),
                i.status.as_str().to_string(),
                i.severity.map(|s| s.as_str()).unwrap_or("-").to_string(),
                i.created_at.format("%Y-%m-%d %H:%M:%S").to_string(),
                // One line per incident, whatever the alert's title carries.
                i.title
                    .chars()
                    .map(|c| if c.is_control() { ' ' } else { c })
                    .collect(),
            ]
        })
        .collect();
    let head = ["INCIDENT", "STATUS", "SEV", "OPENED (UTC)", "TITLE"];
    let width = |col: usize| {
        rows.iter()
            .map(|r| r[col].chars().count())
            .chain([head[col].len()])
            .max()
            .unwrap_or(0)
    };
    let widths = [width(0), width(1), width(2), width(3)];
    let line = |cells: [&str; 5]| {
        format!(
            "{:<w0$}  {:<w1$}  {:<w2$}  {:<w3$}  {}\n",
            cells[0],
            cells[1],
            cells[2],
            cells[3],
            cells[4],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2],
            w3 = widths[3],
        )
    };
    let mut out = line(head);
    for r in &rows {
        out.push_str(&line([&r[0], &r[1], &r[2], &r[3], &r[4]]));
    }
    out
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
        format_time(inc.created_at)
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
            let shown = s.text();
            println!(
                "  {}. [{}] {}\n     run:      {}\n     change:   {}: {}\n     rollback: {}",
                i + 1,
                s.risk_level.as_str(),
                s.description,
                shown.cli,
                shown.resource,
                shown.change,
                if s.has_rollback() {
                    shown.rollback.as_str()
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
                format_time(d.decided_at)
            ),
            None => println!("approval: pending until {}", format_time(a.expires_at)),
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

/// The key `iras serve` signs audit entries with: `AUDIT_SIGNING_KEY`, else the data dir's.
fn audit_key(data: &Path) -> Option<AuditKey> {
    let env = std::env::var(iras_core::config::AUDIT_SIGNING_KEY).unwrap_or_default();
    let key = match env.trim() {
        "" => std::fs::read_to_string(data.join(AUDIT_KEY_FILE)).ok()?,
        k => k.to_string(),
    };
    AuditKey::new(key.trim().as_bytes())
}

/// `iras audit verify|show`: reads the incident's audit log from the store and checks it.
/// Exits non-zero, naming the entry, when it does not verify.
pub async fn audit(data: &Path, id: &str, show: bool, json_out: bool) -> Result<(), String> {
    let id = IncidentId::parse(id).ok_or_else(|| format!("`{id}` is not an incident id"))?;
    let store = open_store(data)?;
    let key = audit_key(data);
    let entries = match store.audit(&id).await {
        Ok(entries) => entries,
        Err(StoreError::Corrupt(e)) => {
            return Err(format!("the audit log of {id} does not verify: {e}"))
        }
        Err(e) => return Err(e.to_string()),
    };
    if entries.is_empty()
        && store
            .get_incident(&id)
            .await
            .map_err(|e| e.to_string())?
            .is_none()
    {
        return Err(format!("no incident {id} in {}", data.display()));
    }
    let v = Verification::of(&id, &entries, key.as_ref());
    if json_out {
        let doc = json!({"incident_id": id, "entries": entries, "verification": v});
        println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
    } else if show {
        for e in &entries {
            println!(
                "{:>4}  {}  {:<12}  {}: {}",
                e.seq,
                e.at.format("%Y-%m-%d %H:%M:%S"),
                e.event.kind(),
                e.actor,
                e.event.summary()
            );
        }
    }
    match &v.problem {
        Some(problem) => Err(format!(
            "the audit log of {id} does not verify at entry {}: {problem}",
            problem.seq
        )),
        None => {
            if !json_out {
                let signatures = if v.signatures_checked {
                    "signatures checked"
                } else {
                    "signatures not checked: no audit key (AUDIT_SIGNING_KEY or DATA/audit-key)"
                };
                println!("{id}: {} entries, chain intact, {signatures}", v.entries);
            }
            Ok(())
        }
    }
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
        Decision::Recovered => return Err("only the source can end a wait as recovered".into()),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn incident(title: &str, status: IncidentStatus) -> Incident {
        let alert =
            Alert::from_json(json!({"title": title, "timestamp": "2026-03-02T03:04:05Z"})).unwrap();
        let mut i = Incident::open(
            IncidentId::generate(),
            alert,
            "2026-03-02T03:04:05.123456789Z".parse().unwrap(),
        );
        i.status = status;
        i
    }

    #[test]
    fn the_incidents_table_lines_up_whatever_the_status_and_title() {
        let t = table(&[
            incident("db down", IncidentStatus::AwaitingApproval),
            incident("two\nlines", IncidentStatus::Resolved),
        ]);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 3, "{t}");
        let col = |l: &str, word: &str| l.find(word).unwrap();
        assert_eq!(col(lines[0], "STATUS"), col(lines[1], "awaiting_approval"));
        assert_eq!(
            col(lines[1], "awaiting_approval"),
            col(lines[2], "resolved")
        );
        assert_eq!(col(lines[0], "TITLE"), col(lines[2], "two lines"));
        assert!(
            lines[1].contains("2026-03-02 03:04:05  "),
            "times to the second: {t}"
        );
    }
}
