use std::time::{Duration, Instant};

use iras_aws::{detail_type, emulator_config, EventBridgePublisher};
use iras_core::{EventPublisher, NotifyError};
use serde_json::{json, Value};

use crate::support::Moto;

const BUS: &str = "iras-events";

/// A bus with a rule sending IRAS escalations to a queue; returns the queue's URL.
async fn escalations_queue(moto: &Moto) -> String {
    let sqs = aws_sdk_sqs::Client::new(&moto.config);
    let queue_url = sqs
        .create_queue()
        .queue_name("on-call-escalations")
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    let queue_arn = sqs
        .get_queue_attributes()
        .queue_url(&queue_url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap()[&aws_sdk_sqs::types::QueueAttributeName::QueueArn]
        .clone();
    let eb = moto.eventbridge();
    eb.create_event_bus().name(BUS).send().await.unwrap();
    eb.put_rule()
        .name("escalations")
        .event_bus_name(BUS)
        .event_pattern(
            json!({"source": ["iras"], "detail-type": ["IncidentEscalated"]}).to_string(),
        )
        .send()
        .await
        .unwrap();
    eb.put_targets()
        .rule("escalations")
        .event_bus_name(BUS)
        .targets(
            aws_sdk_eventbridge::types::Target::builder()
                .id("queue")
                .arn(queue_arn)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    queue_url
}

async fn received(moto: &Moto, queue_url: &str) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let out = aws_sdk_sqs::Client::new(&moto.config)
            .receive_message()
            .queue_url(queue_url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await
            .unwrap();
        let bodies: Vec<Value> = out
            .messages()
            .iter()
            .map(|m| serde_json::from_str(m.body().unwrap()).unwrap())
            .collect();
        if !bodies.is_empty() || Instant::now() > deadline {
            return bodies;
        }
    }
}

#[tokio::test]
async fn an_escalation_reaches_the_on_call_queue_with_its_detail() {
    let Some(moto) = Moto::start().await else {
        return;
    };
    let queue = escalations_queue(&moto).await;
    let publisher = EventBridgePublisher::new(moto.eventbridge(), BUS);
    let detail = json!({
        "incident_id": "inc-0192",
        "severity": "P1",
        "reason": "approval_timeout",
        "title": "Checkout 5xx <b>é</b>",
    });
    // Not matched by the rule: must not reach the queue.
    publisher
        .publish(
            detail_type::POST_MORTEM_PUBLISHED,
            json!({"incident_id": "inc-0192"}),
        )
        .await
        .unwrap();
    publisher
        .publish(detail_type::INCIDENT_ESCALATED, detail.clone())
        .await
        .unwrap();
    let events = received(&moto, &queue).await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["source"], "iras");
    assert_eq!(events[0]["detail-type"], "IncidentEscalated");
    assert_eq!(events[0]["detail"], detail);
}

#[tokio::test]
async fn an_entry_the_bus_refuses_is_an_error() {
    let Some(moto) = Moto::start().await else {
        return;
    };
    escalations_queue(&moto).await;
    // An empty detail-type is refused per entry, in a 200 answer with FailedEntryCount = 1.
    let err = EventBridgePublisher::new(moto.eventbridge(), BUS)
        .publish("", json!({"incident_id": "inc-0192"}))
        .await
        .unwrap_err();
    let NotifyError::Failed(why) = err;
    assert!(why.contains("InvalidArgument"), "{why}");
}

#[tokio::test]
async fn a_detail_that_is_not_an_object_is_refused_before_sending() {
    // Nothing listens on port 9: the check must happen before any request.
    let config = emulator_config("http://127.0.0.1:9").await;
    let publisher = EventBridgePublisher::new(aws_sdk_eventbridge::Client::new(&config), BUS);
    let err = publisher
        .publish(detail_type::INCIDENT_OPENED, json!(["inc-0192"]))
        .await
        .unwrap_err();
    let NotifyError::Failed(why) = err;
    assert!(why.contains("must be a JSON object"), "{why}");
}
