//! The `X-Forwarded-Client-Cert` header parser (`cert::xfcc::parse`), and
//! what the certificate authenticator reads out of an element next: the
//! `Subject` as an RFC 4514 DN and `URI` SANs as SPIFFE IDs.
#![no_main]

use gatehouse::check::authn::cert::SpiffeId;
use gatehouse::check::authn::cert::dn::DistinguishedName;
use gatehouse::check::authn::cert::xfcc::{ElementChoice, MAX_ELEMENTS, parse};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(header) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(elements) = parse(header) else {
        return;
    };
    assert!(!elements.is_empty(), "an accepted header has an element");
    assert!(elements.len() <= MAX_ELEMENTS);
    for choice in [
        ElementChoice::First,
        ElementChoice::Last,
        ElementChoice::Index(0),
        ElementChoice::Index(-1),
        ElementChoice::Index(i64::MIN),
        ElementChoice::Index(i64::MAX),
    ] {
        let _ = choice.select(&elements);
    }
    for element in &elements {
        if let Some(subject) = &element.subject {
            let _ = DistinguishedName::parse(subject);
        }
        for uri in &element.uris {
            let _ = SpiffeId::parse(uri);
        }
    }
});
