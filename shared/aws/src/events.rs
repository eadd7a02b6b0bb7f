//! Lifecycle events out, on an EventBridge bus.

use async_trait::async_trait;
use aws_sdk_eventbridge::types::PutEventsRequestEntry;
use aws_sdk_eventbridge::Client;
use iras_core::ports::{EventPublisher, NotifyError};
use serde_json::Value;

use crate::describe;

/// Every event IRAS publishes has this `source`: rules match on it.
pub const EVENT_SOURCE: &str = "iras";

/// The `detail-type` of each lifecycle event.
pub mod detail_type {
    pub const INCIDENT_OPENED: &str = "IncidentOpened";
    pub const PLAN_AWAITING_APPROVAL: &str = "PlanAwaitingApproval";
    pub const INCIDENT_ESCALATED: &str = "IncidentEscalated";
    pub const REMEDIATION_APPLIED: &str = "RemediationApplied";
    pub const POST_MORTEM_PUBLISHED: &str = "PostMortemPublished";
}

#[derive(Clone)]
pub struct EventBridgePublisher {
    client: Client,
    bus_name: String,
}

impl EventBridgePublisher {
    pub fn new(client: Client, bus_name: impl Into<String>) -> Self {
        EventBridgePublisher {
            client,
            bus_name: bus_name.into(),
        }
    }
}

#[async_trait]
impl EventPublisher for EventBridgePublisher {
    async fn publish(&self, detail_type: &str, detail: Value) -> Result<(), NotifyError> {
        // EventBridge accepts only an object as detail; say so here rather than in a 400.
        if !detail.is_object() {
            return Err(NotifyError::Failed(format!(
                "{detail_type}: event detail must be a JSON object"
            )));
        }
        let entry = PutEventsRequestEntry::builder()
            .event_bus_name(&self.bus_name)
            .source(EVENT_SOURCE)
            .detail_type(detail_type)
            .detail(detail.to_string())
            .build();
        let out = self
            .client
            .put_events()
            .entries(entry)
            .send()
            .await
            .map_err(|e| NotifyError::Failed(describe(&e)))?;
        // PutEvents answers 200 even when an entry was refused: the count is the verdict.
        if out.failed_entry_count() > 0 {
            let why = out
                .entries()
                .iter()
                .filter_map(|e| {
                    e.error_code()
                        .map(|c| format!("{c}: {}", e.error_message().unwrap_or("")))
                })
                .collect::<Vec<_>>()
                .join("; ");
            return Err(NotifyError::Failed(format!(
                "{detail_type} refused by bus {}: {why}",
                self.bus_name
            )));
        }
        Ok(())
    }
}
