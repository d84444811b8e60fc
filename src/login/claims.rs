//! Identity from an ID token's claims (and userinfo), mapped as for JWT
//! issuers (`claims`, `scopes.group_mapping`).

use crate::model::claims::{check_groups_claim, check_text_claim, claim_groups, claim_text};
use std::collections::{BTreeSet, HashMap};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value};

use crate::config::ClaimsConfig;
use crate::sessions::SessionIdentity;

/// The claims of a compact JWS (validated before this is called).
pub fn payload(token: &str) -> Option<Map<String, Value>> {
    let middle = token.split('.').nth(1)?;
    let bytes = URL_SAFE_NO_PAD.decode(middle).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Adds the userinfo claims the ID token lacks, when userinfo answers for
/// the same `sub` (OIDC Core 5.3.2); any failure keeps the ID token's
/// claims alone.
pub async fn merge_userinfo(
    claims: &mut Map<String, Value>,
    http: &reqwest::Client,
    endpoint: &str,
    access_token: &str,
) {
    let answer = http
        .get(endpoint)
        .bearer_auth(access_token)
        .header(reqwest::header::ACCEPT, "application/json")
        .send()
        .await;
    let info: Map<String, Value> = match answer {
        Ok(r) if r.status().is_success() => match r.json().await {
            Ok(info) => info,
            Err(_) => return,
        },
        Ok(r) => {
            tracing::debug!(status = %r.status(), "userinfo refused");
            return;
        }
        Err(e) => {
            tracing::debug!(error = %e.without_url(), "userinfo unreachable");
            return;
        }
    };
    if info.get("sub") != claims.get("sub") {
        tracing::warn!("userinfo answered for another subject; ignored");
        return;
    }
    for (name, value) in info {
        claims.entry(name).or_insert(value);
    }
}

/// The session identity: `sub`, the mapped fields, and scopes from the
/// groups. An error names the claim that is missing (`sub`) or that could
/// not be carried upstream as it is (empty, control characters, too long,
/// wrong type): the login is refused, as a bearer token with it would be.
pub fn identity(
    claims: &Map<String, Value>,
    mapping: &ClaimsConfig,
    scopes_by_group: &HashMap<String, Vec<String>>,
) -> Result<SessionIdentity, String> {
    let sub = claims.get("sub");
    if !sub.is_some_and(Value::is_string) {
        return Err("no sub claim".into());
    }
    let texts = [
        ("sub", sub),
        (mapping.username.as_str(), claims.get(&mapping.username)),
    ];
    let texts = texts.into_iter().chain([
        (mapping.email.as_str(), claims.get(&mapping.email)),
        (mapping.uid.as_str(), claims.get(&mapping.uid)),
    ]);
    for (name, value) in texts {
        check_text_claim(value).map_err(|problem| format!("invalid {name} claim: {problem}"))?;
    }
    check_groups_claim(claims.get(&mapping.groups))
        .map_err(|problem| format!("invalid {} claim: {problem}", mapping.groups))?;
    let subject = claim_text(sub).ok_or("no sub claim")?;
    let groups = claim_groups(claims.get(&mapping.groups));
    let scopes: BTreeSet<String> = groups
        .iter()
        .filter_map(|g| scopes_by_group.get(g))
        .flatten()
        .cloned()
        .collect();
    Ok(SessionIdentity {
        username: claim_text(claims.get(&mapping.username)),
        email: claim_text(claims.get(&mapping.email)),
        uid: claim_text(claims.get(&mapping.uid)),
        subject,
        groups,
        scopes,
    })
}

/// A token endpoint failure for the log: the OAuth error code or the
/// kind of failure, never the request (it holds the code or a token).
pub fn describe_token_error<RE: std::error::Error + 'static>(
    e: &openidconnect::RequestTokenError<
        RE,
        openidconnect::StandardErrorResponse<openidconnect::core::CoreErrorResponseType>,
    >,
) -> String {
    use openidconnect::RequestTokenError as E;
    match e {
        E::ServerResponse(r) => format!("provider error {}", r.error().as_ref()),
        E::Request(_) => "provider unreachable".into(),
        E::Parse(_, _) => "unreadable provider answer".into(),
        E::Other(_) => "unexpected provider answer".into(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn identity_maps_claims_and_group_scopes() {
        let claims = json!({
            "sub": "u1", "preferred_username": "alice", "email": "a@x",
            "uidNumber": 1001, "groups": ["staff", {"name": "admins"}]
        });
        let mapping = ClaimsConfig {
            username: "preferred_username".into(),
            groups: "groups".into(),
            ..Default::default()
        };
        let by_group = HashMap::from([("admins".to_string(), vec!["admin".to_string()])]);
        let id = identity(claims.as_object().expect("object"), &mapping, &by_group).expect("id");
        assert_eq!(id.subject, "u1");
        assert_eq!(id.username.as_deref(), Some("alice"));
        assert_eq!(id.uid.as_deref(), Some("1001"));
        assert_eq!(id.groups, vec!["staff", "admins"]);
        assert_eq!(id.scopes.into_iter().collect::<Vec<_>>(), vec!["admin"]);
        assert_eq!(
            identity(&Map::new(), &mapping, &by_group).unwrap_err(),
            "no sub claim"
        );
    }

    #[test]
    fn identity_claims_that_cannot_be_carried_refuse_the_login() {
        let mapping = ClaimsConfig {
            username: "preferred_username".into(),
            groups: "groups".into(),
            ..Default::default()
        };
        for (claims, reason) in [
            (json!({"sub": 5}), "no sub claim"),
            (json!({"sub": ""}), "invalid sub claim: empty value"),
            (
                json!({"sub": "u", "preferred_username": "a\r\nb"}),
                "invalid preferred_username claim: control character",
            ),
            (
                json!({"sub": "u", "groups": ["staff", 3]}),
                "invalid groups claim: wrong JSON type",
            ),
        ] {
            let err = identity(
                claims.as_object().expect("object"),
                &mapping,
                &HashMap::new(),
            );
            assert_eq!(err.unwrap_err(), reason, "{claims}");
        }
    }

    #[test]
    fn payload_reads_the_middle_segment() {
        let body = URL_SAFE_NO_PAD.encode(br#"{"sub":"x"}"#);
        let claims = payload(&format!("h.{body}.s")).expect("claims");
        assert_eq!(claims["sub"], "x");
        assert!(payload("nodots").is_none());
        assert!(payload("a.!!.c").is_none());
    }
}
