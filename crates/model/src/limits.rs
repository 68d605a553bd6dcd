//! How large a document the pipeline takes: a policy setting that `check`,
//! `submit` (before it sends) and the validator apply alike, so that no
//! submission, however large, makes outputs the broker refuses or work
//! without bound (`DOCUMENT_TOO_LARGE`, a code that stands alone).

use serde::{Deserialize, Serialize};

use crate::ForecastDocument;

/// Limits on one document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DocumentLimits {
    /// Largest Avro record (the wire form, as `submit` encodes it).
    pub max_document_bytes: usize,
    /// Most lines.
    pub max_document_lines: usize,
    /// Longest `document_id` and `customer_id`, in bytes: verdicts echo
    /// them, so they bound what every verdict weighs.
    pub max_id_bytes: usize,
}

impl DocumentLimits {
    /// What ships: 1 MiB (what brokers commonly take in one record), 10,000
    /// lines (a valid document has at most SKUs x periods x 2), ids of 256
    /// bytes.
    pub const DEFAULT: Self = Self {
        max_document_bytes: 1 << 20,
        max_document_lines: 10_000,
        max_id_bytes: 256,
    };

    /// Whether a record of `size` bytes is over the byte limit: the
    /// validator refuses it unread, with this message.
    pub fn record_too_large(&self, size: usize) -> Option<String> {
        (size > self.max_document_bytes).then(|| {
            format!(
                "the document is {size} bytes encoded, over the policy's max_document_bytes of {}",
                self.max_document_bytes
            )
        })
    }

    /// The first limit `doc` (of `size` bytes encoded) is over, as the
    /// field and a message; `None` within every limit.
    pub fn exceeded(&self, doc: &ForecastDocument, size: usize) -> Option<(&'static str, String)> {
        if let Some(message) = self.record_too_large(size) {
            return Some(("", message));
        }
        if doc.lines.len() > self.max_document_lines {
            return Some((
                "lines",
                format!(
                    "{} lines, over the policy's max_document_lines of {}",
                    doc.lines.len(),
                    self.max_document_lines
                ),
            ));
        }
        for (field, value) in [
            ("document_id", &doc.document_id),
            ("customer_id", &doc.customer_id),
        ] {
            if value.len() > self.max_id_bytes {
                return Some((
                    field,
                    format!(
                        "{field} is {} bytes, over the policy's max_id_bytes of {}",
                        value.len(),
                        self.max_id_bytes
                    ),
                ));
            }
        }
        None
    }

    /// Whether an id echoed in a verdict is within [`Self::max_id_bytes`].
    pub fn id_fits(&self, id: &str) -> bool {
        id.len() <= self.max_id_bytes
    }
}

impl Default for DocumentLimits {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// `text` cut to at most `max` bytes on a character boundary, with `…`
/// and the number of bytes left out when cut: what bounds every free text
/// an output carries (violation messages, dead-letter headers).
pub fn bounded(text: &str, max: usize) -> std::borrow::Cow<'_, str> {
    if text.len() <= max {
        return text.into();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes more)", &text[..end], text.len() - end).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_cuts_on_a_character_boundary_and_says_how_much() {
        assert_eq!(bounded("short", 10), "short");
        assert_eq!(bounded("abcdef", 3), "abc… (3 bytes more)");
        // "é" is two bytes: a cut inside it moves back before it.
        assert_eq!(bounded("aé", 2), "a… (2 bytes more)");
    }

    #[test]
    fn each_limit_names_its_field() {
        let limits = DocumentLimits {
            max_document_bytes: 100,
            max_document_lines: 1,
            max_id_bytes: 3,
        };
        let mut doc = ForecastDocument {
            document_id: "D".into(),
            customer_id: "T".into(),
            ..ForecastDocument::default()
        };
        assert_eq!(limits.exceeded(&doc, 100), None);
        assert_eq!(limits.exceeded(&doc, 101).map(|e| e.0), Some(""));
        let line = crate::Line {
            sku: "S".into(),
            period_start: crate::Date::from_days(0),
            quantity: 1,
            confidence: crate::Confidence::Firm,
            ship_to: None,
        };
        doc.lines = vec![line.clone(), line];
        assert_eq!(limits.exceeded(&doc, 10).map(|e| e.0), Some("lines"));
        doc.lines.pop();
        doc.customer_id = "TENCENT".into();
        let (field, message) = limits.exceeded(&doc, 10).unwrap();
        assert_eq!(field, "customer_id");
        assert!(message.contains("7 bytes"), "{message}");
    }
}
