//! The RFC 4514 distinguished-name parser (`DistinguishedName::parse`).
//! Property: parse → display → parse gives the same DN (the string form
//! escapes whatever the parser would read differently).
#![no_main]

use gatehouse::check::authn::cert::dn::{AttributeType, DistinguishedName};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = AttributeType::parse(text);
    let Ok(dn) = DistinguishedName::parse(text) else {
        return;
    };
    let shown = dn.to_string();
    let again = DistinguishedName::parse(&shown)
        .unwrap_or_else(|e| panic!("{text:?} displays as {shown:?}, which does not parse: {e}"));
    assert_eq!(
        again, dn,
        "{text:?} displays as {shown:?}, which parses differently"
    );
    assert!(dn.contains_all(&again));
    for attribute in dn.attributes() {
        let _ = dn.single(&attribute.kind);
    }
});
