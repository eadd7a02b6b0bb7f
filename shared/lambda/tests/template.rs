//! template.yaml, statemachine.asl.json, functions/ and the router must describe the same
//! system: these checks fail the moment one of them drifts from the others.

mod support;

use std::collections::BTreeSet;

use iras_core::handler::Stage;
use iras_lambda::{Function, Port};
use serde_json::Value as Json;
use serde_norway::Value;
use support::*;

fn template() -> Value {
    serde_norway::from_str(&read("template.yaml")).expect("template.yaml is YAML")
}

fn resources(t: &Value) -> &serde_norway::Mapping {
    t["Resources"].as_mapping().expect("Resources")
}

/// `!GetAtt X.Arn` → "X.Arn".
fn get_att(v: &Value) -> Option<String> {
    match v {
        Value::Tagged(t) if t.tag == "GetAtt" => t.value.as_str().map(str::to_string),
        _ => None,
    }
}

/// Every `${...}` placeholder in the definition.
fn placeholders(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        let after = &rest[start + 2..];
        let end = after.find('}').expect("closed placeholder");
        out.insert(after[..end].to_string());
        rest = &after[end..];
    }
    out
}

/// (resource name, binary) of every function SAM builds with cargo-lambda.
fn cargo_lambda_functions(t: &Value) -> Vec<(String, String)> {
    resources(t)
        .iter()
        .filter(|(_, r)| r["Type"].as_str() == Some("AWS::Serverless::Function"))
        .filter(|(_, r)| r["Metadata"]["BuildMethod"].as_str() == Some("rust-cargolambda"))
        .map(|(name, r)| {
            (
                name.as_str().unwrap().to_string(),
                r["Metadata"]["BuildProperties"]["Binary"]
                    .as_str()
                    .expect("Binary")
                    .to_string(),
            )
        })
        .collect()
}

/// The `[[bin]] name` of each crate under functions/.
fn function_binaries() -> BTreeSet<String> {
    let dir = repo().join("functions");
    std::fs::read_dir(&dir)
        .expect("functions/")
        .flatten()
        .filter(|e| e.path().join("Cargo.toml").exists())
        .map(|e| {
            let manifest = std::fs::read_to_string(e.path().join("Cargo.toml")).unwrap();
            let bin = manifest
                .split("[[bin]]")
                .nth(1)
                .and_then(|b| b.lines().find(|l| l.trim_start().starts_with("name")))
                .and_then(|l| l.split('"').nth(1))
                .unwrap_or_else(|| panic!("{} has no [[bin]] name", e.path().display()));
            let folder = e.file_name().to_string_lossy().into_owned();
            assert_eq!(bin, folder, "the binary is named after its folder");
            bin.to_string()
        })
        .collect()
}

#[test]
fn every_function_arn_in_the_definition_is_substituted_with_its_own_function() {
    let t = template();
    let asl_text = read("statemachine.asl.json");
    let wanted = placeholders(&asl_text);
    assert!(!wanted.is_empty());
    let machine = &resources(&t)["IrasStateMachine"]["Properties"];
    assert_eq!(
        machine["Type"].as_str(),
        Some("STANDARD"),
        "waitForTaskToken needs STANDARD"
    );
    assert_eq!(
        machine["DefinitionUri"].as_str(),
        Some("statemachine.asl.json")
    );
    let subs = machine["DefinitionSubstitutions"]
        .as_mapping()
        .expect("DefinitionSubstitutions");
    let given: BTreeSet<String> = subs
        .keys()
        .map(|k| k.as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        given, wanted,
        "DefinitionSubstitutions vs the definition's placeholders"
    );
    for (key, value) in subs {
        let key = key.as_str().unwrap();
        let function = key.strip_suffix("Arn").expect("…FunctionArn");
        assert_eq!(get_att(value), Some(format!("{function}.Arn")), "{key}");
        assert_eq!(
            resources(&t)[function]["Type"].as_str(),
            Some("AWS::Serverless::Function"),
            "{key} names a function resource"
        );
    }
}

#[test]
fn every_stage_has_its_crate_its_binary_and_its_sam_resource_under_one_name() {
    let t = template();
    let built = cargo_lambda_functions(&t);
    let binaries = function_binaries();
    for stage in Stage::ALL {
        let resource = format!("{}Function", stage.state_name());
        let binary = stage.function_name();
        assert!(binaries.contains(binary), "functions/{binary} is missing");
        assert!(
            built.contains(&(resource.clone(), binary.to_string())),
            "{resource} must build binary {binary}: {built:?}"
        );
        assert!(
            read("statemachine.asl.json").contains(&format!("${{{}}}", stage.arn_placeholder())),
            "the definition calls {resource}"
        );
    }
}

#[test]
fn every_function_crate_is_built_by_sam_and_every_sam_function_has_a_crate() {
    let t = template();
    let from_template: BTreeSet<String> = cargo_lambda_functions(&t)
        .into_iter()
        .map(|(_, b)| b)
        .collect();
    assert_eq!(from_template, function_binaries());
    let every: Vec<&Value> = resources(&t)
        .values()
        .filter(|r| r["Type"].as_str() == Some("AWS::Serverless::Function"))
        .collect();
    assert_eq!(
        every.len(),
        from_template.len(),
        "every function is a cargo-lambda one"
    );
}

/// Each function is built in its own folder (`CodeUri`): from there cargo enables that crate's
/// features only, where from the workspace root it would enable every function's in each.
#[test]
fn every_function_runs_the_same_small_arm64_bootstrap_built_from_its_own_crate() {
    let t = template();
    let g = &t["Globals"]["Function"];
    assert_eq!(g["Runtime"].as_str(), Some("provided.al2023"));
    assert_eq!(g["Handler"].as_str(), Some("bootstrap"));
    assert!(
        g.get("CodeUri").is_none(),
        "one CodeUri for all builds every feature into each"
    );
    assert_eq!(g["MemorySize"].as_u64(), Some(128));
    assert_eq!(g["Architectures"][0].as_str(), Some("arm64"));
    for (name, binary) in cargo_lambda_functions(&t) {
        let r = &resources(&t)[name.as_str()];
        assert_eq!(
            r["Properties"]["CodeUri"].as_str(),
            Some(format!("functions/{binary}").as_str()),
            "{name}"
        );
        for key in ["Runtime", "Handler", "MemorySize", "Architectures"] {
            assert!(r["Properties"].get(key).is_none(), "{name} overrides {key}");
        }
    }
}

/// A Lambda must give up before its task's `TimeoutSeconds`, so the failure is its own error
/// (retried by name) rather than `States.Timeout`.
#[test]
fn each_stage_function_times_out_before_its_task_does() {
    let t = template();
    let asl = asl();
    for stage in Stage::ALL {
        let task = asl["States"][stage.state_name()]["TimeoutSeconds"].as_u64();
        let Some(task) = task else { continue }; // the approval wait has TimeoutSecondsPath
        let resource = format!("{}Function", stage.state_name());
        let lambda = resources(&t)[resource.as_str()]["Properties"]["Timeout"]
            .as_u64()
            .unwrap_or_else(|| panic!("{resource} has no Timeout"));
        assert!(
            lambda < task,
            "{resource}: Lambda {lambda}s vs task {task}s"
        );
    }
}

/// No secret value is ever a template parameter: only the names of SSM parameters are.
#[test]
fn secrets_reach_functions_only_as_parameter_names() {
    let t = template();
    for (name, p) in t["Parameters"].as_mapping().unwrap() {
        let name = name.as_str().unwrap();
        let lower = name.to_lowercase();
        if ["secret", "key", "token", "password"]
            .iter()
            .any(|w| lower.contains(w))
        {
            assert!(
                name.ends_with("ParameterName"),
                "{name} looks like a secret value"
            );
        }
        assert!(
            p.get("NoEcho").is_none(),
            "{name}: secrets are not parameters"
        );
    }
    for (name, r) in resources(&t) {
        let vars = &r["Properties"]["Environment"]["Variables"];
        for secret in iras_lambda::secrets::ALL {
            assert!(
                vars.get(secret).is_none(),
                "{} gets {secret} as a value; use {secret}_PARAM",
                name.as_str().unwrap()
            );
        }
    }
}

/// An HTTP API route the router does not serve answers with the router's catch-all 404.
#[tokio::test]
async fn every_http_route_in_the_template_is_served_by_the_router() {
    // Routes the template already sends to approval-callback but the router does not yet serve.
    const AWAITING_ROUTER: [&str; 1] = ["POST /slack/interactions"];
    let t = template();
    let w = world();
    let health = sample("api-health", SAMPLE_ID);
    let mut checked = 0;
    for (name, r) in resources(&t) {
        let Some(events) = r["Properties"]["Events"].as_mapping() else {
            continue;
        };
        for (_, e) in events {
            if e["Type"].as_str() != Some("HttpApi") {
                continue;
            }
            let method = e["Properties"]["Method"].as_str().unwrap();
            let path = e["Properties"]["Path"].as_str().unwrap();
            let route = format!("{method} {path}");
            if AWAITING_ROUTER.contains(&route.as_str()) {
                continue;
            }
            let concrete = path
                .replace("{id}", SAMPLE_ID)
                .replace("{approval_id}", "appr-0000")
                .replace("{source}", "alertmanager");
            let mut event = health.clone();
            event["routeKey"] = Json::String(route.clone());
            event["rawPath"] = Json::String(concrete.clone());
            event["requestContext"]["routeKey"] = Json::String(route.clone());
            event["requestContext"]["http"]["method"] = Json::String(method.to_string());
            event["requestContext"]["http"]["path"] = Json::String(concrete);
            let function = r["Metadata"]["BuildProperties"]["Binary"]
                .as_str()
                .and_then(Function::from_name)
                .expect("an HTTP function of Function::ALL");
            let (status, body) = w.http(function, &event.to_string()).await;
            let catch_all = status == 404 && body.contains("There is no such resource.");
            assert!(
                !catch_all && status != 405,
                "{route} (on {}) is not a route of the router: {status} {body}",
                name.as_str().unwrap()
            );
            checked += 1;
        }
    }
    assert!(checked >= 9, "only {checked} routes found");
}

/// Every string in `v`, through tags (`!Sub`, `!If`) and lists.
fn strings(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => out.push(s.clone()),
        Value::Sequence(items) => items.iter().for_each(|i| strings(i, out)),
        Value::Mapping(m) => m.values().for_each(|i| strings(i, out)),
        Value::Tagged(t) => strings(&t.value, out),
        _ => {}
    }
}

/// The `...ParameterName` template parameters that `v` refers to.
fn parameter_names(v: &Value) -> BTreeSet<String> {
    let mut texts = vec![];
    strings(v, &mut texts);
    texts
        .iter()
        .flat_map(|t| placeholders(t))
        .filter(|p| p.ends_with("ParameterName"))
        .collect()
}

/// The policy statements in `v` (a function's `Policies`, with `!If` around some).
fn statements<'a>(v: &'a Value, out: &mut Vec<&'a Value>) {
    match v {
        Value::Sequence(items) => items.iter().for_each(|i| statements(i, out)),
        Value::Tagged(t) => statements(&t.value, out),
        Value::Mapping(m) => {
            if m.contains_key("Effect") {
                out.push(v);
            } else {
                m.values().for_each(|i| statements(i, out));
            }
        }
        _ => {}
    }
}

/// Least privilege for secrets: a function may read exactly the SSM parameters its
/// environment names. One it names but may not read fails its cold start on AWS; one it may
/// read but does not name is access it does not need.
#[test]
fn each_function_reads_exactly_the_secrets_its_environment_names() {
    let t = template();
    let mut checked = 0;
    for (name, r) in resources(&t) {
        let name = name.as_str().unwrap();
        if r["Type"].as_str() != Some("AWS::Serverless::Function") {
            continue;
        }
        let named: BTreeSet<String> = r["Properties"]["Environment"]["Variables"]
            .as_mapping()
            .map(|vars| {
                vars.iter()
                    .filter(|(k, _)| k.as_str().is_some_and(|k| k.ends_with("_PARAM")))
                    .flat_map(|(_, v)| parameter_names(v))
                    .collect()
            })
            .unwrap_or_default();
        let mut found = vec![];
        statements(&r["Properties"]["Policies"], &mut found);
        let readable: BTreeSet<String> = found
            .iter()
            .filter(|s| {
                let mut actions = vec![];
                strings(&s["Action"], &mut actions);
                actions.iter().any(|a| a.starts_with("ssm:"))
            })
            .flat_map(|s| parameter_names(&s["Resource"]))
            .collect();
        assert_eq!(named, readable, "{name}: parameters named vs readable");
        checked += named.len();
    }
    assert!(
        checked >= 10,
        "the template's secrets were found ({checked})"
    );
}

/// What a function links is what its role and environment let it use: the ports it calls
/// (`Function::ports`, its features) against the template's policies and variables. A port
/// without the permission fails on AWS; a permission without the port is access it never uses.
#[test]
fn each_function_is_allowed_exactly_what_its_ports_need() {
    let t = template();
    let mut checked = 0;
    for (name, binary) in cargo_lambda_functions(&t) {
        let function = Function::from_name(&binary).expect("a function of Function::ALL");
        let r = &resources(&t)[name.as_str()];
        let mut found = vec![];
        statements(&r["Properties"]["Policies"], &mut found);
        let mut actions = vec![];
        for s in &found {
            strings(&s["Action"], &mut actions);
        }
        let policies: Vec<String> = r["Properties"]["Policies"]
            .as_sequence()
            .map(|ps| {
                ps.iter()
                    .filter_map(|p| p.as_mapping())
                    .flat_map(|m| m.keys().filter_map(|k| k.as_str().map(String::from)))
                    .collect()
            })
            .unwrap_or_default();
        let variables = &r["Properties"]["Environment"]["Variables"];
        let sets = |var: &str| variables.get(var).is_some();
        let uses = [
            (
                Port::Events,
                policies.contains(&"EventBridgePutEventsPolicy".into()),
            ),
            (
                Port::Starter,
                policies.contains(&"StepFunctionsExecutionPolicy".into()),
            ),
            (
                Port::Callbacks,
                actions.contains(&"states:SendTaskSuccess".into()),
            ),
            (
                Port::Analyst,
                actions.contains(&"bedrock:InvokeModel".into()) && sets("LLM_PROVIDER"),
            ),
            (Port::Notifier, sets("SLACK_BOT_TOKEN_PARAM")),
            (Port::Pager, sets("PAGERDUTY_INTEGRATION_KEY_PARAM")),
            (
                Port::Evidence,
                sets("PROMETHEUS_BASE_URL") && sets("CLOUDWATCH_LOG_GROUPS"),
            ),
        ];
        for (port, allowed) in uses {
            assert_eq!(
                allowed,
                function.calls(port),
                "{name}: may use the {port} port ({allowed}) vs calls it ({})",
                function.calls(port)
            );
        }
        assert!(
            policies.contains(&"DynamoDBCrudPolicy".into()),
            "{name}: the store"
        );
        checked += 1;
    }
    assert_eq!(checked, Function::ALL.len());
}

/// API Gateway's IAM authorizer guards every route but those that carry their own signature
/// (the webhooks, the signed approval pages, Slack's buttons) and health: what reads
/// incidents or decides by API never reaches a function unsigned.
#[test]
fn only_self_signed_routes_and_health_are_reachable_without_the_iam_authorizer() {
    const OPEN: [&str; 6] = [
        "POST /webhook/alert",
        "POST /webhook/{source}",
        "GET /health",
        "GET /approvals/{approval_id}",
        "POST /approvals/{approval_id}",
        "POST /slack/interactions",
    ];
    let t = template();
    let api = &resources(&t)["HttpApi"]["Properties"]["Auth"];
    assert_eq!(api["DefaultAuthorizer"].as_str(), Some("AWS_IAM"));
    assert_eq!(api["EnableIamAuthorizer"].as_bool(), Some(true));
    let mut open = BTreeSet::new();
    let mut guarded = BTreeSet::new();
    for (_, r) in resources(&t) {
        let Some(events) = r["Properties"]["Events"].as_mapping() else {
            continue;
        };
        for (_, e) in events {
            if e["Type"].as_str() != Some("HttpApi") {
                continue;
            }
            let p = &e["Properties"];
            let route = format!(
                "{} {}",
                p["Method"].as_str().unwrap(),
                p["Path"].as_str().unwrap()
            );
            if p["Auth"]["Authorizer"].as_str() == Some("NONE") {
                open.insert(route);
            } else {
                assert!(
                    p["Auth"].is_null(),
                    "{route}: the default authorizer, nothing else"
                );
                guarded.insert(route);
            }
        }
    }
    assert_eq!(open, OPEN.iter().map(|r| r.to_string()).collect());
    for r in [
        "GET /incidents",
        "GET /incidents/{id}",
        "POST /incidents/{id}/approve",
    ] {
        assert!(guarded.contains(r), "{r} is not behind the IAM authorizer");
    }
    // The functions behind it take the caller API Gateway names.
    for f in ["ApiFunction", "ApprovalCallbackFunction"] {
        assert_eq!(
            resources(&t)[f]["Properties"]["Environment"]["Variables"]["API_AUTH"].as_str(),
            Some("iam"),
            "{f}"
        );
    }
}
