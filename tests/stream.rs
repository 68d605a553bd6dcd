//! What the suites submit: the conformance sample, repeated with fresh
//! document ids, and poison pills.

use std::path::{Path, PathBuf};

/// The repository's root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The public conformance sample: `FORECAST_CONFORMANCE_DIR` or `../shared/conformance`.
pub fn conformance() -> PathBuf {
    std::env::var_os("FORECAST_CONFORMANCE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("../shared/conformance"))
}

/// The conformance sample repeated `copies` times with fresh document ids
/// (`<id>-<copy>`): every rule code, every sequencing case, duplicates and
/// lines that do not decode, in the proportions of a real stream. Written
/// to `path`; returns the number of lines.
///
/// # Panics
/// When the sample cannot be read or `path` written.
pub fn generated_stream(copies: usize, path: &Path) -> usize {
    let text = std::fs::read_to_string(conformance().join("stream.jsonl"))
        .expect("the conformance sample (see FORECAST_CONFORMANCE_DIR)");
    let mut out = String::new();
    let mut n = 0;
    for k in 0..copies {
        for line in text
            .trim_start_matches('\u{feff}')
            .lines()
            .filter(|l| !l.trim().is_empty())
        {
            let renamed = match serde_json::from_str::<serde_json::Value>(line) {
                Ok(mut v)
                    if v.get("document_id")
                        .is_some_and(serde_json::Value::is_string) =>
                {
                    let id = format!("{}-{k}", v["document_id"].as_str().unwrap_or_default());
                    v["document_id"] = id.into();
                    v.to_string()
                }
                _ => line.to_owned(),
            };
            out.push_str(&renamed);
            out.push('\n');
            n += 1;
        }
    }
    std::fs::write(path, out).expect("the stream written");
    n
}

/// Splits a JSON Lines file into `parts` files of about equal size in
/// `dir` (`part-0.jsonl`...), in order.
///
/// # Panics
/// When the files cannot be read or written.
pub fn split(path: &Path, parts: usize, dir: &Path) -> Vec<PathBuf> {
    let text = std::fs::read_to_string(path).expect("the stream");
    let lines: Vec<&str> = text.lines().collect();
    let per = lines.len().div_ceil(parts);
    lines
        .chunks(per)
        .enumerate()
        .map(|(i, chunk)| {
            let p = dir.join(format!("part-{i}.jsonl"));
            std::fs::write(&p, chunk.join("\n") + "\n").expect("a part written");
            p
        })
        .collect()
}

/// A key and a value, either possibly null.
pub type OwnedRecord = (Option<Vec<u8>>, Option<Vec<u8>>);

/// Poison pills, as (key, value): not Avro, bad magic, unknown schema id,
/// truncated Avro, a 2 MB record, an empty value, a null value and a null key.
///
/// # Panics
/// When the example document is missing.
pub fn poison_pills() -> Vec<OwnedRecord> {
    let doc = forecast_model::ForecastDocument::from_json(
        &std::fs::read(repo().join("examples/tencent-original.json")).expect("the example"),
    )
    .expect("the example decodes");
    let good = forecast_model::wire::encode_document(&doc);
    let mut unknown_id = good.clone();
    unknown_id[1..5].copy_from_slice(&77u32.to_be_bytes());
    let mut bad_magic = good.clone();
    bad_magic[0] = 9;
    let truncated = good[..good.len() / 2].to_vec();
    let mut huge = good;
    huge.resize(2 << 20, 0);
    let k = |s: &str| Some(s.as_bytes().to_vec());
    vec![
        (k("pill-1"), Some(b"this is not avro".to_vec())),
        (k("pill-2"), Some(bad_magic)),
        (k("pill-3"), Some(unknown_id)),
        (k("pill-4"), Some(truncated)),
        (k("pill-5"), Some(huge)),
        (k("pill-6"), Some(Vec::new())),
        (k("pill-7"), None),
        (None, Some(b"\x00\x00\x00\x00\x02garbage".to_vec())),
    ]
}

/// A noisy customer's documents (JSON lines): each decodes, and each made
/// a verdict or dead-letter header larger than a broker takes before
/// outputs were bounded. Tencent's example with 150,000 bad lines (over
/// `max_document_lines`), with 9,000 bad lines (under it: a verdict of
/// every code, violations bounded per code), with a 100,000-byte
/// `document_id` (over `max_id_bytes`), and with a 480,000-byte
/// description naming a prohibited term and 5,000 end users.
///
/// # Panics
/// When the example cannot be read.
pub fn noisy_pills() -> Vec<String> {
    let example: serde_json::Value = serde_json::from_slice(
        &std::fs::read(repo().join("examples/tencent-original.json")).expect("the example"),
    )
    .expect("the example is JSON");
    let bad_lines = |n: usize| {
        serde_json::Value::Array(
            (0..n)
                .map(|_| serde_json::json!({"sku": "", "period_start": "1970-01-02", "quantity": -1, "confidence": "FIRM"}))
                .collect(),
        )
    };
    let with = |edit: &dyn Fn(&mut serde_json::Value)| {
        let mut d = example.clone();
        edit(&mut d);
        d.to_string()
    };
    vec![
        with(&|d| {
            d["document_id"] = "PILL-LINES".into();
            d["lines"] = bad_lines(150_000);
        }),
        with(&|d| {
            d["document_id"] = "PILL-MANY".into();
            d["lines"] = bad_lines(9_000);
        }),
        with(&|d| d["document_id"] = "P".repeat(100_000).into()),
        with(&|d| {
            d["document_id"] = "PILL-TEXT".into();
            d["end_use"]["description"] = "anti missile ".repeat(37_000).into();
            d["end_use"]["end_users"] = serde_json::Value::Array(
                (0..5_000)
                    .map(|i| serde_json::json!({"name": format!("End user {i}"), "country": "CN"}))
                    .collect(),
            );
        }),
    ]
}
