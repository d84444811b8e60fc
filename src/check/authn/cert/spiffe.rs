//! SPIFFE IDs (`spiffe://trust-domain/path`) and their mapping to
//! principals, groups and scopes.

use crate::config::{ConfigError, SpiffeConfig};

use super::CertError;

/// Longest SPIFFE ID accepted (the SPIFFE spec's limit).
pub const MAX_SPIFFE_ID_BYTES: usize = 2048;

/// A syntactically valid SPIFFE ID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpiffeId {
    id: String,
    domain_end: usize,
}

impl SpiffeId {
    /// Parses a SPIFFE ID as the SPIFFE standard defines it: lower-case
    /// `spiffe` scheme, a trust domain of `[a-z0-9._-]`, path segments of
    /// `[A-Za-z0-9._-]` that are neither empty nor `.`/`..`, and no query,
    /// fragment, port or user info.
    pub fn parse(text: &str) -> Option<SpiffeId> {
        if text.len() > MAX_SPIFFE_ID_BYTES {
            return None;
        }
        let rest = text.strip_prefix("spiffe://")?;
        let (domain, path) = rest.split_once('/').unwrap_or((rest, ""));
        let domain_ok = !domain.is_empty()
            && domain
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
        let path_ok = (path.is_empty() && !rest.ends_with('/'))
            || path.split('/').all(|segment| {
                !segment.is_empty()
                    && segment != "."
                    && segment != ".."
                    && segment
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
            });
        (domain_ok && path_ok).then(|| SpiffeId {
            id: text.to_string(),
            domain_end: "spiffe://".len() + domain.len(),
        })
    }

    /// The whole ID.
    pub fn as_str(&self) -> &str {
        &self.id
    }

    /// The trust domain.
    pub fn trust_domain(&self) -> &str {
        &self.id["spiffe://".len()..self.domain_end]
    }
}

/// How one SPIFFE mapping matches.
#[derive(Debug, Clone)]
enum Matcher {
    Exact(String),
    /// At a segment boundary: `spiffe://td/ns/a` matches itself and
    /// `spiffe://td/ns/a/…`, never `spiffe://td/ns/ab`.
    Prefix(String),
}

#[derive(Debug, Clone)]
struct Mapping {
    matcher: Matcher,
    user: Option<String>,
    groups: Vec<String>,
    scopes: Vec<String>,
}

/// What the mappings say about one SPIFFE ID.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Mapped {
    /// The principal (user name), if a matching mapping names one.
    pub user: Option<String>,
    /// Groups from every matching mapping.
    pub groups: Vec<String>,
    /// Scopes from every matching mapping.
    pub scopes: Vec<String>,
}

/// Compiled SPIFFE settings.
#[derive(Debug, Clone, Default)]
pub struct SpiffeMap {
    trust_domains: Vec<String>,
    require_mapping: bool,
    mappings: Vec<Mapping>,
}

impl SpiffeMap {
    /// Validates `config`; `key` names it in errors.
    pub fn compile(config: &SpiffeConfig, key: &str) -> Result<Self, ConfigError> {
        for (i, td) in config.trust_domains.iter().enumerate() {
            if SpiffeId::parse(&format!("spiffe://{td}")).is_none() {
                return Err(ConfigError::invalid(
                    format!("{key}.trust_domains[{i}]"),
                    format!("{td:?} is not a SPIFFE trust domain (lower-case [a-z0-9._-])"),
                ));
            }
        }
        let mut mappings = Vec::with_capacity(config.principals.len());
        for (i, m) in config.principals.iter().enumerate() {
            let at = format!("{key}.principals[{i}]");
            let matcher = match (&m.id, &m.prefix) {
                (Some(id), None) => Matcher::Exact(valid_id(id, &format!("{at}.id"))?),
                (None, Some(prefix)) => {
                    let check = prefix.strip_suffix('/').unwrap_or(prefix);
                    valid_id(check, &format!("{at}.prefix"))?;
                    Matcher::Prefix(prefix.clone())
                }
                _ => {
                    return Err(ConfigError::invalid(
                        at,
                        "give exactly one of `id` and `prefix`",
                    ));
                }
            };
            if m.user.as_deref().is_some_and(str::is_empty)
                || m.groups.iter().any(String::is_empty)
                || m.scopes
                    .iter()
                    .any(|s| s.is_empty() || s.contains(char::is_whitespace))
            {
                return Err(ConfigError::invalid(
                    at,
                    "user, groups and scopes must be non-empty (scopes without spaces)",
                ));
            }
            mappings.push(Mapping {
                matcher,
                user: m.user.clone(),
                groups: m.groups.clone(),
                scopes: m.scopes.clone(),
            });
        }
        Ok(SpiffeMap {
            trust_domains: config.trust_domains.clone(),
            require_mapping: config.require_mapping,
            mappings,
        })
    }

    /// Checks the trust domain and applies the mappings.
    pub fn map(&self, id: &SpiffeId) -> Result<Mapped, CertError> {
        if !self.trust_domains.is_empty()
            && !self.trust_domains.iter().any(|td| td == id.trust_domain())
        {
            return Err(CertError::UntrustedDomain);
        }
        let mut out = Mapped::default();
        let mut matched = false;
        for m in &self.mappings {
            let hit = match &m.matcher {
                Matcher::Exact(exact) => exact == id.as_str(),
                Matcher::Prefix(prefix) => {
                    id.as_str()
                        .strip_prefix(prefix.as_str())
                        .is_some_and(|rest| {
                            prefix.ends_with('/') || rest.is_empty() || rest.starts_with('/')
                        })
                }
            };
            if !hit {
                continue;
            }
            matched = true;
            if out.user.is_none() {
                out.user.clone_from(&m.user);
            }
            extend_unique(&mut out.groups, &m.groups);
            extend_unique(&mut out.scopes, &m.scopes);
        }
        if !matched && self.require_mapping {
            return Err(CertError::Unmapped);
        }
        Ok(out)
    }
}

fn valid_id(id: &str, key: &str) -> Result<String, ConfigError> {
    SpiffeId::parse(id)
        .map(|s| s.as_str().to_string())
        .ok_or_else(|| ConfigError::invalid(key, format!("{id:?} is not a valid SPIFFE ID")))
}

/// Appends the items of `more` not already in `list`, keeping order.
pub(crate) fn extend_unique(list: &mut Vec<String>, more: &[String]) {
    for item in more {
        if !list.contains(item) {
            list.push(item.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SpiffeMappingConfig;

    #[test]
    fn parses_valid_ids_only() {
        let id = SpiffeId::parse("spiffe://cluster.local/ns/tools/sa/alice").expect("valid");
        assert_eq!(id.trust_domain(), "cluster.local");
        assert!(SpiffeId::parse("spiffe://example.org").is_some());
        for bad in [
            "",
            "spiffe://",
            "spiffe:///ns",
            "SPIFFE://cluster.local/ns",
            "spiffe://Cluster.local/ns",
            "spiffe://cluster.local/",
            "spiffe://cluster.local//x",
            "spiffe://cluster.local/ns/../x",
            "spiffe://cluster.local/ns/./x",
            "spiffe://cluster.local/ns?x=1",
            "spiffe://cluster.local/ns#f",
            "spiffe://user@cluster.local/ns",
            "spiffe://cluster.local:8443/ns",
            "spiffe://cluster.local/n s",
            "https://cluster.local/ns",
        ] {
            assert!(SpiffeId::parse(bad).is_none(), "{bad:?}");
        }
        let long = format!("spiffe://td/{}", "a".repeat(MAX_SPIFFE_ID_BYTES));
        assert!(SpiffeId::parse(&long).is_none());
    }

    fn mapping(id: Option<&str>, prefix: Option<&str>, user: Option<&str>) -> SpiffeMappingConfig {
        SpiffeMappingConfig {
            id: id.map(Into::into),
            prefix: prefix.map(Into::into),
            user: user.map(Into::into),
            groups: vec!["g".into()],
            scopes: vec!["s".into()],
        }
    }

    fn map(config: SpiffeConfig, id: &str) -> Result<Mapped, CertError> {
        let map = SpiffeMap::compile(&config, "k").expect("valid config");
        map.map(&SpiffeId::parse(id).expect("valid id"))
    }

    #[test]
    fn exact_and_prefix_mappings() {
        let config = SpiffeConfig {
            trust_domains: vec!["cluster.local".into()],
            require_mapping: true,
            principals: vec![
                mapping(
                    Some("spiffe://cluster.local/ns/a/sa/api"),
                    None,
                    Some("api"),
                ),
                mapping(None, Some("spiffe://cluster.local/ns/a"), Some("ns-a")),
            ],
        };
        let m = map(config.clone(), "spiffe://cluster.local/ns/a/sa/api").expect("mapped");
        assert_eq!(m.user.as_deref(), Some("api"));
        assert_eq!(m.groups, vec!["g"]);
        let m = map(config.clone(), "spiffe://cluster.local/ns/a/sa/other").expect("mapped");
        assert_eq!(m.user.as_deref(), Some("ns-a"));
        assert_eq!(
            map(config.clone(), "spiffe://cluster.local/ns/ab/sa/x"),
            Err(CertError::Unmapped)
        );
        assert_eq!(
            map(config, "spiffe://evil.example/ns/a/sa/api"),
            Err(CertError::UntrustedDomain)
        );
    }

    #[test]
    fn unmapped_ids_pass_unless_a_mapping_is_required() {
        let m = map(SpiffeConfig::default(), "spiffe://any.td/x").expect("no mapping needed");
        assert_eq!(m, Mapped::default());
    }

    #[test]
    fn bad_config_names_the_key() {
        let bad = [
            SpiffeConfig {
                trust_domains: vec!["Bad Domain".into()],
                ..SpiffeConfig::default()
            },
            SpiffeConfig {
                principals: vec![mapping(Some("spiffe://a/x"), Some("spiffe://a"), None)],
                ..SpiffeConfig::default()
            },
            SpiffeConfig {
                principals: vec![mapping(None, None, None)],
                ..SpiffeConfig::default()
            },
            SpiffeConfig {
                principals: vec![mapping(Some("https://a/x"), None, None)],
                ..SpiffeConfig::default()
            },
            SpiffeConfig {
                principals: vec![mapping(Some("spiffe://a/x"), None, Some(""))],
                ..SpiffeConfig::default()
            },
        ];
        for config in bad {
            let err = SpiffeMap::compile(&config, "certificates.spiffe")
                .expect_err("invalid")
                .to_string();
            assert!(err.contains("certificates.spiffe"), "{err}");
        }
    }
}
