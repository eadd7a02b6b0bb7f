//! Phase 4, scoring: a service's own evidence, discounted by what explains it below, plus
//! what it explains above, its deployment and how early it moved. Deployments and being first
//! add weight only to services that show evidence themselves: a deploy alone proves nothing.

use std::collections::BTreeMap;

use chrono::Duration;

use super::features::{Features, CALLERS_WAIT};
use super::onset::{minutes, sample_step};
use super::ANOMALOUS;
use crate::domain::*;

pub(super) fn score(features: &mut BTreeMap<String, Features>, ctx: &ContextBundle, alerted: &str) {
    let resolution = sample_step(ctx)
        .map_or(Duration::zero(), |s| s - Duration::minutes(1))
        .max(Duration::zero());
    let earliest = features
        .values()
        .filter(|f| f.own + f.received >= ANOMALOUS)
        .filter_map(|f| f.onset)
        .min();
    for (s, f) in features.iter_mut() {
        let x = f.explained;
        let evidence = f.cause * (1.0 - 0.2 * x)
            + 0.6 * f.symptom * (1.0 - 0.8 * x)
            + 0.25 * f.traffic * (1.0 - 0.5 * x)
            + 0.3 * f.other
            + 0.9 * f.logs * (1.0 - 0.4 * x)
            + 0.9 * f.blamed * (1.0 - 0.5 * x)
            + f.contention
            + CALLERS_WAIT * f.callers_wait * (1.0 - 0.5 * x);
        let gate = ((f.own + f.received) / 0.8).min(1.0);
        // Within one sample of the first, a service is as early as the first.
        let onset_bonus = match (earliest, f.onset) {
            (Some(e), Some(o)) => (-(minutes(o - e - resolution).max(0.0)) / 5.0).exp(),
            _ => 0.0,
        };
        // Credit for explaining others goes to the deepest explanation, not to a service that
        // is itself explained by another.
        let explains = (0.1 * f.explains.len().min(3) as f64
            + 0.15 * f.coverage.min(4.0)
            + 0.3 * f.alert_explained)
            * (1.0 - x);
        f.score = (evidence + gate * (0.9 * f.deploy + 0.3 * onset_bonus + explains))
            * if f.disconnected { 0.6 } else { 1.0 }
            + if *s == alerted { 0.05 } else { 0.0 };
    }
}
