//! The compact JWS as text, read strictly (RFC 7515, 7519, 8725): three
//! base64url parts; a JOSE header and a claims set that are UTF-8 JSON
//! objects with unique member names; registered header parameters of the
//! right JSON type; nothing that belongs to JWE (RFC 7516) or to an
//! unencoded payload (RFC 7797); and an explicit type (`typ`) the issuer
//! accepts.
//!
//! Every leniency here is a place where two parsers could read one token
//! differently, so each is refused with its own reason instead.

use base64::Engine as _;
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use super::JwtError;

/// The three dot-separated parts of a compact JWS.
pub(super) struct TokenParts<'a> {
    /// The encoded JOSE header.
    pub header: &'a str,
    /// The encoded claims set.
    pub claims: &'a str,
    /// The encoded signature.
    pub signature: &'a str,
    /// `header.claims`, the signed message.
    pub signed: &'a str,
}

/// Splits a compact JWS into its parts, each base64url without padding.
pub(super) fn split_token(raw: &str) -> Result<TokenParts<'_>, JwtError> {
    let mut it = raw.split('.');
    let (Some(header), Some(claims), Some(signature), None) =
        (it.next(), it.next(), it.next(), it.next())
    else {
        return Err(JwtError::Malformed);
    };
    let b64url = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    if header.is_empty()
        || claims.is_empty()
        || !b64url(header)
        || !b64url(claims)
        || !b64url(signature)
    {
        return Err(JwtError::Malformed);
    }
    let signed = &raw[..header.len() + 1 + claims.len()];
    Ok(TokenParts {
        header,
        claims,
        signature,
        signed,
    })
}

/// The JOSE header parameters the verifier uses, checked.
#[derive(Debug)]
pub(super) struct JoseHeader {
    /// `alg`, as written.
    pub alg: String,
    /// `kid`, when present.
    pub kid: Option<String>,
    /// `typ`, when present.
    pub typ: Option<String>,
}

/// Parameters that only a JWE carries (RFC 7516 §4.1, RFC 7518 §4.6–4.8),
/// and `b64` (RFC 7797), which changes what the signature covers.
const FOREIGN_PARAMETERS: [&str; 10] = [
    "enc", "zip", "epk", "apu", "apv", "iv", "tag", "p2s", "p2c", "b64",
];

/// Registered JWS parameters whose value must be a string (RFC 7515 §4.1).
const STRING_PARAMETERS: [&str; 7] = ["alg", "jku", "kid", "x5u", "x5t", "x5t#S256", "typ"];

/// Decodes and checks the JOSE header.
pub(super) fn parse_header(part: &str) -> Result<JoseHeader, JwtError> {
    let mut header = decode_object(part)?;
    if header.contains_key("crit") {
        return Err(JwtError::CriticalHeader);
    }
    if let Some(name) = FOREIGN_PARAMETERS.iter().find(|p| header.contains_key(**p)) {
        return Err(JwtError::ForeignHeaderParameter(name));
    }
    for name in STRING_PARAMETERS {
        if header.get(name).is_some_and(|v| !v.is_string()) {
            return Err(JwtError::BadHeaderParameter(name));
        }
    }
    if header.get("jwk").is_some_and(|v| !v.is_object()) {
        return Err(JwtError::BadHeaderParameter("jwk"));
    }
    let x5c_ok = |v: &Value| v.as_array().is_some_and(|a| a.iter().all(Value::is_string));
    if header.get("x5c").is_some_and(|v| !x5c_ok(v)) {
        return Err(JwtError::BadHeaderParameter("x5c"));
    }
    // A nested JWT (`cty: JWT`, RFC 7519 §5.2) would need a second
    // verification that this verifier does not do.
    match header.get("cty") {
        None => {}
        Some(Value::String(cty)) if !media_type_eq(cty, "jwt") => {}
        Some(Value::String(_)) => return Err(JwtError::NestedToken),
        Some(_) => return Err(JwtError::BadHeaderParameter("cty")),
    }
    let take = |header: &mut Map<String, Value>, name| match header.remove(name) {
        Some(Value::String(s)) => Some(s),
        _ => None,
    };
    let alg = take(&mut header, "alg").ok_or(JwtError::BadHeaderParameter("alg"))?;
    Ok(JoseHeader {
        alg,
        kid: take(&mut header, "kid"),
        typ: take(&mut header, "typ"),
    })
}

/// Decodes the claims set.
pub(super) fn parse_claims(part: &str) -> Result<Map<String, Value>, JwtError> {
    decode_object(part)
}

/// Which `typ` values an issuer accepts (RFC 8725 §3.11 explicit typing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypePolicy {
    /// Accepted media types, lower-case, without an `application/` prefix.
    accepted: Vec<String>,
    /// Whether a token without `typ` is refused.
    required: bool,
}

impl Default for TypePolicy {
    /// `JWT`, `at+jwt` (RFC 9068) or none: what access tokens carry. A
    /// DPoP proof (`dpop+jwt`), a logout token (`logout+jwt`) or any other
    /// explicitly typed JWT is refused.
    fn default() -> Self {
        TypePolicy::new(&["JWT".into(), "at+jwt".into()], false)
    }
}

impl TypePolicy {
    /// Accepts the media types `accepted` (as configured) and, unless
    /// `required`, a token without `typ`.
    pub fn new(accepted: &[String], required: bool) -> TypePolicy {
        TypePolicy {
            accepted: accepted.iter().map(|t| media_type(t)).collect(),
            required,
        }
    }

    /// Whether a token with this `typ` (or none) is accepted.
    pub fn accepts(&self, typ: Option<&str>) -> bool {
        match typ {
            None => !self.required,
            Some(typ) => {
                let typ = media_type(typ);
                self.accepted.contains(&typ)
            }
        }
    }
}

/// A media type as RFC 7515 §4.1.9 compares it: without case, and with
/// the `application/` prefix optional.
fn media_type(value: &str) -> String {
    let lower = value.to_ascii_lowercase();
    match lower.strip_prefix("application/") {
        Some(rest) => rest.to_string(),
        None => lower,
    }
}

fn media_type_eq(value: &str, expected: &str) -> bool {
    media_type(value) == expected
}

/// A base64url part holding a UTF-8 JSON object with unique member names.
fn decode_object(part: &str) -> Result<Map<String, Value>, JwtError> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| JwtError::Malformed)?;
    // JSON is UTF-8 (RFC 8259 §8.1), but serde_json skips the values of
    // members the target type ignores without checking them: check the
    // whole text first, so no two parsers can read one token differently.
    let text = std::str::from_utf8(&bytes).map_err(|_| JwtError::Malformed)?;
    match serde_json::from_str::<UniqueMembers>(text) {
        Ok(UniqueMembers(Value::Object(map))) => Ok(map),
        Ok(_) => Err(JwtError::Malformed),
        Err(e) if e.to_string().starts_with(DUPLICATE) => Err(JwtError::DuplicateMember),
        Err(_) => Err(JwtError::Malformed),
    }
}

/// The error text that marks a duplicate member name.
const DUPLICATE: &str = "duplicate member name";

/// A JSON value in which no object, at any depth, names a member twice.
/// RFC 7515 §4 and RFC 7519 §4 let a parser refuse duplicates or take the
/// last one; parsers that take the first exist, so a token with a
/// duplicate could mean two things. serde_json's `Map` keeps the last one
/// silently, hence this visitor.
struct UniqueMembers(Value);

impl<'de> Deserialize<'de> for UniqueMembers {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer
            .deserialize_any(UniqueVisitor)
            .map(UniqueMembers)
    }
}

struct UniqueVisitor;

impl<'de> Visitor<'de> for UniqueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        // JSON text has no NaN or infinity; `from` maps them to null.
        Ok(Value::from(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(UniqueMembers(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut members = Map::new();
        while let Some(name) = map.next_key::<String>()? {
            if members.contains_key(&name) {
                return Err(de::Error::custom(DUPLICATE));
            }
            let UniqueMembers(value) = map.next_value()?;
            members.insert(name, value);
        }
        Ok(Value::Object(members))
    }
}
