//! Every target on a bounded number of generated cases (`IRAS_FUZZ_CASES`, default 2,000 per
//! target): a panic anywhere fails the test with the shrunk input that caused it.

use iras_fuzz::*;
use proptest::prelude::*;

/// One pair of routers for the whole run (building one per case would dominate the time).
fn webhooks() -> &'static Webhooks {
    static W: std::sync::OnceLock<Webhooks> = std::sync::OnceLock::new();
    W.get_or_init(Webhooks::new)
}

fn config() -> ProptestConfig {
    let cases = std::env::var("IRAS_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000);
    ProptestConfig {
        cases,
        // Failures are reported with their input; nothing is written next to the sources.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn asl_paths_never_panic(text in asl_text(), input in json_value()) {
        asl_path(&text, &input);
    }

    #[test]
    fn asl_intrinsics_never_panic(text in asl_text(), input in json_value()) {
        asl_intrinsic(&text, &input);
    }

    #[test]
    fn asl_templates_never_panic(template in json_value(), input in json_value()) {
        asl_template(&template, &input);
    }

    #[test]
    fn asl_definitions_never_panic(state in json_value(), text in ".{0,64}") {
        asl_definition(&definition_shaped(&state));
        asl_definition(&text);
    }

    #[test]
    fn alert_parsers_never_panic_on_mutated_vendor_payloads(body in vendor_shaped()) {
        alert_parsers(&body);
    }

    #[test]
    fn alert_parsers_never_panic_on_arbitrary_json(body in json_value()) {
        alert_parsers(&body);
    }

    #[test]
    fn webhook_routes_answer_every_body_without_a_5xx(
        route in 0..WEBHOOK_ROUTES.len(),
        body in prop_oneof![
            vendor_shaped().prop_map(|v| v.to_string().into_bytes()),
            prop::collection::vec(any::<u8>(), 0..256),
        ],
        headers in webhook_headers(),
    ) {
        let statuses = webhooks().post(WEBHOOK_ROUTES[route], &body, &headers);
        for status in statuses {
            // 5xx would say the sender should retry a body that can never succeed.
            prop_assert!(status < 500, "{} answered {status}", WEBHOOK_ROUTES[route]);
        }
    }

    #[test]
    fn approval_links_never_panic(id in ".{0,40}", expires in any::<i64>(), sig in ".{0,80}") {
        approval_link(&id, expires, &sig);
    }
}
