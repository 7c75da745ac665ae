//! The one error shape of every input Herald checks.

/// An input refused (an envelope, a campaign, a CEL expression), naming
/// the field and the reason: what a 400 and a `dead` record say.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct FieldError {
    pub field: String,
    pub reason: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// A JSON shape error, naming the field serde names in its message
    /// ("unknown field `x`", "missing field `y`"), else "envelope".
    pub fn from_serde(e: serde_json::Error) -> Self {
        let msg = e.to_string();
        let field = msg
            .split('`')
            .nth(1)
            .filter(|_| msg.contains("field"))
            .unwrap_or("envelope")
            .to_owned();
        Self::new(field, msg)
    }
}
