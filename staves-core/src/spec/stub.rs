//! TEMPORARY until the spec branch lands.
#![allow(missing_docs)]
use serde::Serialize;
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    pub severity: Severity,
    pub message: String,
}
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Severity {
    Error,
    Warning,
}
impl super::ImageSpec {
    pub fn validate(&self) -> Vec<Diagnostic> {
        Vec::new()
    }
}
