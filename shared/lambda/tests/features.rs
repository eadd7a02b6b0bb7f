//! Each function's crate links exactly what its handler calls: the features it enables on
//! `iras-lambda` are those of the ports it declares (`Function::ports`). One missing would fail
//! its cold start on AWS; one extra links an SDK or client it never uses.

mod support;

use std::collections::BTreeSet;

use iras_lambda::function::{feature, HTTP_FEATURE};
use iras_lambda::{Function, Port};
use support::*;

fn manifest(relative: &str) -> toml::Table {
    read(relative)
        .parse()
        .unwrap_or_else(|e| panic!("{relative}: {e}"))
}

/// The features `functions/<name>/Cargo.toml` enables on `iras-lambda`.
fn enabled_features(name: &str) -> BTreeSet<String> {
    let path = format!("functions/{name}/Cargo.toml");
    let m = manifest(&path);
    let dep = m["dependencies"]["iras-lambda"]
        .as_table()
        .unwrap_or_else(|| panic!("{path}: iras-lambda is not a table"));
    assert_eq!(
        dep.get("workspace").and_then(|w| w.as_bool()),
        Some(true),
        "{path}: iras-lambda comes from the workspace"
    );
    assert!(
        dep.get("default-features").is_none(),
        "{path}: the default features are every port's"
    );
    dep.get("features")
        .and_then(|f| f.as_array())
        .map(|f| {
            f.iter()
                .map(|x| x.as_str().expect("a feature name").to_string())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn each_function_enables_the_features_of_the_ports_it_calls_and_no_other() {
    let folders: BTreeSet<String> = std::fs::read_dir(repo().join("functions"))
        .expect("functions/")
        .flatten()
        .filter(|e| e.path().join("Cargo.toml").exists())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    let declared: BTreeSet<String> = Function::ALL.iter().map(|f| f.name().into()).collect();
    assert_eq!(folders, declared, "functions/ vs Function::ALL");

    let mut problems = vec![];
    for function in Function::ALL {
        let enabled = enabled_features(function.name());
        let needed: BTreeSet<String> = function.features().into_iter().map(String::from).collect();
        for f in needed.difference(&enabled) {
            let why = match f.as_str() {
                HTTP_FEATURE => "it serves the HTTP router".to_string(),
                f => {
                    let ports: Vec<&str> = function
                        .ports()
                        .iter()
                        .filter(|p| feature(**p) == Some(f))
                        .map(|p| p.name())
                        .collect();
                    format!("it calls the {} port", ports.join(", "))
                }
            };
            problems.push(format!("functions/{function} lacks `{f}`: {why}"));
        }
        for f in enabled.difference(&needed) {
            problems.push(format!(
                "functions/{function} enables `{f}`, which it never calls"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// With the workspace's default features every function would link every adapter.
#[test]
fn the_workspace_gives_the_functions_none_of_the_shared_crates_defaults() {
    let root = manifest("Cargo.toml");
    let deps = &root["workspace"]["dependencies"];
    for name in ["iras-lambda", "iras-aws", "iras-adapters"] {
        assert_eq!(
            deps[name].get("default-features").and_then(|d| d.as_bool()),
            Some(false),
            "[workspace.dependencies] {name}"
        );
    }
}

/// A port without a feature is in every build; one with a feature is named by exactly one.
#[test]
fn every_port_is_linked_by_one_feature_or_always() {
    let features: Vec<&str> = Port::ALL.iter().filter_map(|p| feature(*p)).collect();
    let distinct: BTreeSet<&str> = features.iter().copied().collect();
    assert_eq!(features.len(), distinct.len(), "{features:?}");
    let lib = manifest("shared/lambda/Cargo.toml");
    let table = lib["features"].as_table().expect("[features]");
    for f in distinct.iter().chain([&HTTP_FEATURE]) {
        assert!(
            table.contains_key(*f),
            "shared/lambda/Cargo.toml has no `{f}` feature"
        );
    }
}
