//! The documentation rules of the spec, as one pure function.
//!
//! [`check`] reports every violated rule with the field it points at (not
//! only the first) and the warnings, separately. It is stateless: the
//! sequencing rules, which need the last applied revision, are the
//! aggregator's.

use forecast_model::{
    Bucket, Confidence, ForecastDocument, LicenseStatus, Line, Purpose, Quarter, RuleCode,
    Violation, Warning, WarningCode,
};

use crate::keys::Finding;
use crate::policy::{Policy, SignatureMode};
use forecast_model::limits::bounded;
use forecast_model::text::{case_fold, words};

/// Most violations of one code a report lists; the others are counted
/// ([`Report::details`] says how many), so that a document of many bad
/// lines makes a verdict of bounded size while its codes stay complete.
pub const VIOLATIONS_LISTED_PER_CODE: usize = 20;

/// Longest `field` of a listed violation, in bytes.
pub const MAX_VIOLATION_FIELD_BYTES: usize = 256;

/// Longest `message` of a listed violation, in bytes (it may quote the
/// document: a customer id, a description).
pub const MAX_VIOLATION_MESSAGE_BYTES: usize = 512;

/// What the stateless rules found in one document.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// The violations listed, in document order: at most
    /// [`VIOLATIONS_LISTED_PER_CODE`] of each code.
    pub violations: Vec<Violation>,
    /// Every warning, in document order.
    pub warnings: Vec<Warning>,
    /// Violations found, per code index (empty while none is): those past
    /// [`VIOLATIONS_LISTED_PER_CODE`] are counted, not listed.
    found: Vec<u32>,
}

impl Report {
    /// True when no rule is violated (warnings do not count).
    pub fn passed(&self) -> bool {
        self.violations.is_empty()
    }

    /// Violated rule codes, sorted by symbol and unique: every code found,
    /// listed or not.
    pub fn codes(&self) -> Vec<RuleCode> {
        forecast_model::verdict::sorted_codes(
            self.violations.iter().map(|v| v.code),
            RuleCode::as_str,
        )
    }

    /// Warning codes, sorted by symbol and unique.
    pub fn warning_codes(&self) -> Vec<WarningCode> {
        forecast_model::verdict::sorted_codes(
            self.warnings.iter().map(|w| w.code),
            WarningCode::as_str,
        )
    }

    /// The violations a verdict lists: those kept, then one per code whose
    /// other violations were only counted, saying how many.
    pub fn details(&self) -> Vec<Violation> {
        let mut details = self.violations.clone();
        let omitted = RuleCode::ALL
            .iter()
            .zip(&self.found)
            .filter_map(|(code, n)| {
                let n = (*n as usize).checked_sub(VIOLATIONS_LISTED_PER_CODE)?;
                (n > 0).then_some((code, n))
            });
        details.extend(omitted.map(|(code, n)| Violation {
            code: *code,
            field: String::new(),
            message: format!("and {n} more {code} violation(s), not listed"),
        }));
        details
    }

    /// Violations found in all, listed or not.
    pub fn violations_found(&self) -> u64 {
        self.found.iter().map(|n| u64::from(*n)).sum()
    }

    /// The report of a document over the policy's size limits: that one
    /// violation, as no other check runs.
    pub(crate) fn too_large(field: &str, message: String) -> Self {
        let mut r = Self::default();
        r.violation(RuleCode::DocumentTooLarge, field, message);
        r
    }

    pub(crate) fn violation(
        &mut self,
        code: RuleCode,
        field: impl Into<String>,
        message: impl Into<String>,
    ) {
        if self.found.is_empty() {
            self.found = vec![0; RuleCode::ALL.len()];
        }
        let found = &mut self.found[code.index()];
        *found = found.saturating_add(1);
        if *found as usize > VIOLATIONS_LISTED_PER_CODE {
            return;
        }
        let (field, message) = (field.into(), message.into());
        self.violations.push(Violation {
            code,
            field: bounded(&field, MAX_VIOLATION_FIELD_BYTES).into_owned(),
            message: bounded(&message, MAX_VIOLATION_MESSAGE_BYTES).into_owned(),
        });
    }
}

/// Checks one decoded document against the policy.
///
/// A `CANCEL` is checked only for its signature, `CUSTOMER_UNKNOWN`,
/// `REVISION_INVALID` and `LINES_ON_CANCEL`, and gets no warnings. When the
/// horizon is `HORIZON_INVALID` the checks that need it are skipped.
pub fn check(doc: &ForecastDocument, policy: &Policy) -> Report {
    let mut r = Report::default();
    let settings = policy.settings();
    check_signature(doc, policy, &mut r);

    if !settings.registered_customers.contains(&doc.customer_id) {
        r.violation(
            RuleCode::CustomerUnknown,
            "customer_id",
            format!("`{}` is not a registered customer", doc.customer_id),
        );
    }
    let revision_ok = match doc.purpose {
        Purpose::Original => doc.revision == 1,
        Purpose::Replace | Purpose::Cancel => doc.revision >= 2,
    };
    if !revision_ok {
        let needs = if doc.purpose == Purpose::Original {
            "must be 1"
        } else {
            "must be 2 or more"
        };
        r.violation(
            RuleCode::RevisionInvalid,
            "revision",
            format!("revision {} of a {} {needs}", doc.revision, doc.purpose),
        );
    }
    if doc.purpose == Purpose::Cancel {
        if !doc.lines.is_empty() {
            r.violation(
                RuleCode::LinesOnCancel,
                "lines",
                format!(
                    "a CANCEL carries {} line(s); it must carry none",
                    doc.lines.len()
                ),
            );
        }
        return r;
    }
    if doc.lines.is_empty() {
        r.violation(
            RuleCode::LinesEmpty,
            "lines",
            format!("a {} has no lines", doc.purpose),
        );
    }

    let horizon = check_horizon(doc, policy, &mut r);
    check_lines(doc, policy, horizon, &mut r);
    check_documents(doc, policy, horizon, &mut r);
    check_end_use(doc, policy, &mut r);
    check_license(doc, &mut r);
    r
}

/// The signature against the key registry (docs/signatures.md): nothing
/// when signatures are off, or optional and the document is unsigned.
fn check_signature(doc: &ForecastDocument, policy: &Policy, r: &mut Report) {
    let mode = policy.signatures();
    let Some(keys) = policy.keys().filter(|_| mode != SignatureMode::Off) else {
        return;
    };
    if mode == SignatureMode::Optional && doc.signature.is_none() {
        return;
    }
    let key = doc.signature.as_ref().map_or("", |s| s.key_id.as_str());
    for finding in keys.check(doc) {
        let (code, message) = match finding {
            Finding::Missing => (
                RuleCode::SignatureMissing,
                "the policy requires a signature; sign with `forecastctl sign` or `submit --signing-key`".to_owned(),
            ),
            Finding::UnknownKey => (
                RuleCode::KeyUnknown,
                format!("key `{key}` is not in the key registry"),
            ),
            Finding::OtherCustomer(owner) => (
                RuleCode::KeyNotForCustomer,
                format!("key `{key}` signs for `{owner}`, not for `{}`", doc.customer_id),
            ),
            Finding::NotACustomersKey(role) => (
                RuleCode::KeyNotForCustomer,
                format!("key `{key}` is the {role}'s, which signs records, not documents"),
            ),
            Finding::NotYetValid(from) => (
                RuleCode::KeyNotYetValid,
                format!("key `{key}` is valid from {from}, after submitted_at {}", doc.submitted_at),
            ),
            Finding::Expired(until) => (
                RuleCode::KeyExpired,
                format!("key `{key}` expired at {until}, before submitted_at {}", doc.submitted_at),
            ),
            Finding::Revoked => (RuleCode::KeyRevoked, format!("key `{key}` is revoked")),
            Finding::Invalid(why) => (RuleCode::SignatureInvalid, format!("key `{key}`: {why}")),
        };
        let field = match code {
            RuleCode::SignatureMissing => "signature",
            RuleCode::SignatureInvalid => "signature.value",
            _ => "signature.key_id",
        };
        r.violation(code, field, message);
    }
}

/// Validates the horizon; returns it when it is well formed.
fn check_horizon(
    doc: &ForecastDocument,
    policy: &Policy,
    r: &mut Report,
) -> Option<(Quarter, Quarter)> {
    let start = doc.horizon.start.parse::<Quarter>();
    let end = doc.horizon.end.parse::<Quarter>();
    let (start, end) = match (start, end) {
        (Ok(s), Ok(e)) if s <= e => (s, e),
        (Ok(s), Ok(e)) => {
            r.violation(
                RuleCode::HorizonInvalid,
                "horizon",
                format!("starts at {s}, after its end {e}"),
            );
            return None;
        }
        (s, e) => {
            for (field, err) in [("horizon.start", s.err()), ("horizon.end", e.err())] {
                if let Some(err) = err {
                    r.violation(RuleCode::HorizonInvalid, field, err.to_string());
                }
            }
            return None;
        }
    };
    let span = end.index() - start.index() + 1;
    let minimum = i64::from(policy.settings().minimum_horizon_quarters);
    if span < minimum {
        r.violation(
            RuleCode::HorizonTooShort,
            "horizon",
            format!("{start} to {end} spans {span} quarter(s); the minimum is {minimum}"),
        );
    }
    // Quarters of the horizon covered by some line (whatever else is wrong
    // with it): a bit per quarter when the horizon spans at most 64 (no
    // allocation), else a sorted list.
    let first = start.index();
    let quarters = || {
        doc.lines
            .iter()
            .map(|l| l.period_start.quarter().index())
            .filter(|q| (first..=end.index()).contains(q))
    };
    let bits = (span <= 64).then(|| quarters().fold(0u64, |bits, q| bits | 1 << (q - first)));
    let list: Vec<i64> = match bits {
        Some(_) => Vec::new(),
        None => {
            let mut list: Vec<i64> = quarters().collect();
            list.sort_unstable();
            list.dedup();
            list
        }
    };
    let covered = |q: i64| match bits {
        Some(bits) => bits & 1 << (q - first) != 0,
        None => list.binary_search(&q).is_ok(),
    };
    let gaps = (start.index()..=end.index())
        .filter(|&q| !covered(q))
        .count() as i64;
    if gaps > 0 {
        let missing: Vec<String> = (start.index()..=end.index())
            .filter(|&q| !covered(q))
            .take(4)
            .map(|q| Quarter::from_index(q).to_string())
            .collect();
        let more = if gaps > 4 { ", ..." } else { "" };
        r.violation(
            RuleCode::HorizonGap,
            "lines",
            format!(
                "no line in {}{more}; a line of quantity 0 states zero demand",
                missing.join(", ")
            ),
        );
    }
    Some((start, end))
}

fn check_lines(
    doc: &ForecastDocument,
    policy: &Policy,
    horizon: Option<(Quarter, Quarter)>,
    r: &mut Report,
) {
    let settings = policy.settings();
    for (i, line) in doc.lines.iter().enumerate() {
        // One calendar conversion for the alignment and the quarter.
        let (year, month, day) = line.period_start.ymd();
        let aligned = day == 1 && (doc.bucket == Bucket::Month || (month - 1) % 3 == 0);
        if !aligned {
            let bucket = if doc.bucket == Bucket::Quarter {
                "quarter"
            } else {
                "month"
            };
            r.violation(
                RuleCode::PeriodMisaligned,
                format!("lines[{i}].period_start"),
                format!("{} is not the first day of a {bucket}", line.period_start),
            );
        }
        if let Some((start, end)) = horizon {
            let q = Quarter::of_month(year, month);
            if q < start || q > end {
                r.violation(
                    RuleCode::PeriodOutsideHorizon,
                    format!("lines[{i}].period_start"),
                    format!(
                        "{} is in {q}, outside the horizon {start} to {end}",
                        line.period_start
                    ),
                );
            }
        }
        if line.quantity < 0 {
            r.violation(
                RuleCode::QuantityInvalid,
                format!("lines[{i}].quantity"),
                format!("{} is negative", line.quantity),
            );
        } else if line.quantity > settings.max_line_quantity {
            r.violation(
                RuleCode::QuantityExceedsLimit,
                format!("lines[{i}].quantity"),
                format!(
                    "{} is above the limit of {} per line",
                    line.quantity, settings.max_line_quantity
                ),
            );
        }
        if !settings.sku_catalogue.contains(&line.sku) {
            r.violation(
                RuleCode::SkuUnknown,
                format!("lines[{i}].sku"),
                format!("`{}` is not in the SKU catalogue", line.sku),
            );
        }
    }
    for (first, later) in duplicate_lines(&doc.lines) {
        let l = &doc.lines[later];
        r.violation(
            RuleCode::DuplicateLine,
            format!("lines[{later}]"),
            format!(
                "same SKU {}, period_start {} and confidence {} as lines[{first}]",
                l.sku, l.period_start, l.confidence
            ),
        );
    }
}

/// Lines with the key (SKU, period start, confidence) of an earlier line:
/// `(earlier, later)` for each later line, with the nearest earlier line of
/// that key, ordered by the later line.
fn duplicate_lines(lines: &[Line]) -> Vec<(usize, usize)> {
    // A short document compares each line with the earlier ones (no
    // allocation unless there is a duplicate); a long one sorts.
    if lines.len() <= 32 {
        duplicates_pairwise(lines)
    } else {
        duplicates_sorted(lines)
    }
}

fn same_key(a: &Line, b: &Line) -> bool {
    a.period_start == b.period_start && a.confidence == b.confidence && a.sku == b.sku
}

fn duplicates_pairwise(lines: &[Line]) -> Vec<(usize, usize)> {
    (1..lines.len())
        .filter_map(|later| {
            (0..later)
                .rev()
                .find(|&i| same_key(&lines[i], &lines[later]))
                .map(|earlier| (earlier, later))
        })
        .collect()
}

/// Sorts line indexes by key (stable: equal keys in line order) and
/// compares neighbours.
fn duplicates_sorted(lines: &[Line]) -> Vec<(usize, usize)> {
    let key = |i: usize| {
        let l = &lines[i];
        (l.sku.as_str(), l.period_start, l.confidence)
    };
    let mut order: Vec<usize> = (0..lines.len()).collect();
    order.sort_by_key(|&i| key(i));
    let mut dups: Vec<(usize, usize)> = order
        .windows(2)
        .filter(|w| same_key(&lines[w[0]], &lines[w[1]]))
        .map(|w| (w[0], w[1]))
        .collect();
    dups.sort_unstable_by_key(|&(_, later)| later);
    dups
}

fn check_documents(
    doc: &ForecastDocument,
    policy: &Policy,
    horizon: Option<(Quarter, Quarter)>,
    r: &mut Report,
) {
    let required = &policy.settings().required_document_kinds;
    for kind in required {
        if !doc.documents.iter().any(|d| d.kind == *kind) {
            r.violation(
                RuleCode::DocMissing,
                "documents",
                format!("no {kind} is attached"),
            );
        }
    }
    let submitted_on = doc.submitted_at.utc_date();
    let horizon_end = horizon.map(|(_, end)| end.last_day());
    for (i, d) in doc.documents.iter().enumerate() {
        if d.expires_on < submitted_on {
            r.violation(
                RuleCode::DocExpired,
                format!("documents[{i}].expires_on"),
                format!(
                    "{} {} expired on {}, before submission on {submitted_on}",
                    d.kind, d.reference, d.expires_on
                ),
            );
        }
        if d.issued_on > submitted_on {
            r.violation(
                RuleCode::DocNotYetValid,
                format!("documents[{i}].issued_on"),
                format!(
                    "{} {} is issued on {}, after submission on {submitted_on}",
                    d.kind, d.reference, d.issued_on
                ),
            );
        }
        if d.sha256.len() != 64 || !d.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            r.violation(
                RuleCode::DocDigestInvalid,
                format!("documents[{i}].sha256"),
                format!(
                    "{} characters, not 64 hexadecimal digits",
                    d.sha256.chars().count()
                ),
            );
        }
        if let Some(end) =
            horizon_end.filter(|end| d.expires_on < *end && required.contains(&d.kind))
        {
            r.warnings.push(Warning {
                code: WarningCode::DocExpiresBeforeHorizonEnd,
                field: format!("documents[{i}].expires_on"),
                message: format!(
                    "{} {} expires on {}, before the horizon ends on {end}",
                    d.kind, d.reference, d.expires_on
                ),
            });
        }
    }
}

fn check_end_use(doc: &ForecastDocument, policy: &Policy, r: &mut Report) {
    let end_use = &doc.end_use;
    if !policy
        .settings()
        .allowed_end_use_categories
        .contains(&end_use.category)
    {
        r.violation(
            RuleCode::EndUseProhibited,
            "end_use.category",
            format!("{} is not an allowed end-use category", end_use.category),
        );
    }
    let terms = policy.prohibited_terms();
    let mut found: Vec<&str> = Vec::new();
    for word in words(&end_use.description) {
        // Terms are stored case-folded; an ASCII word folds to its lower case,
        // so compare it in place instead of allocating its folded copy.
        let hit = if word.is_ascii() {
            terms.iter().find(|t| t.eq_ignore_ascii_case(word))
        } else {
            let folded = case_fold(word);
            terms.iter().find(|t| **t == folded)
        };
        if let Some(term) = hit
            && !found.contains(&term.as_str())
        {
            found.push(term);
        }
    }
    if !found.is_empty() {
        r.violation(
            RuleCode::EndUseProhibited,
            "end_use.description",
            format!("holds the prohibited term(s) {}", found.join(", ")),
        );
    }
    if end_use.end_users.is_empty() {
        r.violation(
            RuleCode::EndUserMissing,
            "end_use.end_users",
            "no end users are listed",
        );
    }
    let restricted = policy.restricted_parties();
    if !restricted.is_empty() {
        for (i, user) in end_use.end_users.iter().enumerate() {
            if let Some(listed) = restricted.matches(&user.name) {
                r.violation(
                    RuleCode::EndUserRestricted,
                    format!("end_use.end_users[{i}].name"),
                    format!("`{}` matches the restricted party `{listed}`", user.name),
                );
            }
        }
    }
}

fn check_license(doc: &ForecastDocument, r: &mut Report) {
    let license = &doc.export_license;
    if license.status == LicenseStatus::Denied {
        r.violation(
            RuleCode::LicenseDenied,
            "export_license.status",
            "the export licence was denied",
        );
    }
    let licensed = matches!(
        license.status,
        LicenseStatus::Pending | LicenseStatus::Approved
    );
    if !licensed {
        if let Some(i) = doc
            .lines
            .iter()
            .position(|l| l.confidence == Confidence::Firm)
        {
            r.violation(
                RuleCode::LicenseRequiredForFirm,
                "export_license.status",
                format!(
                    "lines[{i}] is FIRM but the licence is {}; FIRM needs PENDING or APPROVED",
                    license.status
                ),
            );
        }
    } else if license
        .application_number
        .as_deref()
        .is_none_or(|n| n.trim().is_empty())
    {
        // Blank counts as empty: "  " references no application.
        r.violation(
            RuleCode::LicenseReferenceMissing,
            "export_license.application_number",
            format!("a {} licence needs its application number", license.status),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use forecast_model::Date;

    /// Lines drawn from a few SKUs, periods and confidences, so that
    /// duplicates (pairs, triples) are common.
    fn lines(n: usize, seed: u64) -> Vec<Line> {
        let mut x = seed;
        let mut next = |m: u64| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (x >> 33) % m
        };
        (0..n)
            .map(|_| Line {
                sku: ["H20-96G", "H20-141G", "H20E"][next(3) as usize].into(),
                period_start: Date::from_days(20_000 + 91 * next(3) as i32),
                quantity: 1,
                confidence: if next(2) == 0 {
                    Confidence::Firm
                } else {
                    Confidence::Planning
                },
                ship_to: None,
            })
            .collect()
    }

    #[test]
    fn both_duplicate_searches_pair_each_line_with_its_nearest_earlier_twin() {
        for n in 0..70 {
            for seed in 0..20 {
                let l = lines(n, seed);
                assert_eq!(
                    duplicates_pairwise(&l),
                    duplicates_sorted(&l),
                    "{n} lines, seed {seed}"
                );
            }
        }
        let l = lines(6, 0);
        let mut triple = vec![l[0].clone(), l[0].clone(), l[0].clone()];
        triple[1].confidence = match triple[0].confidence {
            Confidence::Firm => Confidence::Planning,
            Confidence::Planning => Confidence::Firm,
        };
        triple.push(l[0].clone());
        assert_eq!(duplicate_lines(&triple), vec![(0, 2), (2, 3)]);
    }
}
