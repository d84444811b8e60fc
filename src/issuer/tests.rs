use std::collections::BTreeMap;

use super::*;
use crate::check::authn::jwt::{JwtError, JwtVerifier};
use crate::config::{InlinePem, LinksConfig, MintGrantConfig, ReissueConfig};
use crate::issuer::link::{LinkRequest, LinkSubject};
use crate::model::identity::CredentialKind;

const ISS: &str = "https://gatehouse.test";

pub(crate) fn pem(alg: SigningAlgorithm) -> (String, SigningKey) {
    let (key, pem) = SigningKey::generate(alg).expect("generates");
    (pem.expose().to_string(), key)
}

pub(crate) fn config(pems: &[&str]) -> InternalIssuerConfig {
    InternalIssuerConfig {
        issuer: ISS.into(),
        signing_keys: pems
            .iter()
            .map(|p| SigningKeyConfig::Pem(InlinePem(p.to_string())))
            .collect(),
        links: LinksConfig {
            mint: vec![MintGrantConfig {
                scope: "links:mint".into(),
                prefixes: vec!["/k8s".into()],
            }],
            ..LinksConfig::default()
        },
        reissue: ReissueConfig {
            audiences: vec!["internal".into()],
            ..ReissueConfig::default()
        },
    }
}

pub(crate) fn build(cfg: &InternalIssuerConfig) -> Result<InternalIssuer, ConfigError> {
    InternalIssuer::build(cfg, &ConfigSource::Text(String::new()), &["gh".to_string()])
}

fn verifier(issuer: &InternalIssuer) -> JwtVerifier {
    let mut v = JwtVerifier::new(Vec::new(), 30, &BTreeMap::new());
    v.add_internal_issuer(crate::check::authn::jwt::Issuer::internal(issuer).expect("keys"));
    v
}

fn link(issuer: &InternalIssuer) -> Secret {
    let request = LinkRequest {
        urls: vec!["/k8s/pods/*".into()],
        ..LinkRequest::default()
    };
    let who = LinkSubject {
        subject: "bot".into(),
        username: Some("ci-bot".into()),
        scopes: ["links:mint".to_string(), "read".to_string()].into(),
    };
    let now = crate::serve::http::now_secs();
    issuer
        .links()
        .mint(issuer, &who, &request, None, now)
        .expect("mints")
        .0
}

#[tokio::test]
async fn our_links_verify_through_the_ordinary_jwt_path() {
    for alg in [
        SigningAlgorithm::ES256,
        SigningAlgorithm::EdDSA,
        SigningAlgorithm::RS256,
    ] {
        let (pem, key) = pem(alg);
        let issuer = build(&config(&[&pem])).expect("builds");
        let token = link(&issuer);
        let id = verifier(&issuer).verify(&token).await.expect("verifies");
        assert_eq!(id.kind, CredentialKind::Link);
        assert_eq!(id.subject, "bot");
        assert_eq!(id.username.as_deref(), Some("ci-bot"));
        // The mint scope never travels in a link.
        assert_eq!(id.scopes.iter().collect::<Vec<_>>(), vec!["read"]);
        let grant = id.grant.expect("a link");
        assert_eq!(grant.verbs, vec!["get"]);
        assert_eq!(grant.expires_at - grant.not_before.expect("nbf"), 3600);
        let header: Value = serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(token.expose().split('.').next().expect("header"))
                .expect("b64"),
        )
        .expect("json");
        assert_eq!(header["alg"], alg.as_str());
        assert_eq!(header["kid"], key.kid());
        assert_eq!(header["typ"], "JWT");
    }
}

#[tokio::test]
async fn rotation_keeps_old_tokens_valid_and_signs_with_the_first_key() {
    let (old_pem, old_key) = pem(SigningAlgorithm::ES256);
    let (new_pem, new_key) = pem(SigningAlgorithm::EdDSA);
    let before = build(&config(&[&old_pem])).expect("builds");
    let old_token = link(&before);

    let during = build(&config(&[&new_pem, &old_pem])).expect("builds");
    assert_eq!(during.signing_key().kid(), new_key.kid());
    let kids: Vec<&str> = during.jwks()["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .filter_map(|k| k["kid"].as_str())
        .collect();
    assert_eq!(kids, vec![new_key.kid(), old_key.kid()]);
    let v = verifier(&during);
    v.verify(&old_token)
        .await
        .expect("old token still verifies");
    v.verify(&link(&during)).await.expect("new token verifies");

    let after = build(&config(&[&new_pem])).expect("builds");
    // Removed: refused (here the old key's algorithm left with it).
    assert!(matches!(
        verifier(&after).verify(&old_token).await,
        Err(JwtError::UnknownKey | JwtError::AlgorithmNotAllowed)
    ));
}

#[tokio::test]
async fn internal_tokens_must_be_links() {
    let (pem, _) = pem(SigningAlgorithm::ES256);
    let issuer = build(&config(&[&pem])).expect("builds");
    let now = crate::serve::http::now_secs();
    let mut claims = Map::new();
    claims.insert("iss".into(), json!(ISS));
    claims.insert("aud".into(), json!(ISS));
    claims.insert("sub".into(), json!("someone"));
    claims.insert("exp".into(), json!(now + 60));
    let plain = issuer.sign(&claims).expect("signs");
    assert!(matches!(
        verifier(&issuer).verify(&plain).await,
        Err(JwtError::InvalidLink(_))
    ));
    // A reissued token (internal audience) is not accepted back.
    claims.insert("aud".into(), json!("internal"));
    claims.insert("URLs".into(), json!(["/x"]));
    let reissued = issuer.sign(&claims).expect("signs");
    assert_eq!(
        verifier(&issuer).verify(&reissued).await.unwrap_err(),
        JwtError::BadAudience
    );
}

#[test]
fn jwks_and_discovery_publish_public_keys_only() {
    let (a, _) = pem(SigningAlgorithm::RS256);
    let (b, _) = pem(SigningAlgorithm::ES256);
    let issuer = build(&config(&[&a, &b])).expect("builds");
    let jwks = issuer.jwks().to_string();
    for private in ["\"d\"", "\"p\"", "\"q\"", "\"dp\"", "\"dq\"", "\"qi\""] {
        assert!(!jwks.contains(private), "{jwks}");
    }
    let d = issuer.openid_configuration();
    assert_eq!(d["issuer"], ISS);
    assert_eq!(d["jwks_uri"], format!("{ISS}/.well-known/jwks.json"));
    assert_eq!(
        d["id_token_signing_alg_values_supported"],
        json!(["RS256", "ES256"])
    );
    assert!(!format!("{issuer:?}").contains("PRIVATE"));
}

#[test]
fn configuration_errors_name_the_key() {
    let (pem, _) = pem(SigningAlgorithm::ES256);
    let err = |cfg: InternalIssuerConfig| build(&cfg).expect_err("refused").to_string();

    assert!(err(config(&[])).contains("issuer.signing_keys"));
    assert!(err(config(&["not a key"])).contains("issuer.signing_keys[0]"));
    assert!(err(config(&[&pem, &pem])).contains("issuer.signing_keys[1]"));
    let mut c = config(&[&pem]);
    c.issuer = "ftp://x".into();
    assert!(err(c).contains("issuer.issuer"));
    let mut c = config(&[&pem]);
    c.issuer = "not a url".into();
    assert!(err(c).contains("issuer.issuer"));
    let mut c = config(&[&pem]);
    c.reissue.audiences = vec![ISS.into()];
    assert!(err(c).contains("issuer.reissue.audiences[0]"));
    let mut c = config(&[&pem]);
    c.reissue.audiences = vec!["a".into(), "a".into()];
    assert!(err(c).contains("issuer.reissue.audiences"));
    let mut c = config(&[&pem]);
    c.reissue.lifetime = std::time::Duration::ZERO;
    assert!(err(c).contains("issuer.reissue.lifetime"));
    let mut c = config(&[&pem]);
    c.links.cookie = Some("other".into());
    assert!(err(c).contains("issuer.links.cookie"));
    let mut c = config(&[&pem]);
    c.links.mint[0].prefixes = vec!["/a/../b".into()];
    assert!(err(c).contains("issuer.links.mint[0].prefixes[0]"));
    let mut c = config(&[&pem]);
    c.links.mint[0].prefixes = vec!["/a*".into()];
    assert!(err(c).contains("issuer.links.mint[0].prefixes[0]"));
    let mut c = config(&[&pem]);
    c.links.mint[0].prefixes.clear();
    assert!(err(c).contains("issuer.links.mint[0].prefixes"));
    let mut c = config(&[&pem]);
    c.links.mint[0].scope = "two words".into();
    assert!(err(c).contains("issuer.links.mint[0].scope"));
    let mut c = config(&[&pem]);
    c.links.mint.push(c.links.mint[0].clone());
    assert!(err(c).contains("issuer.links.mint"));
    let mut c = config(&[&pem]);
    c.links.max_duration = std::time::Duration::ZERO;
    assert!(err(c).contains("issuer.links.max_duration"));
}

#[test]
fn jti_values_are_fresh() {
    let a = new_jti().expect("random");
    let b = new_jti().expect("random");
    assert_ne!(a, b);
    assert_eq!(a.len(), 22);
}
