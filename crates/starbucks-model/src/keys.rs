//! Messages for values read through `serde_path_to_error`, naming the key (or field) at fault:
//! one wording for `config.json`, the training configs and the server's request bodies.

use std::fmt::Display;

/// `"{noun} `{key}`: {error}"`; at the top level (key `.`), the error alone, after `subject`
/// when there is one (`"the body: …"`).
pub fn message<E: Display>(error: serde_path_to_error::Error<E>, noun: &str, subject: Option<&str>) -> String {
    let key = error.path().to_string();
    let inner = error.into_inner();
    match (key.as_str(), subject) {
        (".", None) => inner.to_string(),
        (".", Some(subject)) => format!("{subject}: {inner}"),
        _ => format!("{noun} `{key}`: {inner}"),
    }
}

/// [`message`] for JSON, where a syntax error (or a truncated text) names no key:
/// `"{subject} is not valid JSON: …"` (`"not valid JSON: …"` without a subject).
pub fn json_message(error: serde_path_to_error::Error<serde_json::Error>, noun: &str, subject: Option<&str>) -> String {
    if error.inner().is_syntax() || error.inner().is_eof() {
        let inner = error.into_inner();
        return match subject {
            Some(subject) => format!("{subject} is not valid JSON: {inner}"),
            None => format!("not valid JSON: {inner}"),
        };
    }
    message(error, noun, subject)
}
