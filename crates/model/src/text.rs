//! Word matching for the end-use description and restricted-party names.

use std::borrow::Cow;

/// Words of `s`: maximal runs of letters and digits (Unicode), so
/// `anti-missile` holds `anti` and `missile`, and `_` separates words too.
pub fn words(s: &str) -> impl Iterator<Item = &str> {
    s.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
}

/// Unicode default case folding, without allocating for ASCII lower case.
pub fn case_fold(s: &str) -> Cow<'_, str> {
    if s.is_ascii() {
        if s.bytes().any(|b| b.is_ascii_uppercase()) {
            Cow::Owned(s.to_ascii_lowercase())
        } else {
            Cow::Borrowed(s)
        }
    } else {
        Cow::Owned(caseless::default_case_fold_str(s))
    }
}

/// Legal-form words dropped when restricted-party names are compared.
pub const LEGAL_FORM_WORDS: &[&str] = &[
    "co",
    "ltd",
    "limited",
    "inc",
    "corp",
    "corporation",
    "company",
    "llc",
    "plc",
    "gmbh",
    "group",
];

/// The spec's normal form of a party name: case-folded, each run of
/// non-alphanumeric characters one space, legal-form words dropped, spaces
/// trimmed. `"Red Lantern Advanced Systems Co., Ltd."` becomes
/// `"red lantern advanced systems"`.
pub fn normalize_party_name(name: &str) -> String {
    let folded = case_fold(name);
    let mut out = String::with_capacity(folded.len());
    for w in words(&folded).filter(|w| !LEGAL_FORM_WORDS.contains(w)) {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(w);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_runs_of_letters_and_digits() {
        let w: Vec<_> = words("Anti-missile_defence, 2nd gen (H20)").collect();
        assert_eq!(w, ["Anti", "missile", "defence", "2nd", "gen", "H20"]);
        assert_eq!(
            words("Östliche Rechenwerke").collect::<Vec<_>>(),
            ["Östliche", "Rechenwerke"]
        );
    }

    #[test]
    fn normalizes_like_the_spec() {
        assert_eq!(
            normalize_party_name("Red Lantern Advanced Systems Co., Ltd."),
            "red lantern advanced systems"
        );
        assert_eq!(
            normalize_party_name("  JADE-RIVER  computing CORPORATION "),
            "jade river computing"
        );
        assert_eq!(
            normalize_party_name("Östliche Rechenwerke GmbH"),
            "östliche rechenwerke"
        );
        assert_eq!(normalize_party_name("STRASSE Weiß"), "strasse weiss");
        assert_eq!(normalize_party_name("Co., Ltd."), "");
        assert_eq!(normalize_party_name("Cobalt Incubator"), "cobalt incubator");
    }
}
