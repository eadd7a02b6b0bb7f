//! One line per state as it happens, so a person can follow an incident through the pipeline.

use iras_core::format_duration;
use serde_json::Value;
use sfn_local::{RuntimeEvent, StateType};
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

/// The line for an event, or `None` for events a person need not see.
pub fn describe(event: &RuntimeEvent) -> Option<String> {
    match event {
        RuntimeEvent::StateExited {
            state,
            state_type,
            duration,
            task_result,
            error,
            next,
            ..
        } => {
            let took = if duration.as_millis() < 1000 {
                format!("{}ms", duration.as_millis())
            } else {
                format_duration(duration.as_secs() as i64)
            };
            let detail = match (state_type, error, task_result) {
                (_, Some(e), _) => format!("caught {}: {}", e.error, clip(&e.cause, 160)),
                (StateType::Task, None, Some(result)) => summary(result),
                (StateType::Choice, _, _) => format!("→ {}", next.as_deref().unwrap_or("end")),
                _ => String::new(),
            };
            let marker = match state_type {
                StateType::Task => "▸",
                StateType::Choice => "◇",
                _ => "·",
            };
            Some(format!("  {marker} {state:<20} {took:>7}  {detail}"))
        }
        RuntimeEvent::TaskFailed {
            state,
            error,
            cause,
            retry,
            ..
        } => Some(match retry {
            Some(r) => format!(
                "  ✗ {state:<20} failed ({error}: {}); retry {} in {:?}",
                clip(cause, 120),
                r.attempt,
                r.delay
            ),
            None => format!("  ✗ {state:<20} failed ({error}: {})", clip(cause, 160)),
        }),
        RuntimeEvent::TaskTokenIssued {
            state, deadline, ..
        } => Some(format!(
            "  ⏸ {state:<20} waiting for a human decision{}",
            deadline
                .map(|d| format!(" until {}", d.format("%H:%M:%S UTC")))
                .unwrap_or_default()
        )),
        _ => None,
    }
}

/// A stage's own one-line summary of what it found, from the Lambda-shaped result.
fn summary(result: &Value) -> String {
    let payload = result.get("Payload").unwrap_or(result);
    payload
        .get("summary")
        .and_then(Value::as_str)
        .map(|s| clip(s, 160))
        .unwrap_or_default()
}

fn clip(s: &str, max: usize) -> String {
    let one_line = s.replace('\n', " ");
    if one_line.chars().count() <= max {
        one_line
    } else {
        one_line.chars().take(max).collect::<String>() + "…"
    }
}

/// Prints every describable event on stderr until aborted.
pub fn spawn_printer(mut events: broadcast::Receiver<RuntimeEvent>) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            match events.recv().await {
                Ok(e) => {
                    if let Some(line) = describe(&e) {
                        eprintln!("{line}");
                    }
                }
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    eprintln!("  … {n} events skipped");
                }
                Err(broadcast::error::RecvError::Closed) => break,
            }
        }
    })
}
