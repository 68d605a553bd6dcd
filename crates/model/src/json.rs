//! Reading submissions in their JSON form.

use serde_json::Value;

use crate::document::ForecastDocument;

/// A submission that does not decode (`SCHEMA_INVALID`), with what could be
/// echoed from it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct InvalidSubmission {
    /// The submission's `document_id`, when it is a string.
    pub document_id: Option<String>,
    /// The submission's `revision`, when it is an integer of 32 bits.
    pub revision: Option<i32>,
    /// The submission's `customer_id`, when it is a string.
    pub customer_id: Option<String>,
    /// Path of the offending field (`lines[2].quantity`), empty when the
    /// text is not JSON or not an object.
    pub field: String,
    /// What is wrong, with line and column of the JSON text.
    pub message: String,
}

/// Parses one JSON document. On failure, echoes `document_id` and
/// `revision` where the input holds them with the right type.
pub fn parse_submission(json: &[u8]) -> Result<ForecastDocument, InvalidSubmission> {
    ForecastDocument::from_json(json).map_err(|err| {
        // Only a JSON object echoes anything (not, say, an array).
        let echo = serde_json::from_slice::<serde_json::Map<String, Value>>(json).ok();
        let field_of = |name: &str| echo.as_ref().and_then(|o| o.get(name));
        let (field, message) = match err.classify() {
            serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
                (String::new(), format!("not valid JSON: {err}"))
            }
            _ => {
                // Failure path only: decode again, tracking where it fails.
                let mut de = serde_json::Deserializer::from_slice(json);
                let path = serde_path_to_error::deserialize::<_, ForecastDocument>(&mut de)
                    .err()
                    .map(|e| e.path().to_string())
                    .filter(|p| p != ".")
                    .unwrap_or_default();
                (path, err.to_string())
            }
        };
        InvalidSubmission {
            document_id: field_of("document_id")
                .and_then(Value::as_str)
                .map(str::to_owned),
            revision: field_of("revision")
                .and_then(Value::as_i64)
                .and_then(|r| i32::try_from(r).ok()),
            customer_id: field_of("customer_id")
                .and_then(Value::as_str)
                .map(str::to_owned),
            field,
            message,
        }
    })
}

/// The entries of a JSON Lines settings file (the key registry, the API's
/// tokens): each non-blank line that does not start with `#`, parsed as a
/// `T`, with its line number (from 1).
pub fn settings_lines<T: serde::de::DeserializeOwned>(
    text: &str,
) -> impl Iterator<Item = (usize, Result<T, serde_json::Error>)> + '_ {
    text.lines().enumerate().filter_map(|(i, line)| {
        let line = line.trim();
        (!line.is_empty() && !line.starts_with('#')).then(|| (i + 1, serde_json::from_str(line)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echoes_what_has_the_right_type() {
        let e = parse_submission(br#"{"document_id": "A-1", "revision": "2"}"#).unwrap_err();
        assert_eq!((e.document_id.as_deref(), e.revision), (Some("A-1"), None));
        let e = parse_submission(br#"{"document_id": 7, "revision": 3}"#).unwrap_err();
        assert_eq!((e.document_id.as_deref(), e.revision), (None, Some(3)));
        let e = parse_submission(br#"{"revision": 1.0}"#).unwrap_err();
        assert_eq!(e.revision, None);
        let e = parse_submission(br#"{"revision": 4294967296}"#).unwrap_err();
        assert_eq!(e.revision, None);
        let e = parse_submission(b"{not json").unwrap_err();
        assert_eq!((e.document_id, e.revision), (None, None));
        assert!(e.message.starts_with("not valid JSON"), "{}", e.message);
        let e = parse_submission(b"[1, 2, 3]").unwrap_err();
        assert_eq!((e.document_id, e.revision), (None, None));
        let e = parse_submission(br#"{"customer_id": "TENCENT", "lines": 5}"#).unwrap_err();
        assert_eq!(e.customer_id.as_deref(), Some("TENCENT"));
        let e = parse_submission(br#"{"customer_id": ["TENCENT"]}"#).unwrap_err();
        assert_eq!(e.customer_id, None);
    }

    #[test]
    fn names_the_field_that_fails() {
        let e = parse_submission(br#"{"document_id": "A", "revision": 1, "purpose": "AMEND"}"#)
            .unwrap_err();
        assert_eq!(e.field, "purpose");
        assert!(e.message.contains("AMEND"), "{}", e.message);
    }

    #[test]
    fn settings_lines_skip_blanks_and_comments_and_number_from_one() {
        let text = "# a comment\n\n  {\"a\": 1}\nnot json\n";
        let got: Vec<(usize, bool)> = super::settings_lines::<serde_json::Value>(text)
            .map(|(line, r)| (line, r.is_ok()))
            .collect();
        assert_eq!(got, [(3, true), (4, false)]);
    }
}
