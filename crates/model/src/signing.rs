//! Signed submissions: the bytes a sender signs, Ed25519 signing and
//! verification, and the key files' text (docs/signatures.md).
//!
//! What is signed is the document's *canonical content*
//! ([`canonical_content`]): its JSON form without `signature`, written as
//! RFC 8785 (JSON Canonicalization Scheme) writes it. It is computed from
//! the decoded document, so the JSON a customer sends, the Avro record on
//! the wire and the document the validator decodes all give the same bytes,
//! and a system in another language can reproduce them with its own JSON
//! library (docs/signatures.md has the rules and a worked example).
//!
//! Nothing here touches files: the key files' text is parsed and written
//! here, read and written by the callers.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ed25519_dalek::{
    Signer as _,
    pkcs8::{
        DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey,
        spki::der::pem::LineEnding,
    },
};
pub use ed25519_dalek::{SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::document::{ForecastDocument, Signature};
use crate::time::Timestamp;

/// The canonical content of `doc`, the bytes its signature signs.
///
/// The document's JSON form (as [`ForecastDocument::to_json`] writes it:
/// every field the schema knows, optional fields that are absent or null
/// left out, unknown fields gone) without `signature`, with `submitted_at`
/// as its UTC instant (`2026-07-15T08:00:00Z`, milliseconds only when not
/// zero), written per RFC 8785: object keys sorted, no whitespace, strings
/// escaped minimally. Integers are written as their exact decimal digits
/// (RFC 8785 writes numbers as IEEE doubles, which agrees for every integer
/// up to 2^53 and would round larger quantities: two documents would then
/// share their canonical bytes).
pub fn canonical_content(doc: &ForecastDocument) -> Vec<u8> {
    let mut out = Canonical(Vec::with_capacity(1024));
    out.document(doc);
    out.0
}

/// The canonical form written field by field, each object's keys in their
/// sorted order: a tenth of the time of building a `serde_json::Value`
/// and sorting it (measured: 25 µs for a 12-line document that way,
/// `cargo bench -p forecast-validator --bench rules -- canonical`), and
/// tested equal to that reference for any document.
struct Canonical(Vec<u8>);

impl Canonical {
    fn raw(&mut self, s: &str) {
        self.0.extend_from_slice(s.as_bytes());
    }

    /// `,"key":`, or `{"key":` for the first key of an object.
    fn key(&mut self, key: &str, first: bool) {
        self.0.push(if first { b'{' } else { b',' });
        self.0.push(b'"');
        self.raw(key);
        self.raw("\":");
    }

    fn string(&mut self, s: &str) {
        // serde_json escapes exactly what RFC 8785 escapes: `"`, `\` and
        // the control characters (as \b \t \n \f \r, else \u00xx in lower
        // case); everything else is written as UTF-8. Writing into a Vec
        // cannot fail.
        let _ = serde_json::to_writer(&mut self.0, s);
    }

    fn display(&mut self, value: impl std::fmt::Display) {
        use std::io::Write as _;
        self.0.push(b'"');
        let _ = write!(self.0, "{value}");
        self.0.push(b'"');
    }

    fn integer(&mut self, n: i64) {
        use std::io::Write as _;
        let _ = write!(self.0, "{n}");
    }

    fn array<T>(&mut self, items: &[T], mut each: impl FnMut(&mut Self, &T)) {
        self.0.push(b'[');
        for (i, item) in items.iter().enumerate() {
            if i > 0 {
                self.0.push(b',');
            }
            each(self, item);
        }
        self.0.push(b']');
    }

    fn document(&mut self, d: &ForecastDocument) {
        self.key("bucket", true);
        self.string(d.bucket.as_str());
        self.key("customer_id", false);
        self.string(&d.customer_id);
        self.key("document_id", false);
        self.string(&d.document_id);
        self.key("documents", false);
        self.array(&d.documents, |w, s| {
            w.key("expires_on", true);
            w.display(s.expires_on);
            w.key("issued_on", false);
            w.display(s.issued_on);
            w.key("kind", false);
            w.string(s.kind.as_str());
            w.key("reference", false);
            w.string(&s.reference);
            w.key("sha256", false);
            w.string(&s.sha256);
            if let Some(by) = &s.signed_by {
                w.key("signed_by", false);
                w.string(by);
            }
            w.raw("}");
        });
        self.key("end_use", false);
        self.key("category", true);
        self.string(d.end_use.category.as_str());
        self.key("description", false);
        self.string(&d.end_use.description);
        self.key("end_users", false);
        self.array(&d.end_use.end_users, |w, u| {
            w.key("country", true);
            w.string(&u.country);
            w.key("name", false);
            w.string(&u.name);
            w.raw("}");
        });
        self.raw("}");
        self.key("export_license", false);
        let licence = &d.export_license;
        if let Some(number) = &licence.application_number {
            self.key("application_number", true);
            self.string(number);
            self.key("status", false);
        } else {
            self.key("status", true);
        }
        self.string(licence.status.as_str());
        self.raw("}");
        self.key("horizon", false);
        self.key("end", true);
        self.string(&d.horizon.end);
        self.key("start", false);
        self.string(&d.horizon.start);
        self.raw("}");
        self.key("lines", false);
        self.array(&d.lines, |w, l| {
            w.key("confidence", true);
            w.string(l.confidence.as_str());
            w.key("period_start", false);
            w.display(l.period_start);
            w.key("quantity", false);
            w.integer(l.quantity);
            if let Some(to) = &l.ship_to {
                w.key("ship_to", false);
                w.key("country", true);
                w.string(&to.country);
                w.key("site", false);
                w.string(&to.site);
                w.raw("}");
            }
            w.key("sku", false);
            w.string(&l.sku);
            w.raw("}");
        });
        self.key("purpose", false);
        self.string(d.purpose.as_str());
        self.key("revision", false);
        self.integer(i64::from(d.revision));
        self.key("submitted_at", false);
        self.display(Timestamp::from_millis(d.submitted_at.millis()));
        self.raw("}");
    }
}

/// The id a key is registered under unless its registry entry says
/// otherwise: `ed25519:` and the first 16 hexadecimal digits of the SHA-256
/// of the 32 public-key bytes. Derived from the key, so a signer needs
/// nothing but its key file.
pub fn key_id(public: &VerifyingKey) -> String {
    let digest = Sha256::digest(public.as_bytes());
    let hex = crate::hex(&digest[..8]);
    format!("ed25519:{hex}")
}

/// The signature of `doc`'s canonical content by `key`, under `key_id`.
pub fn sign(doc: &ForecastDocument, key: &SigningKey, key_id: &str) -> Signature {
    let signature = key.sign(&canonical_content(doc));
    Signature {
        key_id: key_id.to_owned(),
        value: BASE64.encode(signature.to_bytes()),
    }
}

/// A key and the id its signatures carry: what a sender signs with.
#[derive(Clone)]
pub struct Signer {
    key: SigningKey,
    key_id: String,
}

impl std::fmt::Debug for Signer {
    // The key stays out of logs and error messages.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

impl Signer {
    /// Signs with `key` under `key_id`, or under [`key_id`] of its public
    /// key when none is given.
    pub fn new(key: SigningKey, key_id: Option<String>) -> Self {
        let key_id = key_id.unwrap_or_else(|| self::key_id(&key.verifying_key()));
        Self { key, key_id }
    }

    /// A signer from a PKCS#8 PEM private key ([`private_key_from_pem`]).
    pub fn from_pem(pem: &str, key_id: Option<String>) -> Result<Self, KeyError> {
        Ok(Self::new(private_key_from_pem(pem)?, key_id))
    }

    /// The id its signatures carry.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The public key.
    pub fn public_key(&self) -> VerifyingKey {
        self.key.verifying_key()
    }

    /// What signs records with this key under its id (a role's records:
    /// licence decisions, supply plans).
    pub fn attester(&self) -> crate::attest::Attester {
        crate::attest::Attester::signing(self.key.clone(), self.key_id.clone())
    }

    /// Sets `doc.signature` to this key's signature of its content
    /// (replacing any signature it had).
    pub fn sign(&self, doc: &mut ForecastDocument) {
        doc.signature = Some(sign(doc, &self.key, &self.key_id));
    }
}

/// Why a document's signature does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// The document carries no signature.
    #[error("the document is not signed")]
    Missing,
    /// The value is not base64 of 64 bytes.
    #[error("the signature value is not 64 bytes in base64: {0}")]
    Malformed(String),
    /// The signature does not match the content and key.
    #[error("the signature does not match the document's content and the key")]
    Mismatch,
}

/// Checks `doc`'s signature against `public` (the key its `key_id` names).
pub fn verify(doc: &ForecastDocument, public: &VerifyingKey) -> Result<(), VerifyError> {
    let signature = doc.signature.as_ref().ok_or(VerifyError::Missing)?;
    let bytes = BASE64
        .decode(&signature.value)
        .map_err(|e| VerifyError::Malformed(e.to_string()))?;
    let bytes: [u8; 64] = bytes
        .try_into()
        .map_err(|b: Vec<u8>| VerifyError::Malformed(format!("{} bytes", b.len())))?;
    public
        .verify_strict(
            &canonical_content(doc),
            &ed25519_dalek::Signature::from_bytes(&bytes),
        )
        .map_err(|_| VerifyError::Mismatch)
}

/// Why a key's text could not be read. Never holds key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// Not a PKCS#8 PEM Ed25519 private key.
    #[error("not an Ed25519 private key in PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`)")]
    NotAPrivateKey,
    /// Not an Ed25519 public key (SPKI PEM, or 32 bytes in base64).
    #[error("not an Ed25519 public key: {0}")]
    NotAPublicKey(&'static str),
    /// The system's random source failed.
    #[error("no randomness for a new key: {0}")]
    Random(String),
}

/// A new signing key from the operating system's random source.
pub fn generate_key() -> Result<SigningKey, KeyError> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| KeyError::Random(e.to_string()))?;
    let key = SigningKey::from_bytes(&seed);
    seed.fill(0);
    Ok(key)
}

/// The private key as PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`), the form
/// OpenSSL and other languages' libraries read.
pub fn private_key_pem(
    key: &SigningKey,
) -> Result<ed25519_dalek::pkcs8::spki::der::zeroize::Zeroizing<String>, KeyError> {
    key.to_pkcs8_pem(LineEnding::LF)
        .map_err(|_| KeyError::NotAPrivateKey)
}

/// Reads a PKCS#8 PEM private key.
pub fn private_key_from_pem(pem: &str) -> Result<SigningKey, KeyError> {
    SigningKey::from_pkcs8_pem(pem.trim()).map_err(|_| KeyError::NotAPrivateKey)
}

/// The public key as SPKI PEM (`-----BEGIN PUBLIC KEY-----`).
pub fn public_key_pem(key: &VerifyingKey) -> String {
    key.to_public_key_pem(LineEnding::LF).unwrap_or_default()
}

/// The public key's 32 bytes in base64, as the key registry holds it.
pub fn public_key_base64(key: &VerifyingKey) -> String {
    BASE64.encode(key.as_bytes())
}

/// Reads a public key: SPKI PEM, or its 32 bytes in base64.
pub fn public_key_from_text(text: &str) -> Result<VerifyingKey, KeyError> {
    let text = text.trim();
    if text.starts_with("-----BEGIN") {
        return VerifyingKey::from_public_key_pem(text)
            .map_err(|_| KeyError::NotAPublicKey("not an Ed25519 SPKI PEM"));
    }
    let bytes = BASE64
        .decode(text)
        .map_err(|_| KeyError::NotAPublicKey("not base64"))?;
    let bytes: [u8; 32] = bytes
        .try_into()
        .map_err(|_| KeyError::NotAPublicKey("not 32 bytes"))?;
    VerifyingKey::from_bytes(&bytes)
        .map_err(|_| KeyError::NotAPublicKey("not a point of the curve"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::Value;

    /// The reference: RFC 8785 of the values a document's JSON form holds,
    /// written generically from a `serde_json::Value`.
    fn write_canonical(value: &Value, out: &mut Vec<u8>) {
        match value {
            Value::Null => out.extend_from_slice(b"null"),
            Value::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
            // A document holds integers only.
            Value::Number(n) => out.extend_from_slice(n.to_string().as_bytes()),
            Value::String(s) => serde_json::to_writer(&mut *out, s).unwrap(),
            Value::Array(items) => {
                out.push(b'[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    write_canonical(item, out);
                }
                out.push(b']');
            }
            Value::Object(fields) => {
                // RFC 8785 sorts keys by their UTF-16 code units.
                let mut entries: Vec<_> = fields.iter().collect();
                entries.sort_by(|(a, _), (b, _)| a.encode_utf16().cmp(b.encode_utf16()));
                out.push(b'{');
                for (i, (key, item)) in entries.into_iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    serde_json::to_writer(&mut *out, key).unwrap();
                    out.push(b':');
                    write_canonical(item, out);
                }
                out.push(b'}');
            }
        }
    }

    /// [`canonical_content`] by its definition, through the reference writer.
    fn canonical_reference(doc: &ForecastDocument) -> Vec<u8> {
        let mut value = serde_json::to_value(doc).unwrap();
        let fields = value.as_object_mut().unwrap();
        fields.remove("signature");
        let utc = Timestamp::from_millis(doc.submitted_at.millis());
        fields.insert("submitted_at".into(), Value::String(utc.to_string()));
        let mut out = Vec::new();
        write_canonical(&value, &mut out);
        out
    }

    proptest! {
        #[test]
        fn the_writer_equals_the_reference(doc in crate::testing::document()) {
            prop_assert_eq!(
                String::from_utf8(canonical_content(&doc)).unwrap(),
                String::from_utf8(canonical_reference(&doc)).unwrap()
            );
        }
    }
    use crate::fixtures::twelve_line_document;

    fn sample_document() -> ForecastDocument {
        twelve_line_document("X-1", "TENCENT")
    }

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    fn signed(doc: &ForecastDocument, key: &SigningKey) -> ForecastDocument {
        let mut doc = doc.clone();
        doc.signature = Some(sign(&doc, key, &key_id(&key.verifying_key())));
        doc
    }

    #[test]
    fn a_signature_verifies_and_any_change_of_content_breaks_it() {
        let k = key(1);
        let doc = signed(&sample_document(), &k);
        assert_eq!(verify(&doc, &k.verifying_key()), Ok(()));
        assert_eq!(
            verify(&doc, &key(2).verifying_key()),
            Err(VerifyError::Mismatch)
        );
        let mut changed = doc.clone();
        changed.lines[0].quantity += 1;
        assert_eq!(
            verify(&changed, &k.verifying_key()),
            Err(VerifyError::Mismatch)
        );
        let mut changed = doc.clone();
        changed.end_use.description.push(' ');
        assert_eq!(
            verify(&changed, &k.verifying_key()),
            Err(VerifyError::Mismatch)
        );
        let mut unsigned = doc.clone();
        unsigned.signature = None;
        assert_eq!(
            verify(&unsigned, &k.verifying_key()),
            Err(VerifyError::Missing)
        );
    }

    #[test]
    fn the_signature_and_the_offset_of_submitted_at_are_not_content() {
        let doc = sample_document();
        let mut other = signed(&doc, &key(3));
        assert_eq!(canonical_content(&doc), canonical_content(&other));
        // The same instant written with another offset.
        other.submitted_at =
            Timestamp::from_millis(doc.submitted_at.millis()).with_offset_minutes(480);
        assert_eq!(canonical_content(&doc), canonical_content(&other));
        other.submitted_at = Timestamp::from_millis(doc.submitted_at.millis() + 1);
        assert_ne!(canonical_content(&doc), canonical_content(&other));
    }

    #[test]
    fn malformed_values_say_why() {
        let k = key(4);
        let mut doc = signed(&sample_document(), &k);
        doc.signature.as_mut().unwrap().value = "not base64!".into();
        assert!(matches!(
            verify(&doc, &k.verifying_key()),
            Err(VerifyError::Malformed(_))
        ));
        doc.signature.as_mut().unwrap().value = BASE64.encode([0u8; 63]);
        assert_eq!(
            verify(&doc, &k.verifying_key()),
            Err(VerifyError::Malformed("63 bytes".into()))
        );
    }

    #[test]
    fn canonical_json_sorts_keys_by_utf16_and_escapes_minimally() {
        // RFC 8785 section 3.2.3's sorting example (U+1F600 is a surrogate
        // pair, so it sorts before U+FB33), and its escaping: control
        // characters escaped, `/`, DEL, U+2028 and other text as UTF-8.
        let value: Value = serde_json::from_str(
            r#"{"\u20ac":1,"\r":2,"\ufb33":3,"1":4,"\ud83d\ude00":5,"\u0080":6,"\u00f6":7,"s":"\u0007\u001f\"\\/\u007f\u2028\u00e9\n"}"#,
        )
        .unwrap();
        let mut out = Vec::new();
        write_canonical(&value, &mut out);
        let expected = "{\"\\r\":2,\"1\":4,\"s\":\"\\u0007\\u001f\\\"\\\\/\u{7f}\u{2028}\u{e9}\\n\",\"\u{80}\":6,\"\u{f6}\":7,\"\u{20ac}\":1,\"\u{1f600}\":5,\"\u{fb33}\":3}";
        assert_eq!(String::from_utf8(out).unwrap(), expected);
    }

    #[test]
    fn key_texts_round_trip_and_errors_hold_no_key() {
        let k = generate_key().unwrap();
        let pem = private_key_pem(&k).unwrap();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"));
        assert_eq!(private_key_from_pem(&pem).unwrap().to_bytes(), k.to_bytes());
        let public = k.verifying_key();
        assert_eq!(
            public_key_from_text(&public_key_pem(&public)).unwrap(),
            public
        );
        assert_eq!(
            public_key_from_text(&public_key_base64(&public)).unwrap(),
            public
        );
        assert_eq!(
            private_key_from_pem(&public_key_pem(&public)),
            Err(KeyError::NotAPrivateKey)
        );
        assert!(public_key_from_text("AAAA").is_err());
        assert_ne!(generate_key().unwrap().to_bytes(), k.to_bytes());
        assert!(key_id(&public).starts_with("ed25519:") && key_id(&public).len() == 24);
    }
}
