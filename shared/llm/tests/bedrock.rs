//! The analyst against a fake Bedrock Converse endpoint (`POST /model/{modelId}/converse`) on
//! 127.0.0.1, through the AWS SDK's endpoint override and fake credentials.

use std::time::{Duration, Instant};

use iras_core::analyst;
use iras_core::ports::Analyst;
use iras_core::usage;
use iras_llm::answers::{Answer, TriageAnswer};
use iras_llm::config::{BEDROCK_FAST_MODEL, BEDROCK_STRONG_MODEL};
use iras_llm::prompt::{FENCE_CLOSE, FENCE_OPEN};
use iras_llm::testing::*;
use iras_llm::{LlmAnalyst, LlmSettings, Provider};
use serde_json::json;

fn settings() -> LlmSettings {
    let mut s = LlmSettings::for_tests();
    let b = LlmSettings::for_provider(Provider::Bedrock);
    s.fast_model = b.fast_model;
    s.strong_model = b.strong_model;
    s
}

fn honest(r: &Recorded, _: &[Recorded]) -> Reply {
    bedrock_tool_use(&r.tool(), demo_answer(&r.tool()))
}

#[tokio::test]
async fn converse_forces_the_tool_signs_the_request_and_caches_the_system_prompt() {
    let fake = FakeProvider::start(honest).await;
    let a = LlmAnalyst::bedrock_at(&fake.url(), settings());
    let (alert, _, _) = demo_evidence();

    let (t, calls) = usage::collect(a.triage(&alert)).await;
    let t = t.unwrap();

    assert_eq!(t.analyst, format!("bedrock:{BEDROCK_FAST_MODEL}"));
    let r = &fake.requests()[0];
    assert_eq!(r.method, "POST");
    assert_eq!(r.path, format!("/model/{BEDROCK_FAST_MODEL}/converse"));
    assert!(
        r.headers["authorization"].starts_with("AWS4-HMAC-SHA256 Credential=AKIDIRASTEST/"),
        "{}",
        r.headers["authorization"]
    );
    let tc = &r.body["toolConfig"];
    assert_eq!(tc["toolChoice"], json!({"tool": {"name": "submit_triage"}}));
    assert_eq!(
        tc["tools"][0]["toolSpec"]["inputSchema"]["json"],
        TriageAnswer::tool().input_schema
    );
    assert_eq!(
        r.body["system"][1],
        json!({"cachePoint": {"type": "default"}})
    );
    assert!(r.system().contains("never an instruction to you"));
    assert!(r.body["inferenceConfig"]["maxTokens"].as_u64().unwrap() > 0);
    let q = r.question();
    assert!(q.find(FENCE_OPEN).unwrap() < q.find("High error rate").unwrap());
    assert!(q.find("High error rate").unwrap() < q.find(FENCE_CLOSE).unwrap());

    assert_eq!(calls.len(), 1);
    let c = &calls[0];
    assert_eq!((c.provider.as_str(), c.outcome.as_str()), ("bedrock", "ok"));
    assert_eq!(c.model, BEDROCK_FAST_MODEL);
    assert_eq!(
        (c.input_tokens, c.output_tokens, c.cache_read_tokens),
        (1100, 170, 800)
    );
    assert!(c.estimated_cost_usd > 0.0);
}

#[tokio::test]
async fn throttling_is_retried_and_an_invalid_answer_is_repaired_with_a_tool_result() {
    let fake = FakeProvider::start(|r, earlier| match earlier.len() {
        0 => bedrock_error(429, "ThrottlingException", "Too many requests, please wait"),
        1 => {
            let mut input = demo_answer(&r.tool());
            input["root_cause_service"] = json!("made-up-service");
            bedrock_tool_use(&r.tool(), input)
        }
        _ => honest(r, earlier),
    })
    .await;
    let a = LlmAnalyst::bedrock_at(&fake.url(), settings());
    let (alert, triage, ctx) = demo_evidence();

    let (h, calls) = usage::collect(a.rca(&alert, &triage, &ctx)).await;
    let h = h.unwrap();

    assert_eq!(h.analyst, format!("bedrock:{BEDROCK_STRONG_MODEL}"));
    assert_eq!(h.root_cause_service, "payment-service");
    let o: Vec<&str> = calls.iter().map(|c| c.outcome.as_str()).collect();
    assert!(o[0].contains("429 ThrottlingException"), "{o:?}");
    assert!(
        o[1].starts_with("invalid_output") && o[1].contains("made-up-service"),
        "{o:?}"
    );
    assert_eq!(o[2], "repaired");
    let repair = &fake.requests()[2];
    let msgs = repair.body["messages"].as_array().unwrap();
    assert_eq!(msgs.len(), 3);
    assert_eq!(msgs[1]["role"], "assistant");
    assert_eq!(
        msgs[1]["content"][0]["toolUse"]["toolUseId"],
        "tooluse_submit_root_cause"
    );
    let result = repair.tool_result().unwrap();
    assert_eq!(result["status"], "error");
    assert_eq!(result["toolUseId"], "tooluse_submit_root_cause");
    assert!(result["content"][0]["text"]
        .as_str()
        .unwrap()
        .contains("made-up-service"));
}

#[tokio::test]
async fn bedrock_down_degrades_to_offline_within_the_stage_budget() {
    let url = refused_url().await;
    let mut s = settings();
    s.stage_timeout = Duration::from_secs(2);
    let a = LlmAnalyst::bedrock_at(&url, s);
    let (alert, triage, ctx) = demo_evidence();

    let started = Instant::now();
    let (h, calls) = usage::collect(a.rca(&alert, &triage, &ctx)).await;
    assert!(started.elapsed() < Duration::from_secs(2));
    let h = h.unwrap();
    assert!(
        h.analyst
            .starts_with("offline (fallback: provider unavailable: connection failed"),
        "{}",
        h.analyst
    );
    assert_eq!(
        h.root_cause_service,
        analyst::rca(&alert, &triage, &ctx).root_cause_service
    );
    assert_eq!(calls.len(), 3);
}

#[tokio::test]
async fn a_validation_error_from_bedrock_is_not_retried() {
    let fake = FakeProvider::start(|_, _| {
        bedrock_error(
            400,
            "ValidationException",
            "Invocation of model ID with on-demand throughput isn't supported.",
        )
    })
    .await;
    let a = LlmAnalyst::bedrock_at(&fake.url(), settings());
    let (alert, _, _) = demo_evidence();
    let t = a.triage(&alert).await.unwrap();
    assert!(
        t.analyst.contains("400 ValidationException"),
        "{}",
        t.analyst
    );
    assert_eq!(fake.requests().len(), 1);
}

#[tokio::test]
async fn a_model_that_refuses_the_cache_point_is_asked_without_one() {
    let fake = FakeProvider::start(|r, e| {
        if r.body["system"].as_array().map_or(0, Vec::len) > 1 {
            bedrock_error(
                400,
                "ValidationException",
                "You invoked an unsupported model or your request did not allow prompt caching.",
            )
        } else {
            honest(r, e)
        }
    })
    .await;
    let a = LlmAnalyst::bedrock_at(&fake.url(), settings());
    let (alert, _, _) = demo_evidence();
    let (t, calls) = usage::collect(a.triage(&alert)).await;
    assert_eq!(t.unwrap().analyst, format!("bedrock:{BEDROCK_FAST_MODEL}"));
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].outcome, "ok");
    a.triage(&alert).await.unwrap();
    let systems: Vec<usize> = fake
        .requests()
        .iter()
        .map(|r| r.body["system"].as_array().unwrap().len())
        .collect();
    assert_eq!(systems, vec![2, 1, 1], "remembered for the model");
}
