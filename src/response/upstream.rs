//! Upstream header mutations beyond `X-Auth-Request-*`: extra identity
//! headers under configured names (e.g. `X-Toolforge-User`), and client
//! headers that must not reach the upstream (an XFCC header that was not
//! believed, the act-as header). Every client-supplied copy of an extra
//! header is removed or overwritten, on every allowed request.

use crate::authz::tool::ToolPolicy;
use crate::config::{ConfigError, IdentityHeader, IdentityHeadersConfig, header_name};
use crate::model::identity::Identity;
use crate::model::request::Request;
use crate::model::requirement::{Access, Requirement};
use crate::proto::auth::CheckResponse;
use crate::proto::auth::check_response::HttpResponse;

/// Compiled extra headers and headers to strip.
#[derive(Debug, Clone, Default)]
pub struct UpstreamHeaders {
    /// (lower-case name, field).
    extra: Vec<(String, IdentityHeader)>,
    /// Lower-case names removed from the client's request when present.
    strip: Vec<String>,
}

impl UpstreamHeaders {
    /// Validates `identity_headers`; the tool policy's act-as header is
    /// stripped upstream (the tool gatehouse settled on is the one sent).
    pub fn compile(
        config: &IdentityHeadersConfig,
        tools: &ToolPolicy,
    ) -> Result<Self, ConfigError> {
        let mut extra: Vec<(String, IdentityHeader)> = Vec::with_capacity(config.extra.len());
        for (i, h) in config.extra.iter().enumerate() {
            let key = format!("identity_headers.extra[{i}].name");
            let name = header_name(&h.name, &key)?;
            if name.starts_with(super::IDENTITY_HEADER_PREFIX) {
                return Err(ConfigError::invalid(
                    key,
                    format!(
                        "{} is gatehouse's own prefix",
                        super::IDENTITY_HEADER_PREFIX
                    ),
                ));
            }
            if extra.iter().any(|(n, _)| *n == name) {
                return Err(ConfigError::invalid(
                    key,
                    format!("{} is listed twice", h.name),
                ));
            }
            extra.push((name, h.from));
        }
        let strip = tools
            .act_as_header()
            .filter(|h| !extra.iter().any(|(n, _)| n == h))
            .map(str::to_string)
            .into_iter()
            .collect();
        Ok(UpstreamHeaders { extra, strip })
    }

    /// Adds the extra headers and removals to an allow response.
    /// `strip_xfcc`: the request's XFCC header was not believed.
    pub fn apply(
        &self,
        response: &mut CheckResponse,
        request: &Request,
        requirement: &Requirement,
        identity: Option<&Identity>,
        strip_xfcc: bool,
    ) {
        let Some(HttpResponse::OkResponse(ok)) = &mut response.http_response else {
            return;
        };
        for (name, field) in &self.extra {
            let value = requirement
                .headers
                .contains(field)
                .then(|| value(*field, request, requirement, identity))
                .flatten()
                .filter(|v| super::header_value_is_safe(v));
            match value {
                Some(v) => ok.headers.push(super::overwrite(name, v)),
                None if request.headers.contains_key(name) => {
                    ok.headers_to_remove.push(name.clone());
                }
                None => {}
            }
        }
        let xfcc = strip_xfcc.then_some(crate::authn::cert::XFCC_HEADER);
        for name in self.strip.iter().map(String::as_str).chain(xfcc) {
            if request.headers.contains_key(name) && !ok.headers_to_remove.iter().any(|n| n == name)
            {
                ok.headers_to_remove.push(name.to_string());
            }
        }
    }
}

/// The value of one identity field, as the matching `X-Auth-Request-*`
/// header carries it.
fn value(
    field: IdentityHeader,
    request: &Request,
    requirement: &Requirement,
    identity: Option<&Identity>,
) -> Option<String> {
    if field == IdentityHeader::ClientIp {
        return request.client_ip.map(|ip| ip.to_string());
    }
    let id = identity?;
    match field {
        IdentityHeader::User => Some(id.username.clone().unwrap_or_else(|| id.subject.clone())),
        IdentityHeader::Email => id.email.clone(),
        IdentityHeader::Uid => id.uid.clone(),
        IdentityHeader::Groups => (!id.groups.is_empty()).then(|| id.groups.join(",")),
        IdentityHeader::Scopes => matches!(requirement.access, Access::Authenticated { .. })
            .then(|| id.scopes.iter().cloned().collect::<Vec<_>>().join(" ")),
        IdentityHeader::Token => Some(id.token.expose().to_string()).filter(|t| !t.is_empty()),
        IdentityHeader::Tool => id.tool.clone(),
        IdentityHeader::ClientIp => None,
    }
}
