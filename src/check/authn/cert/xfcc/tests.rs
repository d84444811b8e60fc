use super::*;
use proptest::prelude::*;

fn one(header: &str) -> XfccElement {
    let mut all = parse(header).unwrap_or_else(|e| panic!("{header:?}: {e}"));
    assert_eq!(all.len(), 1, "{header:?}");
    all.remove(0)
}

#[test]
fn envoy_shaped_element() {
    let e = one(concat!(
        "By=spiffe://cluster.local/ns/default/sa/gateway;",
        "Hash=468ed33be74eee6556d90c0149c1309e9ba61d6425303443c0748a02dd8de688;",
        "Subject=\"CN=alice,OU=people,O=toolforge\";",
        "URI=spiffe://cluster.local/ns/tools/sa/alice;DNS=a.example;DNS=b.example"
    ));
    assert_eq!(
        e.by.as_deref(),
        Some("spiffe://cluster.local/ns/default/sa/gateway")
    );
    assert_eq!(e.hash.as_deref().map(str::len), Some(64));
    assert_eq!(e.subject.as_deref(), Some("CN=alice,OU=people,O=toolforge"));
    assert_eq!(e.uris, vec!["spiffe://cluster.local/ns/tools/sa/alice"]);
    assert_eq!(e.dns, vec!["a.example", "b.example"]);
    assert_eq!(e.cert, None);
}

#[test]
fn several_elements_and_choice() {
    let all = parse("By=a;URI=x, By=b;URI=y,By=c;URI=z").expect("valid");
    let by = |c: ElementChoice| c.select(&all).and_then(|e| e.by.clone());
    assert_eq!(by(ElementChoice::Last).as_deref(), Some("c"));
    assert_eq!(by(ElementChoice::First).as_deref(), Some("a"));
    assert_eq!(by(ElementChoice::Index(1)).as_deref(), Some("b"));
    assert_eq!(by(ElementChoice::Index(-1)).as_deref(), Some("c"));
    assert_eq!(by(ElementChoice::Index(-3)).as_deref(), Some("a"));
    assert_eq!(by(ElementChoice::Index(3)), None);
    assert_eq!(by(ElementChoice::Index(-4)), None);
    assert_eq!(by(ElementChoice::Index(i64::MIN)), None);
    assert_eq!(by(ElementChoice::Index(i64::MAX)), None);
    assert_eq!(ElementChoice::Last.select(&[]), None);
}

#[test]
fn quoted_values_keep_separators_and_dn_escapes() {
    let e = one(r#"Subject="CN=Doe\, John;x=y,O=a\\b";URI=u"#);
    // The DN's own escapes survive for the DN parser.
    assert_eq!(e.subject.as_deref(), Some(r"CN=Doe\, John;x=y,O=a\\b"));
    let e = one(r#"Subject="CN=say \"hi\"""#);
    assert_eq!(e.subject.as_deref(), Some(r#"CN=say "hi""#));
    let e = one(r#"Subject="""#);
    assert_eq!(e.subject.as_deref(), Some(""));
}

#[test]
fn keys_are_case_insensitive_and_unknown_keys_tolerated() {
    let e = one("by=a;SUBJECT=\"CN=x\";uri=u;Future=thing;dns=d");
    assert_eq!(e.by.as_deref(), Some("a"));
    assert_eq!(e.subject.as_deref(), Some("CN=x"));
    assert_eq!(e.uris, vec!["u"]);
    assert_eq!(e.dns, vec!["d"]);
}

#[test]
fn cert_stays_url_encoded() {
    let e = one("Cert=\"-----BEGIN%20CERTIFICATE-----%0AMIIB%0A-----END%20CERTIFICATE-----%0A\"");
    assert!(e.cert.as_deref().is_some_and(|c| c.contains("%20")));
}

#[test]
fn spaces_around_pairs_are_ignored() {
    let all = parse(" By=a ; URI=x ,  By=b ").expect("valid");
    assert_eq!(all[0].uris, vec!["x"]);
    assert_eq!(all[1].by.as_deref(), Some("b"));
}

#[test]
fn malformed_headers_are_errors() {
    let cases = [
        ("", XfccError::Empty),
        ("   ", XfccError::Empty),
        ("By", XfccError::ExpectedEquals(2)),
        ("=x", XfccError::BadKey(0)),
        ("By=a;", XfccError::BadKey(5)),
        ("By=a,", XfccError::BadKey(5)),
        ("By=a,,By=b", XfccError::BadKey(5)),
        ("Subject=\"CN=a", XfccError::Unterminated(8)),
        ("Subject=\"CN=a\\", XfccError::Unterminated(8)),
        ("Subject=\"CN=a\"x", XfccError::Unexpected(14)),
        ("Subject=CN\"=a", XfccError::Unexpected(10)),
        ("By=a;By=b", XfccError::Duplicate("By")),
        ("Cert=a;cert=b", XfccError::Duplicate("Cert")),
        ("Subject=a;Subject=b", XfccError::Duplicate("Subject")),
        ("B y=a", XfccError::ExpectedEquals(2)),
        ("Bé=a", XfccError::ExpectedEquals(1)),
    ];
    for (input, want) in cases {
        assert_eq!(parse(input), Err(want), "{input:?}");
    }
    let many = vec!["By=a"; MAX_ELEMENTS + 1].join(",");
    assert_eq!(parse(&many), Err(XfccError::TooLong));
    assert!(parse(&vec!["By=a"; MAX_ELEMENTS].join(",")).is_ok());
    let pairs = vec!["URI=a"; MAX_PAIRS + 1].join(";");
    assert_eq!(parse(&pairs), Err(XfccError::TooLong));
    let long = format!("URI={}", "a".repeat(MAX_XFCC_BYTES));
    assert_eq!(parse(&long), Err(XfccError::TooLong));
}

proptest! {
    #[test]
    fn never_panics(input in ".{0,300}") {
        let _ = parse(&input);
    }

    #[test]
    fn never_panics_on_xfcc_alphabet(input in r#"[A-Za-z=;,"\\ %]{0,120}"#) {
        if let Ok(all) = parse(&input) {
            prop_assert!(!all.is_empty() && all.len() <= MAX_ELEMENTS);
        }
    }

    #[test]
    fn quoted_subjects_round_trip(subject in r#"[^"\\]{0,60}"#) {
        let header = format!("By=x;Subject=\"{subject}\";URI=u");
        let e = parse(&header).expect("quoted value without quotes or backslashes");
        prop_assert_eq!(e[0].subject.as_deref(), Some(subject.as_str()));
    }
}
