//! Exit codes and one-line error messages.
//!
//! 0 success; 1 error; 2 usage or configuration error; 3 partial: some tenants
//! failed, the rest succeeded.

use crate::schema::render::TemplateError;
use crate::schema::tenant::NameError;

/// A usage or configuration error: bad arguments, an invalid name, a broken
/// configuration file. Exit code 2.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

impl UsageError {
    pub fn new(msg: impl Into<String>) -> Self {
        UsageError(msg.into())
    }
}

/// Some tenants failed while the others succeeded. Exit code 3.
#[derive(Debug, thiserror::Error)]
#[error(
    "{failed} of {total} tenant(s) failed: {names}; fix the cause and run the same command again: it finishes only what is left"
)]
pub struct PartialFailure {
    pub failed: usize,
    pub total: usize,
    pub names: String,
}

impl PartialFailure {
    pub fn new(total: usize, failed_names: &[String]) -> Self {
        PartialFailure {
            failed: failed_names.len(),
            total,
            names: listed(failed_names, 20),
        }
    }
}

/// The first `shown` of `names`, comma-separated, and how many more: a
/// list that stays one line at any fleet size.
pub fn listed<S: AsRef<str>>(names: &[S], shown: usize) -> String {
    let mut text = names
        .iter()
        .take(shown)
        .map(AsRef::as_ref)
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > shown {
        text.push_str(&format!(" and {} more", names.len() - shown));
    }
    text
}

pub const EXIT_OK: u8 = 0;
pub const EXIT_ERROR: u8 = 1;
pub const EXIT_USAGE: u8 = 2;
pub const EXIT_PARTIAL: u8 = 3;

/// The exit code an error stands for.
pub fn exit_code(err: &anyhow::Error) -> u8 {
    for cause in err.chain() {
        if cause.is::<UsageError>() || cause.is::<NameError>() || cause.is::<TemplateError>() {
            return EXIT_USAGE;
        }
        if cause.is::<PartialFailure>() {
            return EXIT_PARTIAL;
        }
    }
    EXIT_ERROR
}

/// The whole chain of causes on one line, without repeating a cause that the
/// message before it already contains, and without passwords.
pub fn one_line(err: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in err.chain() {
        let text = cause
            .to_string()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        if text.is_empty() || parts.iter().any(|p| p.contains(&text)) {
            continue;
        }
        parts.push(text);
    }
    crate::db::redact::redact(&parts.join(": "))
}
