//! From a client credential to an [`Identity`]: configured sources for
//! user, e-mail, uid, groups and tool; subject patterns and groups for
//! scopes; SPIFFE mappings for workloads.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use regex::Regex;

use super::CertError;
use super::dn::{AttributeType, DistinguishedName};
use super::peer::PeerCredential;
use super::spiffe::{SpiffeId, SpiffeMap, extend_unique};
use crate::config::{CertIdentityConfig, CertificatesConfig, ConfigError};
use crate::model::identity::{CredentialKind, Identity};
use crate::secret::Secret;

/// Where an identity field is read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A subject DN attribute.
    Attribute(AttributeType),
    /// DNS SANs.
    SanDns,
    /// URI SANs.
    SanUri,
    /// E-mail SANs.
    SanEmail,
}

impl Source {
    /// `CN`, `2.5.4.45`, `san:dns`, `san:uri`, `san:email`.
    pub fn parse(text: &str, key: &str) -> Result<Source, ConfigError> {
        if let Some(san) = text.strip_prefix("san:") {
            return match san.to_ascii_lowercase().as_str() {
                "dns" => Ok(Source::SanDns),
                "uri" => Ok(Source::SanUri),
                "email" => Ok(Source::SanEmail),
                _ => Err(ConfigError::invalid(
                    key,
                    format!("unknown SAN {text:?}: use san:dns, san:uri or san:email"),
                )),
            };
        }
        AttributeType::parse(text)
            .map(Source::Attribute)
            .ok_or_else(|| {
                ConfigError::invalid(
                    key,
                    format!("{text:?} is neither a DN attribute type nor san:dns/uri/email"),
                )
            })
    }

    /// Every value of this source in `cred`.
    fn values<'a>(&'a self, cred: &'a PeerCredential) -> Vec<&'a str> {
        match self {
            Source::Attribute(kind) => cred.subject.values(kind).collect(),
            Source::SanDns => cred.dns.iter().map(String::as_str).collect(),
            Source::SanUri => cred.uris.iter().map(String::as_str).collect(),
            Source::SanEmail => cred.emails.iter().map(String::as_str).collect(),
        }
    }

    fn label(&self) -> String {
        match self {
            Source::Attribute(kind) => kind.to_string(),
            Source::SanDns => "san:dns".into(),
            Source::SanUri => "san:uri".into(),
            Source::SanEmail => "san:email".into(),
        }
    }
}

/// The tool: a pattern over one source.
#[derive(Debug, Clone)]
struct ToolPattern {
    source: Source,
    /// Anchored as written; `None`: the whole value.
    regex: Option<Regex>,
}

impl ToolPattern {
    /// The first value the pattern matches: its `tool` group, or the
    /// whole match.
    fn tool(&self, cred: &PeerCredential) -> Option<String> {
        self.source.values(cred).into_iter().find_map(|value| {
            let Some(regex) = &self.regex else {
                return (!value.is_empty()).then(|| value.to_string());
            };
            let caps = regex.captures(value)?;
            let m = caps.name("tool").or_else(|| caps.get(0))?;
            (!m.as_str().is_empty()).then(|| m.as_str().to_string())
        })
    }
}

/// Compiled identity mapping.
#[derive(Debug, Clone)]
pub struct IdentityMap {
    user: Source,
    email: Option<Source>,
    uid: Option<Source>,
    groups: Vec<Source>,
    tool: Option<ToolPattern>,
    subject_scopes: Vec<(DistinguishedName, Vec<String>)>,
    spiffe: SpiffeMap,
    group_scopes: HashMap<String, Vec<String>>,
}

impl IdentityMap {
    /// Validates the `certificates` section (key `certificates`);
    /// `group_mapping` is the global scope → groups mapping.
    pub fn compile(
        config: &CertificatesConfig,
        group_mapping: &BTreeMap<String, Vec<String>>,
    ) -> Result<Self, ConfigError> {
        let id: &CertIdentityConfig = &config.identity;
        let key = "certificates.identity";
        let optional = |s: &Option<String>, k: &str| {
            s.as_deref()
                .map(|s| Source::parse(s, &format!("{key}.{k}")))
                .transpose()
        };
        let groups = id
            .groups
            .iter()
            .enumerate()
            .map(|(i, g)| Source::parse(g, &format!("{key}.groups[{i}]")))
            .collect::<Result<_, _>>()?;
        let tool = match &id.tool {
            None => None,
            Some(t) => Some(ToolPattern {
                source: Source::parse(&t.from, &format!("{key}.tool.from"))?,
                regex: t
                    .pattern
                    .as_deref()
                    .map(|p| {
                        Regex::new(p).map_err(|e| {
                            ConfigError::invalid(format!("{key}.tool.pattern"), e.to_string())
                        })
                    })
                    .transpose()?,
            }),
        };
        let mut subject_scopes = Vec::with_capacity(config.scopes.len());
        for (i, entry) in config.scopes.iter().enumerate() {
            let at = format!("certificates.scopes[{i}]");
            let pattern = DistinguishedName::parse(&entry.subject).map_err(|e| {
                ConfigError::invalid(format!("{at}.subject"), format!("invalid DN: {e}"))
            })?;
            if pattern.is_empty() {
                return Err(ConfigError::invalid(
                    format!("{at}.subject"),
                    "an empty pattern would match every certificate",
                ));
            }
            if entry.scopes.is_empty()
                || entry
                    .scopes
                    .iter()
                    .any(|s| s.is_empty() || s.contains(char::is_whitespace))
            {
                return Err(ConfigError::invalid(
                    format!("{at}.scopes"),
                    "list non-empty scopes without whitespace",
                ));
            }
            subject_scopes.push((pattern, entry.scopes.clone()));
        }
        let group_scopes = crate::model::identity::scopes_by_group(group_mapping);
        Ok(IdentityMap {
            user: Source::parse(&id.user, &format!("{key}.user"))?,
            email: optional(&id.email, "email")?,
            uid: optional(&id.uid, "uid")?,
            groups,
            tool,
            subject_scopes,
            spiffe: SpiffeMap::compile(&config.spiffe, "certificates.spiffe")?,
            group_scopes,
        })
    }

    /// The identity `cred` establishes: a workload (kind `spiffe`) when it
    /// carries a SPIFFE ID, else a certificate subject (kind `certificate`).
    pub fn identity(&self, cred: &PeerCredential) -> Result<Identity, CertError> {
        let spiffe: Vec<&String> = cred
            .uris
            .iter()
            .filter(|u| {
                u.get(..7)
                    .is_some_and(|s| s.eq_ignore_ascii_case("spiffe:"))
            })
            .collect();
        match spiffe.as_slice() {
            [] => self.subject_identity(cred),
            [one] => self.spiffe_identity(cred, one),
            _ => Err(CertError::SeveralSpiffeIds),
        }
    }

    fn spiffe_identity(&self, cred: &PeerCredential, raw: &str) -> Result<Identity, CertError> {
        let id = SpiffeId::parse(raw).ok_or(CertError::BadSpiffeId)?;
        let mapped = self.spiffe.map(&id)?;
        let mut scopes: BTreeSet<String> = mapped.scopes.iter().cloned().collect();
        self.add_group_scopes(&mapped.groups, &mut scopes);
        Ok(Identity {
            subject: id.as_str().to_string(),
            username: Some(mapped.user.unwrap_or_else(|| id.as_str().to_string())),
            email: None,
            uid: None,
            groups: mapped.groups,
            scopes,
            kind: CredentialKind::Spiffe,
            issuer: cred.origin.as_str().to_string(),
            expires_at: expiry(cred),
            token: Secret::default(),
            query_parameter: None,
            tool: None,
            grant: None,
            csrf: None,
            claims: None,
        })
    }

    fn subject_identity(&self, cred: &PeerCredential) -> Result<Identity, CertError> {
        let users = self.user.values(cred);
        let user = match users.as_slice() {
            [one] if !one.is_empty() => (*one).to_string(),
            [] | [_] => return Err(CertError::NoUser(self.user.label())),
            _ => return Err(CertError::Ambiguous(self.user.label())),
        };
        let first = |source: &Option<Source>| {
            source
                .as_ref()
                .and_then(|s| s.values(cred).first().map(|v| v.to_string()))
                .filter(|v| !v.is_empty())
        };
        let mut groups = Vec::new();
        for source in &self.groups {
            let values: Vec<String> = source
                .values(cred)
                .into_iter()
                .filter(|v| !v.is_empty())
                .map(str::to_string)
                .collect();
            extend_unique(&mut groups, &values);
        }
        let mut scopes = BTreeSet::new();
        for (pattern, granted) in &self.subject_scopes {
            if cred.subject.contains_all(pattern) {
                scopes.extend(granted.iter().cloned());
            }
        }
        self.add_group_scopes(&groups, &mut scopes);
        let subject = if cred.subject.is_empty() {
            user.clone()
        } else {
            cred.subject.to_string()
        };
        Ok(Identity {
            subject,
            username: Some(user),
            email: first(&self.email),
            uid: first(&self.uid),
            groups,
            scopes,
            kind: CredentialKind::Certificate,
            issuer: cred.origin.as_str().to_string(),
            expires_at: expiry(cred),
            token: Secret::default(),
            query_parameter: None,
            tool: self.tool.as_ref().and_then(|t| t.tool(cred)),
            grant: None,
            csrf: None,
            claims: None,
        })
    }

    fn add_group_scopes(&self, groups: &[String], scopes: &mut BTreeSet<String>) {
        for group in groups {
            if let Some(mapped) = self.group_scopes.get(group) {
                scopes.extend(mapped.iter().cloned());
            }
        }
    }
}

fn expiry(cred: &PeerCredential) -> Option<u64> {
    cred.validity
        .and_then(|(_, not_after)| u64::try_from(not_after).ok())
}
