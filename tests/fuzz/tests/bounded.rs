//! Every target on a bounded number of generated cases (`IRAS_FUZZ_CASES`, default 2,000 per
//! target): a panic anywhere fails the test with the shrunk input that caused it.

use iras_fuzz::*;
use proptest::prelude::*;

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
    fn approval_links_never_panic(id in ".{0,40}", expires in any::<i64>(), sig in ".{0,80}") {
        approval_link(&id, expires, &sig);
    }
}
