//! Where a bearer credential is found (`authn::sources`): the
//! `Authorization` header (Bearer and Basic), a custom header, a cookie
//! and a query parameter, through `find_token`, plus `cookie_value` on its
//! own. Properties: a found token is never empty, never longer than
//! `MAX_TOKEN_BYTES`, and a cookie value is a slice of the header.
#![no_main]

use arbitrary::Arbitrary;
use gatehouse::check::authn::sources::{
    MAX_TOKEN_BYTES, SourceError, TokenSource, cookie_value, find_token,
};
use gatehouse::model::request::Request;
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
struct Input<'a> {
    authorization: Option<&'a str>,
    x_token: Option<&'a str>,
    cookie: Option<&'a str>,
    query: Option<&'a str>,
    cookie_name: &'a str,
    /// Which sources, in which order (indices into the five kinds).
    order: Vec<u8>,
}

fuzz_target!(|input: Input<'_>| {
    let mut request = Request::default();
    for (name, value) in [
        ("authorization", input.authorization),
        ("x-token", input.x_token),
        ("cookie", input.cookie),
    ] {
        if let Some(value) = value {
            request.headers.insert(name.into(), value.into());
        }
    }
    request.query = input.query.map(str::to_string);

    let all = [
        TokenSource::Bearer,
        TokenSource::Basic,
        TokenSource::Header("x-token".into()),
        TokenSource::Cookie("session".into()),
        TokenSource::Query("access_token".into()),
    ];
    let sources: Vec<TokenSource> = if input.order.is_empty() {
        all.to_vec()
    } else {
        input
            .order
            .iter()
            .take(8)
            .map(|i| all[usize::from(*i) % all.len()].clone())
            .collect()
    };
    // The default limit, and a small one so the too-long path is hit.
    for max in [MAX_TOKEN_BYTES, 64] {
        match find_token(&sources, &request, max) {
            Ok(Some((token, source))) => {
                let token = token.expose();
                assert!(!token.is_empty(), "empty token from {}", source.label());
                assert!(token.len() <= max);
                assert!(sources.contains(source));
            }
            Ok(None) => {}
            Err(SourceError::TooLong { len, max: limit }) => assert!(len > limit && limit == max),
            Err(SourceError::EmptyBearer | SourceError::MalformedBasic) => {}
        }
    }

    if let Some(header) = input.cookie {
        if let Some(value) = cookie_value(header, input.cookie_name) {
            let start = value.as_ptr() as usize - header.as_ptr() as usize;
            assert!(
                start + value.len() <= header.len(),
                "value outside the header"
            );
        }
    }
});
