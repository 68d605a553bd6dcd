//! The worked example of docs/signatures.md, byte for byte: the key, the
//! document, its canonical content, the key id and the signature written
//! there are what this code computes, so the page cannot drift from it and
//! a customer's implementation can be tested against it.

#![allow(clippy::unwrap_used)]

use forecast_model::ForecastDocument;
use forecast_model::signing::{self, Signer, SigningKey};

const PAGE: &str = include_str!("../../../docs/signatures.md");

/// The fenced block after the marker `<!-- example: NAME -->`.
fn block(name: &str) -> &'static str {
    let marker = format!("<!-- example: {name} -->");
    let after = &PAGE[PAGE.find(&marker).unwrap_or_else(|| panic!("no {marker}")) + marker.len()..];
    let open = after.find("```").unwrap();
    let body = &after[open..];
    let body = &body[body.find('\n').unwrap() + 1..];
    &body[..body.find("```").unwrap()]
}

fn hex(bytes: &[u8]) -> String {
    forecast_model::hex(bytes)
}

#[test]
fn the_worked_example_is_what_the_code_computes() {
    let seed_hex = block("private-key-seed").trim();
    let seed: Vec<u8> = (0..seed_hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&seed_hex[i..i + 2], 16).unwrap())
        .collect();
    let key = SigningKey::from_bytes(&seed.try_into().unwrap());
    let pem = signing::private_key_pem(&key).unwrap();
    let public = key.verifying_key();
    let signer = Signer::new(key, None);

    let document = ForecastDocument::from_json(block("document").as_bytes()).unwrap();
    let canonical = String::from_utf8(signing::canonical_content(&document)).unwrap();
    let mut signed = document.clone();
    signer.sign(&mut signed);
    let signature = signed.signature.clone().unwrap();
    let actual = format!(
        "private key PEM:\n{}\npublic key:\n{}\nkey id:\n{}\ncanonical:\n{canonical}\nsignature:\n{}\nsigned:\n{}\n",
        pem.as_str(),
        hex(public.as_bytes()),
        signer.key_id(),
        signature.value,
        signed.to_json(),
    );

    assert_eq!(block("private-key-pem"), pem.as_str(), "{actual}");
    assert_eq!(
        block("public-key-hex").trim(),
        hex(public.as_bytes()),
        "{actual}"
    );
    assert_eq!(block("key-id").trim(), signer.key_id(), "{actual}");
    // The canonical block is one line: the bytes and a newline.
    assert_eq!(block("canonical"), format!("{canonical}\n"), "{actual}");
    assert_eq!(block("signature").trim(), signature.value, "{actual}");
    // The signed document on the page verifies, and is the document.
    let on_page = ForecastDocument::from_json(block("signed-document").as_bytes()).unwrap();
    assert_eq!(on_page, signed, "{actual}");
    signing::verify(&on_page, &public).unwrap();
}
