//! JOSE strictness (issue 15): one test per class of token that careful
//! verifiers refuse, and a byte-mutation property that no mutated token
//! is ever allowed.

use serde_json::json;

use super::*;
use crate::testkit::{self, TestKey};

/// Claims as JSON text, valid for an hour, with `extra` members appended
/// verbatim (so they may repeat a name).
fn claims_text(extra: &str) -> String {
    let now = crate::clock::now_secs();
    format!(
        r#"{{"iss":"{ISS}","aud":"{AUD}","sub":"alice","iat":{now},"exp":{}{extra}}}"#,
        now + 3600
    )
}

fn es256_header(extra: &str) -> String {
    format!(r#"{{"alg":"ES256","kid":"ec1"{extra}}}"#)
}

async fn refused(f: &Fixture, header: &str, claims: &str) -> JwtError {
    let token = f.ec.sign_raw(header, claims);
    verify(f, &token).await.expect_err(header)
}

fn claim_error(claim: &str, problem: ClaimProblem) -> JwtError {
    JwtError::InvalidClaim {
        claim: claim.into(),
        problem,
    }
}

#[tokio::test]
async fn the_raw_signer_makes_tokens_that_verify() {
    // The baseline: every refusal below is due to its one change.
    let f = fixture();
    let token = f.ec.sign_raw(&es256_header(""), &claims_text(""));
    assert_eq!(verify(&f, &token).await.unwrap().subject, "alice");
    let typed =
        f.ec.sign_raw(&es256_header(r#","typ":"JWT""#), &claims_text(""));
    assert!(verify(&f, &typed).await.is_ok());
}

#[tokio::test]
async fn duplicate_member_names_are_refused_at_any_depth() {
    let f = fixture();
    for (header, claims) in [
        (es256_header(r#","kid":"ec1""#), claims_text("")),
        (es256_header(r#","alg":"ES256""#), claims_text("")),
        (es256_header(""), claims_text(r#","sub":"mallory""#)),
        (es256_header(""), claims_text(r#","exp":99999999999"#)),
        (es256_header(""), claims_text(r#","x":{"a":1,"a":2}"#)),
        (es256_header(""), claims_text(r#","x":[{"a":1,"a":1}]"#)),
    ] {
        assert_eq!(
            refused(&f, &header, &claims).await,
            JwtError::DuplicateMember,
            "{header} {claims}"
        );
    }
}

#[tokio::test]
async fn header_parameters_of_the_wrong_type_are_refused() {
    let f = fixture();
    for (extra, name) in [
        (r#","typ":1"#, "typ"),
        (r#","x5t":true"#, "x5t"),
        (r#","jku":{}"#, "jku"),
        (r#","x5c":"MIIB""#, "x5c"),
        (r#","x5c":[1]"#, "x5c"),
        (r#","jwk":"key""#, "jwk"),
        (r#","cty":5"#, "cty"),
    ] {
        assert_eq!(
            refused(&f, &es256_header(extra), &claims_text("")).await,
            JwtError::BadHeaderParameter(name),
            "{extra}"
        );
    }
    let kid_number = r#"{"alg":"ES256","kid":7}"#;
    assert_eq!(
        refused(&f, kid_number, &claims_text("")).await,
        JwtError::BadHeaderParameter("kid")
    );
    let alg_list = r#"{"alg":["ES256"],"kid":"ec1"}"#;
    assert_eq!(
        refused(&f, alg_list, &claims_text("")).await,
        JwtError::BadHeaderParameter("alg")
    );
    for not_an_object in ["[]", "\"ES256\"", "null"] {
        assert_eq!(
            refused(&f, not_an_object, &claims_text("")).await,
            JwtError::Malformed
        );
        assert_eq!(
            refused(&f, &es256_header(""), not_an_object).await,
            JwtError::Malformed
        );
    }
}

#[tokio::test]
async fn jwe_and_unencoded_payload_parameters_are_refused() {
    let f = fixture();
    for name in FOREIGN_NAMES {
        let extra = format!(r#","{name}":"x""#);
        assert_eq!(
            refused(&f, &es256_header(&extra), &claims_text("")).await,
            JwtError::ForeignHeaderParameter(name),
        );
    }
    let unencoded = es256_header(r#","b64":false,"crit":["b64"]"#);
    assert_eq!(
        refused(&f, &unencoded, &claims_text("")).await,
        JwtError::CriticalHeader
    );
}

const FOREIGN_NAMES: [&str; 10] = [
    "enc", "zip", "epk", "apu", "apv", "iv", "tag", "p2s", "p2c", "b64",
];

#[tokio::test]
async fn a_nested_token_is_refused_and_other_content_types_pass() {
    let f = fixture();
    for cty in ["JWT", "jwt", "application/JWT"] {
        let header = es256_header(&format!(r#","cty":"{cty}""#));
        assert_eq!(
            refused(&f, &header, &claims_text("")).await,
            JwtError::NestedToken
        );
    }
    let other =
        f.ec.sign_raw(&es256_header(r#","cty":"json""#), &claims_text(""));
    assert!(verify(&f, &other).await.is_ok());
}

#[tokio::test]
async fn explicit_typing_accepts_access_tokens_only() {
    let f = fixture();
    for typ in [
        "JWT",
        "jwt",
        "at+jwt",
        "application/at+JWT",
        "Application/JWT",
    ] {
        let token = f.ec.sign_raw(
            &es256_header(&format!(r#","typ":"{typ}""#)),
            &claims_text(""),
        );
        assert!(verify(&f, &token).await.is_ok(), "{typ}");
    }
    for typ in [
        "dpop+jwt",
        "logout+jwt",
        "secevent+jwt",
        "JOSE",
        "",
        "at+jwt ",
    ] {
        let header = es256_header(&format!(r#","typ":"{typ}""#));
        assert_eq!(
            refused(&f, &header, &claims_text("")).await,
            JwtError::TypeNotAccepted,
            "{typ:?}"
        );
    }
}

#[test]
fn a_type_policy_can_require_typ_and_name_its_own_types() {
    let strict = TypePolicy::new(&["application/at+jwt".into()], true);
    assert!(strict.accepts(Some("at+jwt")));
    assert!(strict.accepts(Some("AT+JWT")));
    assert!(!strict.accepts(None));
    assert!(!strict.accepts(Some("JWT")));
    let default = TypePolicy::default();
    assert!(default.accepts(None));
    assert!(!default.accepts(Some("dpop+jwt")));
}

#[tokio::test]
async fn audience_values_of_the_wrong_type_are_refused() {
    let f = fixture();
    for aud in [
        json!([AUD, 5]),
        json!([AUD, null]),
        json!(5),
        json!({"aud": AUD}),
    ] {
        let mut claims = testkit::claims(ISS, AUD, "alice");
        claims["aud"] = aud.clone();
        assert_eq!(
            verify(&f, &f.ec.mint(&claims)).await.unwrap_err(),
            claim_error("aud", ClaimProblem::WrongType),
            "{aud}"
        );
    }
    let mut claims = testkit::claims(ISS, AUD, "alice");
    claims["aud"] = json!([]);
    assert_eq!(
        verify(&f, &f.ec.mint(&claims)).await.unwrap_err(),
        JwtError::BadAudience
    );
}

#[tokio::test]
async fn dates_beyond_the_year_9999_are_refused_not_saturated() {
    let f = fixture();
    let with_exp = |exp: &str| f.ec.sign_raw(&es256_header(""), &exp_claims(exp));
    for exp in [
        "1e300",
        "18446744073709551615",
        "18446744073709551616",
        "253402300800",
    ] {
        assert_eq!(
            verify(&f, &with_exp(exp)).await.unwrap_err(),
            JwtError::MissingExpiry,
            "{exp}"
        );
    }
    for exp in ["253402300799", "253402300798.5"] {
        assert!(verify(&f, &with_exp(exp)).await.is_ok(), "{exp}");
    }
    for (name, value) in [("nbf", r#""soon""#), ("iat", "1e300"), ("nbf", "-1")] {
        let extra = format!(r#","{name}":{value}"#);
        let claims = exp_claims("253402300799").replace('}', &format!("{extra}}}"));
        let token = f.ec.sign_raw(&es256_header(""), &claims);
        assert_eq!(
            verify(&f, &token).await.unwrap_err(),
            claim_error(name, ClaimProblem::WrongType),
            "{name}={value}"
        );
    }
}

fn exp_claims(exp: &str) -> String {
    format!(r#"{{"iss":"{ISS}","aud":"{AUD}","sub":"alice","exp":{exp}}}"#)
}

fn with_max_lifetime(f: &mut Fixture, secs: u64) {
    let issuers = std::mem::take(&mut f.verifier.issuers);
    f.verifier.issuers = issuers
        .into_iter()
        .map(|(iss, mut issuer)| {
            issuer.max_lifetime = Some(secs);
            (iss, issuer)
        })
        .collect();
}

#[tokio::test]
async fn max_lifetime_bounds_exp_from_iat_or_from_now() {
    let mut f = fixture();
    with_max_lifetime(&mut f, 3600);
    let now = crate::clock::now_secs();
    let leeway = 30;
    let token = |iat: Option<u64>, exp: u64| {
        let mut claims = json!({"iss": ISS, "aud": AUD, "sub": "alice", "exp": exp});
        if let Some(iat) = iat {
            claims["iat"] = json!(iat);
        }
        f.ec.mint(&claims)
    };
    assert!(verify(&f, &token(Some(now), now + 3600)).await.is_ok());
    assert!(verify(&f, &token(None, now + 3600)).await.is_ok());
    assert_eq!(
        verify(&f, &token(Some(now), now + 3601 + leeway))
            .await
            .unwrap_err(),
        JwtError::LifetimeTooLong
    );
    assert_eq!(
        verify(&f, &token(None, now + 7200)).await.unwrap_err(),
        JwtError::LifetimeTooLong
    );
    // Issued long ago with a long life: refused even though little is left.
    assert_eq!(
        verify(&f, &token(Some(now - 86_400), now + 60))
            .await
            .unwrap_err(),
        JwtError::LifetimeTooLong
    );
    assert_eq!(
        verify(&f, &token(Some(now), 253_402_300_799))
            .await
            .unwrap_err(),
        JwtError::LifetimeTooLong
    );
}

#[tokio::test]
async fn identity_claims_that_cannot_be_carried_refuse_the_token() {
    let f = fixture();
    let long = "x".repeat(crate::model::claims::MAX_IDENTITY_VALUE_BYTES + 1);
    for (name, value, problem) in [
        ("sub", json!(""), ClaimProblem::Empty),
        (
            "sub",
            json!("alice\r\nX-Auth-Request-User: root"),
            ClaimProblem::ControlCharacter,
        ),
        ("sub", json!("alice\u{0}"), ClaimProblem::ControlCharacter),
        ("sub", json!(42), ClaimProblem::WrongType),
        ("sub", json!(long.clone()), ClaimProblem::TooLong),
        (
            "email",
            json!("a@example.com\n"),
            ClaimProblem::ControlCharacter,
        ),
        ("email", json!(""), ClaimProblem::Empty),
        ("email", json!(["a@example.com"]), ClaimProblem::WrongType),
        ("uidNumber", json!(true), ClaimProblem::WrongType),
        ("uidNumber", json!("\u{85}"), ClaimProblem::ControlCharacter),
        ("isMemberOf", json!("admins"), ClaimProblem::WrongType),
        ("isMemberOf", json!(["ok", ""]), ClaimProblem::Empty),
        (
            "isMemberOf",
            json!(["ok", "a\tb"]),
            ClaimProblem::ControlCharacter,
        ),
        ("isMemberOf", json!([{"id": 3}]), ClaimProblem::WrongType),
        ("isMemberOf", json!([7]), ClaimProblem::WrongType),
        ("isMemberOf", json!([long]), ClaimProblem::TooLong),
    ] {
        let mut claims = testkit::claims(ISS, AUD, "alice");
        claims[name] = value.clone();
        assert_eq!(
            verify(&f, &f.ec.mint(&claims)).await.unwrap_err(),
            claim_error(name, problem),
            "{name}={value}"
        );
    }
}

#[tokio::test]
async fn identity_values_are_kept_byte_for_byte_never_normalized() {
    // `ａdmin` (full-width a) is `admin` after NFKC. Gatehouse compares
    // and forwards exact bytes, so it is a different user everywhere.
    let f = fixture();
    let mut claims = testkit::claims(ISS, AUD, "\u{ff41}dmin");
    claims["email"] = json!("z\u{00e9}@example.com");
    let id = verify(&f, &f.ec.mint(&claims)).await.unwrap();
    assert_eq!(id.subject, "\u{ff41}dmin");
    assert_ne!(id.subject, "admin");
    assert_eq!(id.email.as_deref(), Some("z\u{00e9}@example.com"));
}

/// Applies one mutation to `token`: overwrite, insert or delete a byte.
fn mutate(token: &str, op: u8, at: usize, byte: u8) -> Option<String> {
    let mut bytes = token.as_bytes().to_vec();
    let at = at % bytes.len();
    match op % 3 {
        0 if bytes[at] != byte => bytes[at] = byte,
        0 => return None,
        1 => bytes.insert(at, byte),
        _ => {
            bytes.remove(at);
        }
    }
    String::from_utf8(bytes).ok()
}

fn signed_tokens(f: &Fixture) -> Vec<String> {
    let claims = testkit::claims(ISS, AUD, "alice");
    let keys: [&TestKey; 3] = [&f.rsa, &f.ec, &f.ed];
    keys.iter().map(|k| k.mint(&claims)).collect()
}

mod mutation {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// A token changed by one byte (overwritten, inserted or deleted
        /// anywhere: header, claims, signature, separators) never verifies.
        /// Base64url's spare bits in a signature's last character are the
        /// classic trap: the decoder must refuse non-canonical encodings.
        #[test]
        fn a_token_mutated_by_one_byte_is_never_allowed(
            which in 0usize..3,
            op in any::<u8>(),
            at in any::<usize>(),
            byte in any::<u8>(),
        ) {
            let (f, tokens, runtime) = &*FIXTURE;
            let original = &tokens[which];
            if let Some(mutated) = mutate(original, op, at, byte) {
                prop_assume!(mutated != *original);
                let result = runtime.block_on(verify(f, &mutated));
                prop_assert!(result.is_err(), "mutated token verified");
            }
        }
    }

    type Shared = (Fixture, Vec<String>, tokio::runtime::Runtime);

    static FIXTURE: std::sync::LazyLock<Shared> = std::sync::LazyLock::new(|| {
        let f = fixture();
        let tokens = signed_tokens(&f);
        // A current-thread runtime cannot fail to build without an OS
        // error (no threads, no I/O driver is enabled).
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("current-thread runtime");
        (f, tokens, runtime)
    });

    #[test]
    fn the_unmutated_tokens_verify() {
        let (f, tokens, runtime) = &*FIXTURE;
        for token in tokens {
            assert!(runtime.block_on(verify(f, token)).is_ok());
        }
    }
}
