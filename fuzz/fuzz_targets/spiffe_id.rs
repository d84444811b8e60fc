//! SPIFFE ID parsing (`SpiffeId::parse`). Properties: an accepted ID is
//! kept verbatim, parses again to the same ID, and its trust domain is
//! the text between `spiffe://` and the first `/`, never empty.
#![no_main]

use gatehouse::check::authn::cert::SpiffeId;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Some(id) = SpiffeId::parse(text) else {
        return;
    };
    assert_eq!(id.as_str(), text);
    assert_eq!(SpiffeId::parse(id.as_str()).as_ref(), Some(&id));
    let domain = id.trust_domain();
    assert!(!domain.is_empty());
    let rest = &text["spiffe://".len()..];
    assert_eq!(rest.split('/').next(), Some(domain));
});
