//! An interpreter for the subset of Amazon States Language (JSONPath query language, STANDARD
//! workflow semantics) that this crate implements (see the crate doc).
//!
//! Everything here is pure: loading and validating a definition, paths, payload templates and
//! intrinsic functions, input/output processing, Choice rules and Retry/Catch decisions. The
//! durable execution loop that drives these lives in [`crate::runtime`].
//!
//! The modules import one another in one direction only: `failure` and `path` import none;
//! `intrinsics`, `choice` and `retry` build on those two; `template` on `intrinsics`;
//! `definition` on those and `template`; `io` applies a loaded definition's fields, so comes last.

pub mod choice;
pub mod definition;
pub mod failure;
pub mod intrinsics;
pub mod io;
pub mod path;
pub mod retry;
pub mod template;

pub use choice::{ChoiceRule, Comparison, Condition, Operand};
pub use definition::{
    ChoiceState, Definition, DefinitionError, FailState, PassState, Resource, State, StateKind,
    StateType, StringSource, TaskState, TaskTimeout, Transition, WaitFor, WaitState,
};
pub use failure::{errors, StateFailure};
pub use intrinsics::Intrinsic;
pub use path::{Path, PathSyntaxError};
pub use retry::{Catcher, JitterStrategy, Retrier};
pub use template::Template;
