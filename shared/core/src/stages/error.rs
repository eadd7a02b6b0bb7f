//! Stage errors. A variant's name is the error name Lambda reports (`errorType`) and the
//! state machine's `Retry`/`Catch` match, so the ASL and the code share one vocabulary; a
//! test keeps every Task state's no-retry list equal to [`StageErrorKind::non_retryable`].

use std::fmt;

use strum::IntoEnumIterator;

use crate::ports::{AnalystError, StoreError};

/// A stage failure that survives to the state machine.
#[derive(Debug, Clone, PartialEq, strum::EnumDiscriminants)]
#[strum_discriminants(name(StageErrorKind))]
#[strum_discriminants(derive(Hash, strum::EnumIter, strum::IntoStaticStr))]
pub enum StageError {
    /// The stage's input is malformed, or arrives out of order (an rca before triage).
    InvalidInput(String),
    /// No incident has this id (the payload names the id).
    IncidentNotFound(String),
    /// The attempt's evidence was never gathered.
    ContextMissing(String),
    /// The plan needs a human's approval and has none.
    ApprovalMissing(String),
    /// The plan has commands outside the remediation policy.
    PolicyViolation(String),
    /// The plan has no step IRAS can apply.
    NothingToApply(String),
    /// The stored plan is not the one that was approved.
    PlanChanged(String),
    /// A stored record cannot be read back.
    StoreCorrupt(String),
    /// An approval was requested again for a plan already decided.
    ApprovalAlreadyDecided(String),
    /// Someone else kept writing the record; a retry re-reads it.
    StoreConflict(String),
    StoreUnavailable(String),
    AnalystFailed(String),
    PagerFailed(String),
    /// A stage's output could not be encoded.
    Internal(String),
}

impl StageErrorKind {
    /// The error name in `statemachine.asl.json`.
    pub fn name(self) -> &'static str {
        self.into()
    }

    /// False for errors that a retry cannot mend: the same input fails the same way.
    pub fn retryable(self) -> bool {
        match self {
            StageErrorKind::InvalidInput
            | StageErrorKind::IncidentNotFound
            | StageErrorKind::ContextMissing
            | StageErrorKind::ApprovalMissing
            | StageErrorKind::PolicyViolation
            | StageErrorKind::NothingToApply
            | StageErrorKind::PlanChanged
            | StageErrorKind::StoreCorrupt
            | StageErrorKind::ApprovalAlreadyDecided => false,
            StageErrorKind::StoreConflict
            | StageErrorKind::StoreUnavailable
            | StageErrorKind::AnalystFailed
            | StageErrorKind::PagerFailed
            | StageErrorKind::Internal => true,
        }
    }

    /// Every error name, in declaration order.
    pub fn all() -> impl Iterator<Item = StageErrorKind> {
        StageErrorKind::iter()
    }

    /// The names each Task state lists in its `"MaxAttempts": 0` retrier.
    pub fn non_retryable() -> Vec<&'static str> {
        StageErrorKind::iter()
            .filter(|k| !k.retryable())
            .map(StageErrorKind::name)
            .collect()
    }
}

impl StageError {
    pub fn kind(&self) -> StageErrorKind {
        self.into()
    }

    /// The error name Lambda reports and the state machine matches.
    pub fn name(&self) -> &'static str {
        self.kind().name()
    }

    pub fn retryable(&self) -> bool {
        self.kind().retryable()
    }

    /// What went wrong, for a person (Lambda's `errorMessage`).
    pub fn message(&self) -> String {
        match self {
            StageError::IncidentNotFound(id) => format!("incident {id} not found"),
            StageError::InvalidInput(m)
            | StageError::ContextMissing(m)
            | StageError::ApprovalMissing(m)
            | StageError::PolicyViolation(m)
            | StageError::NothingToApply(m)
            | StageError::PlanChanged(m)
            | StageError::StoreCorrupt(m)
            | StageError::ApprovalAlreadyDecided(m)
            | StageError::StoreConflict(m)
            | StageError::StoreUnavailable(m)
            | StageError::AnalystFailed(m)
            | StageError::PagerFailed(m)
            | StageError::Internal(m) => m.clone(),
        }
    }
}

impl fmt::Display for StageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.name(), self.message())
    }
}

impl std::error::Error for StageError {}

impl From<StoreError> for StageError {
    fn from(e: StoreError) -> Self {
        let message = e.to_string();
        match e {
            StoreError::NotFound(id) => StageError::IncidentNotFound(id),
            // Neither can be fixed by trying again: the record is as it is.
            StoreError::Corrupt(_) | StoreError::TooLarge { .. } => {
                StageError::StoreCorrupt(message)
            }
            StoreError::Conflict(_) | StoreError::AlreadyExists(_) | StoreError::Duplicate(_) => {
                StageError::StoreConflict(message)
            }
            StoreError::Unavailable(_) => StageError::StoreUnavailable(message),
        }
    }
}

impl From<AnalystError> for StageError {
    fn from(e: AnalystError) -> Self {
        StageError::AnalystFailed(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_name_is_the_variant_and_the_message_has_no_name() {
        let e = StageError::IncidentNotFound("inc-1".into());
        assert_eq!(e.name(), "IncidentNotFound");
        assert_eq!(e.message(), "incident inc-1 not found");
        assert_eq!(e.to_string(), "IncidentNotFound: incident inc-1 not found");
        assert!(!e.retryable());
        assert!(StageError::StoreUnavailable("down".into()).retryable());
    }

    #[test]
    fn store_errors_keep_their_meaning() {
        let e: StageError = StoreError::NotFound("inc-9".into()).into();
        assert_eq!(e, StageError::IncidentNotFound("inc-9".into()));
        let e: StageError = StoreError::Corrupt("bad json".into()).into();
        assert_eq!(e.kind(), StageErrorKind::StoreCorrupt);
        assert!(e.message().contains("bad json"));
    }
}
