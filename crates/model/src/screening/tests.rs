use super::*;

const CSV: &str = "_id,source,name,alt_names,addresses\n\
    id0,EL,\"Red Lantern Advanced Systems Co., Ltd.\",RLAS; Red Lantern Systems Group,\"x, CN\"\n\
    id1,EL,Jade River Computing Corporation,,\n\
    id2,EL,\"Co., Ltd.\",,\n";

#[test]
fn matches_names_and_alt_names_after_normalising() {
    let list = RestrictedParties::from_reader(CSV.as_bytes(), "test").unwrap();
    let listed = Some("Red Lantern Advanced Systems Co., Ltd.");
    assert_eq!(list.matches("RED LANTERN advanced systems"), listed);
    assert_eq!(list.matches("rlas"), listed);
    assert_eq!(list.matches("Red-Lantern Systems"), listed);
    assert_eq!(
        list.matches("Jade River Computing Co Ltd"),
        Some("Jade River Computing Corporation")
    );
    assert_eq!(list.matches("Jade River"), None);
    // Names that normalise to nothing match nothing, even an empty-named entry.
    assert_eq!(list.matches("Ltd."), None);
    assert_eq!(list.matches(""), None);
    assert_eq!(list.len(), 4);
}

#[test]
fn a_list_without_a_name_column_is_refused() {
    let err =
        RestrictedParties::from_reader("id,entity\n1,x\n".as_bytes(), "list.csv").unwrap_err();
    assert!(err.to_string().contains("no `name` column"), "{err}");
}

#[test]
fn the_export_quirks_are_read_bom_empty_fields_quoted_newlines() {
    let csv = "\u{feff}_id,name,alt_names,remarks\n\
        a1,\"Quiet\nHarbour Labs\",,\"two\nlines\"\n\
        a2,Plain Name, ; Other Name ;,\n\
        a3,,,\n";
    let entries = read_entries(csv.as_bytes(), "t").unwrap();
    assert_eq!(entries.len(), 3);
    assert_eq!(entries[0].id, "a1");
    assert_eq!(entries[0].name, "Quiet\nHarbour Labs");
    assert!(entries[0].alt_names.is_empty());
    assert_eq!(entries[1].alt_names, ["Other Name"]);
    let list = RestrictedParties::from_entries(&entries);
    assert_eq!(
        list.matches("quiet harbour labs"),
        Some("Quiet\nHarbour Labs")
    );
    assert_eq!(list.matches("OTHER NAME LTD"), Some("Plain Name"));
    assert_eq!(list.len(), 3);
}

#[test]
fn the_json_form_reads_like_the_csv() {
    let json = r#"{"total": 2, "results": [
        {"id": "id0", "name": "Red Lantern Advanced Systems Co., Ltd.", "alt_names": ["RLAS", "Red Lantern Systems Group"], "source": "EL"},
        {"id": "id1", "name": "Jade River Computing Corporation", "alt_names": null},
        {"id": "id2", "name": "Co., Ltd."}
    ]}"#;
    let from_json = RestrictedParties::from_reader(json.as_bytes(), "t").unwrap();
    let from_csv = RestrictedParties::from_reader(CSV.as_bytes(), "t").unwrap();
    assert_eq!(from_json, from_csv);
    let bare = r#"[{"_id": "x", "name": "Acme", "alt_names": "A1; A2"}]"#;
    let entries = read_entries(bare.as_bytes(), "t").unwrap();
    assert_eq!(entries[0].id, "x");
    assert_eq!(entries[0].alt_names, ["A1", "A2"]);
}

#[test]
fn malformed_json_is_refused_with_what_is_wrong() {
    for (text, says) in [
        ("{\"data\": []}", "no `results` array"),
        ("[1]", "results[0] is not an object"),
        (
            "[{\"name\": \"x\", \"alt_names\": 3}]",
            "alt_names is neither",
        ),
        ("{\"results\": [", "EOF"),
    ] {
        let err = read_entries(text.as_bytes(), "list.json").unwrap_err();
        let shown = err.to_string();
        assert!(
            shown.contains(says) && shown.contains("list.json"),
            "{shown}"
        );
    }
}

#[test]
fn a_version_defaults_to_the_files_digest() {
    let list =
        ScreeningList::from_bytes(CSV.as_bytes(), "t", None, Timestamp::from_millis(0)).unwrap();
    assert_eq!(list.sha256.len(), 64);
    assert_eq!(list.version, format!("csl-{}", &list.sha256[..12]));
    assert_eq!(list.entries.len(), 3);
    let named = ScreeningList::from_bytes(
        CSV.as_bytes(),
        "t",
        Some("v7".into()),
        Timestamp::from_millis(0),
    )
    .unwrap();
    assert_eq!(named.version, "v7");
}

#[test]
fn the_delta_holds_only_the_names_that_changed() {
    let old = RestrictedParties::from_reader(CSV.as_bytes(), "t").unwrap();
    let new = RestrictedParties::from_reader(
        "name,alt_names\n\
         \"Red Lantern Advanced Systems Co., Ltd.\",RLAS\n\
         Beijing Volcano Engine Technology Co. Ltd.,\n"
            .as_bytes(),
        "t",
    )
    .unwrap();
    let delta = old.delta(&new);
    assert_eq!(delta.listed, ["beijing volcano engine technology"]);
    assert_eq!(
        delta.delisted,
        ["jade river computing", "red lantern systems"]
    );
    assert!(old.delta(&old).is_empty());
    assert_eq!(new.delta(&old).listed, delta.delisted);
}
