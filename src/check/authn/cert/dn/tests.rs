use super::*;
use proptest::prelude::*;

fn t(name: &str) -> AttributeType {
    AttributeType::parse(name).expect("valid type")
}

fn parse(s: &str) -> DistinguishedName {
    DistinguishedName::parse(s).unwrap_or_else(|e| panic!("{s:?}: {e}"))
}

/// (type, value) per RDN, for compact assertions.
fn pairs(dn: &DistinguishedName) -> Vec<Vec<(String, String)>> {
    dn.rdns()
        .iter()
        .map(|rdn| {
            rdn.iter()
                .map(|a| (a.kind.to_string(), a.value.clone()))
                .collect()
        })
        .collect()
}

fn flat(dn: &str) -> Vec<(String, String)> {
    pairs(&parse(dn)).into_iter().flatten().collect()
}

fn p(kind: &str, value: &str) -> (String, String) {
    (kind.to_string(), value.to_string())
}

#[test]
fn simple_names_in_string_order() {
    assert_eq!(
        flat("CN=alice,OU=people,O=toolforge,C=US"),
        vec![
            p("CN", "alice"),
            p("OU", "people"),
            p("O", "toolforge"),
            p("C", "US")
        ]
    );
    assert!(parse("").is_empty());
    assert!(parse("   ").is_empty());
}

#[test]
fn escaped_specials_are_literal() {
    assert_eq!(
        flat(r"CN=Doe\, John,O=x"),
        vec![p("CN", "Doe, John"), p("O", "x")]
    );
    assert_eq!(flat(r"CN=a\+b"), vec![p("CN", "a+b")]);
    assert_eq!(flat(r"CN=a\;b\<c\>d"), vec![p("CN", "a;b<c>d")]);
    assert_eq!(flat(r#"CN=say \"hi\""#), vec![p("CN", r#"say "hi""#)]);
    assert_eq!(flat(r"CN=back\\slash"), vec![p("CN", r"back\slash")]);
    assert_eq!(flat(r"CN=\#hash"), vec![p("CN", "#hash")]);
    assert_eq!(flat(r"CN=a\=b"), vec![p("CN", "a=b")]);
    // `=` needs no escape inside a value.
    assert_eq!(flat("CN=a=b"), vec![p("CN", "a=b")]);
}

#[test]
fn hex_escapes_build_utf8() {
    assert_eq!(flat(r"CN=Lu\C4\8Di\C4\87"), vec![p("CN", "Lučić")]);
    assert_eq!(flat(r"CN=\2C\2b"), vec![p("CN", ",+")]);
    // Raw UTF-8 is fine too.
    assert_eq!(flat("CN=Lučić"), vec![p("CN", "Lučić")]);
    // Half a UTF-8 sequence is not.
    assert_eq!(DistinguishedName::parse(r"CN=\C4"), Err(DnError::NotUtf8));
}

#[test]
fn spaces_around_separators_are_ignored_escaped_ones_kept() {
    assert_eq!(
        flat(" CN = alice , O = x y "),
        vec![p("CN", "alice"), p("O", "x y")]
    );
    assert_eq!(flat(r"CN=\ padded\ "), vec![p("CN", " padded ")]);
    assert_eq!(flat(r"CN=\20x"), vec![p("CN", " x")]);
}

#[test]
fn multi_valued_rdns() {
    let dn = parse("CN=alice+UID=42,O=x");
    assert_eq!(
        pairs(&dn),
        vec![vec![p("CN", "alice"), p("UID", "42")], vec![p("O", "x")]]
    );
    assert_eq!(dn.to_string(), "CN=alice+UID=42,O=x");
}

#[test]
fn semicolons_separate_rdns_like_commas() {
    assert_eq!(flat("CN=a;O=b"), vec![p("CN", "a"), p("O", "b")]);
}

#[test]
fn types_by_any_name_or_oid() {
    let dn = parse("commonName=a,2.5.4.11=b,OID.2.5.4.10=c,dc=org,1.2.3.4=x,E=m@x");
    assert_eq!(
        flat(&dn.to_string()),
        vec![
            p("CN", "a"),
            p("OU", "b"),
            p("O", "c"),
            p("DC", "org"),
            p("1.2.3.4", "x"),
            p("EMAILADDRESS", "m@x"),
        ]
    );
    assert_eq!(t("cn"), t("2.5.4.3"));
    assert_eq!(t("mail").as_str(), "MAIL");
    for bad in ["", "1cn", "c_n", "1.", "1..2", "01.2", "c n", "-x"] {
        assert!(AttributeType::parse(bad).is_none(), "{bad:?}");
    }
}

#[test]
fn hex_values_decode_string_types() {
    // UTF8String "foo", PrintableString "US", BMPString "hi".
    assert_eq!(flat("CN=#0C03666F6F"), vec![p("CN", "foo")]);
    assert_eq!(flat("C=#13025553"), vec![p("C", "US")]);
    assert_eq!(flat("CN=#1E0400680069"), vec![p("CN", "hi")]);
    // An INTEGER is not a string: kept opaque, and rendered back as hex.
    let dn = parse("1.2.3=#020101");
    let attr = &dn.rdns()[0][0];
    assert!(attr.opaque);
    assert_eq!(attr.value, "#020101");
    assert_eq!(dn.to_string(), "1.2.3=#020101");
    // Length that does not match: opaque, not misread.
    assert!(parse("CN=#0C05666F6F").rdns()[0][0].opaque);
    for bad in ["CN=#", "CN=#0", "CN=#0G", "CN=#0C03666F6F x"] {
        assert!(DistinguishedName::parse(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn malformed_names_are_errors_not_guesses() {
    let cases = [
        ("CN", DnError::ExpectedEquals(2)),
        ("=x", DnError::BadType(0)),
        ("CN=a,", DnError::BadType(5)),
        ("CN=a,,O=b", DnError::BadType(5)),
        ("CN=a+", DnError::BadType(5)),
        (r"CN=a\", DnError::BadEscape(4)),
        (r"CN=a\x", DnError::BadEscape(4)),
        (r"CN=a\4", DnError::BadEscape(4)),
        (r#"CN="quoted""#, DnError::UnescapedQuote(3)),
        ("/CN=a/O=b", DnError::BadType(0)),
        ("CN=a\u{0}b", DnError::ControlCharacter),
        (r"CN=evil.com\00.good.com", DnError::ControlCharacter),
        ("CN=a\nb", DnError::ControlCharacter),
        ("C N=a", DnError::ExpectedEquals(2)),
    ];
    for (input, want) in cases {
        assert_eq!(DistinguishedName::parse(input), Err(want), "{input:?}");
    }
    let long = format!("CN={}", "a".repeat(MAX_DN_BYTES));
    assert_eq!(DistinguishedName::parse(&long), Err(DnError::TooLong));
    let many = vec!["O=x"; MAX_ATTRIBUTES + 1].join(",");
    assert_eq!(DistinguishedName::parse(&many), Err(DnError::TooLong));
}

#[test]
fn display_escapes_what_needs_it() {
    let dn = parse(r"CN=Doe\, John+UID=\#1,O=a\+b\;c\\d\<e\>\22,OU=\ x\ ");
    assert_eq!(
        dn.to_string(),
        r#"CN=Doe\, John+UID=\#1,O=a\+b\;c\\d\<e\>\",OU=\ x\ "#
    );
    assert_eq!(parse(&dn.to_string()), dn);
}

#[test]
fn single_refuses_ambiguity() {
    let dn = parse("CN=a,OU=x,OU=y");
    assert_eq!(dn.single(&t("CN")), Ok(Some("a")));
    assert_eq!(dn.single(&t("UID")), Ok(None));
    assert_eq!(dn.single(&t("OU")), Err(DnError::Ambiguous("OU".into())));
    assert_eq!(dn.values(&t("OU")).collect::<Vec<_>>(), vec!["x", "y"]);
}

#[test]
fn patterns_match_in_any_order() {
    let dn = parse(r"CN=Doe\, John,OU=admins,O=toolforge");
    assert!(dn.contains_all(&parse("O=toolforge")));
    assert!(dn.contains_all(&parse("o=toolforge,ou=admins")));
    assert!(dn.contains_all(&parse(r"CN=Doe\2C John")));
    assert!(dn.contains_all(&parse("")));
    assert!(!dn.contains_all(&parse("O=Toolforge")));
    assert!(!dn.contains_all(&parse("O=toolforge,OU=users")));
}

#[test]
fn from_rdns_refuses_control_characters() {
    let attr = |v: &str| Attribute {
        kind: t("CN"),
        value: v.into(),
        opaque: false,
    };
    assert!(DistinguishedName::from_rdns(vec![vec![attr("ok")]]).is_ok());
    assert_eq!(
        DistinguishedName::from_rdns(vec![vec![attr("a\u{0}b")]]),
        Err(DnError::ControlCharacter)
    );
}

proptest! {
    #[test]
    fn never_panics(input in ".{0,200}") {
        let _ = DistinguishedName::parse(&input);
    }

    #[test]
    fn never_panics_on_dn_alphabet(input in r#"[A-Za-z0-9=,+;\\#" .<>]{0,80}"#) {
        if let Ok(dn) = DistinguishedName::parse(&input) {
            // Whatever parses renders to a string that parses to the same DN.
            prop_assert_eq!(DistinguishedName::parse(&dn.to_string()), Ok(dn));
        }
    }

    #[test]
    fn any_value_round_trips(value in "[^\\x00-\\x1f\\x7f]{0,40}", kind in "(CN|O|OU|UID|DC)") {
        let dn = DistinguishedName::from_rdns(vec![vec![Attribute {
            kind: t(&kind),
            value: value.clone(),
            opaque: false,
        }]]);
        // Values with other control characters (C1) are refused.
        if let Ok(dn) = dn {
            let back = DistinguishedName::parse(&dn.to_string()).expect("renders parseably");
            prop_assert_eq!(back.rdns()[0][0].value.as_str(), value.as_str());
        }
    }
}
