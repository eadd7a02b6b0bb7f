//! The long run: `cargo run --release -p iras-fuzz --example fuzz -- [CASES]` (default
//! 1,000,000) runs every target on CASES generated inputs and prints cases, time and rate per
//! target. A panic stops the run with the input that caused it.

use std::time::Instant;

use iras_fuzz::*;
use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::{Config, TestRunner};

fn run<S, F>(name: &str, cases: u64, strategy: S, target: F)
where
    S: Strategy,
    F: Fn(&S::Value),
    S::Value: std::fmt::Debug,
{
    let mut runner = TestRunner::new(Config::default());
    let started = Instant::now();
    for i in 0..cases {
        let input = strategy
            .new_tree(&mut runner)
            .expect("the strategies always generate")
            .current();
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| target(&input)));
        if outcome.is_err() {
            eprintln!("{name}: case {i} panicked on {input:?}");
            std::process::exit(1);
        }
    }
    let took = started.elapsed().as_secs_f64();
    println!(
        "{name:<24} {cases:>10} cases  {took:>8.1} s  {:>9.0} cases/s  0 panics",
        cases as f64 / took.max(1e-9)
    );
}

fn main() {
    let cases: u64 = std::env::args()
        .nth(1)
        .map(|a| a.parse().expect("CASES is a whole number"))
        .unwrap_or(1_000_000);
    run("asl path", cases, (asl_text(), json_value()), |(t, v)| {
        asl_path(t, v)
    });
    run(
        "asl intrinsic",
        cases,
        (asl_text(), json_value()),
        |(t, v)| asl_intrinsic(t, v),
    );
    run(
        "asl template",
        cases,
        (json_value(), json_value()),
        |(t, v)| asl_template(t, v),
    );
    run("asl definition", cases, json_value(), |s| {
        asl_definition(&definition_shaped(s))
    });
    run(
        "approval link",
        cases,
        (".{0,40}", proptest::num::i64::ANY, ".{0,80}"),
        |(id, exp, sig)| approval_link(id, *exp, sig),
    );
}
