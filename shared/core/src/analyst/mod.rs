//! The offline analyst: deterministic, explainable analysis with no model behind it. It reads
//! the evidence bundle as data (never as instructions), ranks root-cause candidates from
//! metrics, logs, deployments and the service graph, and proposes plans only from a small
//! catalogue of actions that the default remediation policy allows.

pub mod baro;
pub mod graph;
pub mod logs;
pub mod metrics;
pub mod plan;
pub mod postmortem;
pub mod rca;
pub mod symptoms;
pub mod text;
pub mod triage;

use async_trait::async_trait;

use crate::domain::*;
use crate::ports::{Analyst, AnalystError, PostMortemFacts, PostMortemNarrative};

pub use baro::BaroAnalyst;
pub use plan::plan;
pub use postmortem::postmortem;
pub use rca::{rca, Calibration};
pub use triage::triage;

/// The analyst that needs nothing but the evidence: no network, no model, same answer for the
/// same bundle. Its confidence goes through a calibration (the shipped one unless told
/// otherwise), so that it reads as the probability that the first candidate is right.
#[derive(Debug, Clone)]
pub struct OfflineAnalyst {
    calibration: Calibration,
}

impl Default for OfflineAnalyst {
    fn default() -> Self {
        OfflineAnalyst::new()
    }
}

impl OfflineAnalyst {
    /// With the shipped calibration.
    pub fn new() -> Self {
        OfflineAnalyst::with_calibration(Calibration::shipped().clone())
    }

    /// With the analysis' own confidence, uncalibrated: what a calibration is fitted on.
    pub fn uncalibrated() -> Self {
        OfflineAnalyst::with_calibration(Calibration::identity())
    }

    pub fn with_calibration(calibration: Calibration) -> Self {
        OfflineAnalyst { calibration }
    }
}

#[async_trait]
impl Analyst for OfflineAnalyst {
    fn name(&self) -> String {
        "offline".into()
    }

    async fn triage(&self, alert: &Alert) -> Result<TriageResult, AnalystError> {
        Ok(triage::triage(alert))
    }

    /// Never `Err(NoEvidence)`: an empty bundle gives a hypothesis naming the alerted service
    /// with confidence ≤ 0.2, so the pipeline's retry-then-escalate path runs.
    async fn rca(
        &self,
        alert: &Alert,
        triage: &TriageResult,
        context: &ContextBundle,
    ) -> Result<RootCauseHypothesis, AnalystError> {
        Ok(rca::rca_with(alert, triage, context, &self.calibration))
    }

    async fn plan(
        &self,
        alert: &Alert,
        hypothesis: &RootCauseHypothesis,
        context: &ContextBundle,
    ) -> Result<RemediationPlan, AnalystError> {
        Ok(plan::plan(alert, hypothesis, context))
    }

    async fn postmortem(
        &self,
        facts: &PostMortemFacts<'_>,
    ) -> Result<PostMortemNarrative, AnalystError> {
        Ok(postmortem::postmortem(facts))
    }
}
