//! Parsing a SAS token (or a URL carrying one) into its fields.
//!
//! Every parameter is kept, in its original order and with its decoded value, so that
//! [`SasToken::query`] re-encodes exactly what the issuer signed: the service verifies the
//! signature over the values in the token, so we never rewrite or reorder them.
//!
//! Values are percent-decoded but a `+` stays a `+`: SAS values are not form-encoded, and
//! an unencoded `+` in a pasted `sig` (base64) or `st` (UTC offset) is a plus, not a space.

use std::fmt;

use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use time::OffsetDateTime;

use super::dates::{format_sas_date, human_duration, is_version, parse_sas_date};
pub use super::kinds::{SasKind, SignedResource};
use super::kinds::{KNOWN_PARAMS, RESPONSE_HEADER_PARAMS};
use super::permissions::{PermissionScope, Permissions, ResourceTypes, Services};
use super::SasError;

/// What is percent-encoded in a query name or value: everything but RFC 3986 unreserved
/// characters, so `+`, `/`, `=`, `:`, `&` and spaces can never be misread by the service.
const QUERY_COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Encodes one query name or value.
pub(crate) fn encode_component(s: &str) -> String {
    utf8_percent_encode(s, QUERY_COMPONENT).to_string()
}

#[derive(Clone, PartialEq, Eq)]
struct Param {
    name: String,
    value: String,
    /// Written without `=` in the original (`&foo&`): written back the same way.
    bare: bool,
}

/// A parsed SAS token. `Debug` redacts the signature.
#[derive(Clone, PartialEq, Eq)]
pub struct SasToken {
    /// All parameters, original order, decoded values.
    params: Vec<Param>,
    version: String,
    start: Option<OffsetDateTime>,
    expiry: Option<OffsetDateTime>,
    kind: SasKind,
    permissions: Permissions,
    directory_depth: Option<u32>,
}

fn decode(s: &str) -> Option<String> {
    percent_decode_str(s)
        .decode_utf8()
        .ok()
        .map(|c| c.into_owned())
}

/// The raw query of a URL, or the token itself without a leading `?`.
fn raw_query(input: &str) -> Result<String, SasError> {
    let input = input.trim();
    if input.contains("://") {
        let url = url::Url::parse(input)
            .map_err(|e| SasError::Invalid(format!("not a valid URL ({e})")))?;
        return match url.query() {
            Some(q) if !q.is_empty() => Ok(q.to_string()),
            _ => Err(SasError::Invalid(
                "the URL has no query string, so no SAS token".into(),
            )),
        };
    }
    Ok(input.strip_prefix('?').unwrap_or(input).to_string())
}

fn date_param(params: &[Param], name: &'static str) -> Result<Option<OffsetDateTime>, SasError> {
    match params.iter().find(|p| p.name == name) {
        None => Ok(None),
        Some(p) => parse_sas_date(&p.value)
            .map(Some)
            .ok_or_else(|| SasError::BadDate {
                param: name,
                value: p.value.clone(),
            }),
    }
}

impl SasToken {
    /// Parses a bare token (`sv=..&sig=..`, with or without a leading `?`) or a full URL
    /// (its query). Errors name the problem in one line and never contain the signature.
    pub fn parse(token_or_url: &str) -> Result<SasToken, SasError> {
        let query = raw_query(token_or_url)?;
        let mut params: Vec<Param> = Vec::new();
        for piece in query.split('&').filter(|p| !p.is_empty()) {
            let (raw_name, raw_value, bare) = match piece.split_once('=') {
                Some((n, v)) => (n, v, false),
                None => (piece, "", true),
            };
            let name = decode(raw_name).ok_or_else(|| {
                SasError::Invalid("a parameter name is not valid UTF-8 once decoded".into())
            })?;
            if name.is_empty() {
                return Err(SasError::Invalid("a parameter has an empty name".into()));
            }
            let value = decode(raw_value).ok_or_else(|| {
                SasError::Invalid(format!(
                    "the value of `{name}` is not valid UTF-8 once decoded"
                ))
            })?;
            if params.iter().any(|p| p.name == name) {
                return Err(SasError::Duplicate(name));
            }
            params.push(Param { name, value, bare });
        }
        let get = |n: &str| {
            params
                .iter()
                .find(|p| p.name == n)
                .map(|p| p.value.as_str())
        };

        if get("sig").is_none_or(str::is_empty) {
            return Err(SasError::Missing("sig", "the signature"));
        }
        let version = match get("sv") {
            None | Some("") => return Err(SasError::Missing("sv", "the signed version")),
            Some(v) if !is_version(v) => {
                return Err(SasError::Version(v.into(), "expected a date, YYYY-MM-DD"))
            }
            Some(v) => v.to_string(),
        };
        let start = date_param(&params, "st")?;
        let expiry = date_param(&params, "se")?;
        date_param(&params, "skt")?;
        date_param(&params, "ske")?;

        let resource = || {
            get("sr")
                .map(SignedResource::parse)
                .ok_or(SasError::Missing("sr", "the signed resource, e.g. c or b"))
        };
        let (kind, scope) = if get("skoid").is_some() {
            let resource = resource()?;
            (
                SasKind::UserDelegation { resource },
                PermissionScope::Service,
            )
        } else if get("ss").is_some() || get("srt").is_some() {
            let services = get("ss").ok_or(SasError::Missing(
                "ss",
                "the services of an account SAS, e.g. b",
            ))?;
            let types = get("srt").ok_or(SasError::Missing(
                "srt",
                "the resource types of an account SAS, e.g. sco",
            ))?;
            let kind = SasKind::Account {
                services: Services::parse(services)?,
                resource_types: ResourceTypes::parse(types)?,
            };
            (kind, PermissionScope::Account)
        } else {
            let resource = resource()?;
            (SasKind::Service { resource }, PermissionScope::Service)
        };
        let permissions = Permissions::parse_scoped(get("sp").unwrap_or(""), scope)?;
        let directory_depth = match get("sdd") {
            None => None,
            Some(d) => Some(d.parse::<u32>().map_err(|_| {
                SasError::Invalid(format!(
                    "sdd={d:?} is not a directory depth (a whole number)"
                ))
            })?),
        };
        Ok(SasToken {
            params,
            version,
            start,
            expiry,
            kind,
            permissions,
            directory_depth,
        })
    }

    /// The decoded value of any parameter except `sig` (see [`SasToken::signature`]).
    pub fn get(&self, name: &str) -> Option<&str> {
        if name == "sig" {
            return None;
        }
        self.params
            .iter()
            .find(|p| p.name == name)
            .map(|p| p.value.as_str())
    }

    /// The signature itself (base64, decoded). A secret: never log or print it.
    pub fn signature(&self) -> &str {
        self.params
            .iter()
            .find(|p| p.name == "sig")
            .map(|p| p.value.as_str())
            .unwrap_or("")
    }

    /// `sv`.
    pub fn version(&self) -> Option<&str> {
        Some(&self.version)
    }
    /// `st`, in UTC.
    pub fn start(&self) -> Option<OffsetDateTime> {
        self.start
    }
    /// `se`, in UTC.
    pub fn expiry(&self) -> Option<OffsetDateTime> {
        self.expiry
    }
    /// Service, account or user delegation SAS.
    pub fn kind(&self) -> SasKind {
        self.kind.clone()
    }
    /// `sr` of a service or user delegation SAS.
    pub fn signed_resource(&self) -> Option<&SignedResource> {
        match &self.kind {
            SasKind::Service { resource } | SasKind::UserDelegation { resource } => Some(resource),
            SasKind::Account { .. } => None,
        }
    }
    /// `sp` (empty if absent, e.g. when a stored access policy holds the permissions).
    pub fn permissions(&self) -> Permissions {
        self.permissions
    }
    /// The permissions, when the token says them: None for a token of a stored access policy
    /// without `sp` (the policy on the container gives them, and only the service knows it).
    pub fn stated_permissions(&self) -> Option<Permissions> {
        let from_policy = self.policy_id().is_some() && self.get("sp").is_none_or(str::is_empty);
        (!from_policy).then_some(self.permissions)
    }
    /// `si`: the stored access policy.
    pub fn policy_id(&self) -> Option<&str> {
        self.get("si")
    }
    /// `sip`: the allowed IP address or range.
    pub fn ip_range(&self) -> Option<&str> {
        self.get("sip")
    }
    /// `spr`: `https` or `https,http`.
    pub fn protocol(&self) -> Option<&str> {
        self.get("spr")
    }
    /// `ses`: the encryption scope.
    pub fn encryption_scope(&self) -> Option<&str> {
        self.get("ses")
    }
    /// `sdd`: the depth of a directory SAS.
    pub fn directory_depth(&self) -> Option<u32> {
        self.directory_depth
    }
    /// Present response-header overrides as (header, value), e.g. ("Cache-Control", "no-cache").
    pub fn response_headers(&self) -> Vec<(&'static str, &str)> {
        RESPONSE_HEADER_PARAMS
            .iter()
            .filter_map(|(p, h)| self.get(p).map(|v| (*h, v)))
            .collect()
    }
    /// Parameters this module does not know, as (name, value), in token order.
    pub fn unknown_params(&self) -> Vec<(&str, &str)> {
        self.params
            .iter()
            .filter(|p| !KNOWN_PARAMS.contains(&p.name.as_str()))
            .map(|p| (p.name.as_str(), p.value.as_str()))
            .collect()
    }

    fn encoded(&self, redact: bool) -> String {
        self.params
            .iter()
            .map(|p| {
                let name = encode_component(&p.name);
                if redact && p.name.eq_ignore_ascii_case("sig") {
                    format!("{name}=REDACTED")
                } else if p.bare {
                    name
                } else {
                    format!("{name}={}", encode_component(&p.value))
                }
            })
            .collect::<Vec<_>>()
            .join("&")
    }

    /// The token to append after `?` in request URLs: every original parameter, in order,
    /// percent-encoded; no leading `?`.
    pub fn query(&self) -> String {
        self.encoded(false)
    }

    /// Like [`SasToken::query`] but with `sig=REDACTED`: safe to log.
    pub fn redacted(&self) -> String {
        self.encoded(true)
    }

    /// Why the token is not valid at `now`: "expired at ...Z (3h ago)" or
    /// "not valid until ...Z (in 5m)"; `None` if it is (as far as its dates tell).
    pub fn validity_problem(&self, now: OffsetDateTime) -> Option<String> {
        if let Some(se) = self.expiry {
            if now >= se {
                return Some(format!(
                    "expired at {} ({} ago)",
                    format_sas_date(se),
                    human_duration(now - se)
                ));
            }
        }
        if let Some(st) = self.start {
            if now < st {
                return Some(format!(
                    "not valid until {} (in {})",
                    format_sas_date(st),
                    human_duration(st - now)
                ));
            }
        }
        None
    }
}

impl fmt::Debug for SasToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SasToken")
            .field("kind", &self.kind)
            .field("version", &self.version)
            .field("start", &self.start)
            .field("expiry", &self.expiry)
            .field("permissions", &self.permissions)
            .field("query", &self.redacted())
            .finish()
    }
}

#[cfg(test)]
#[path = "token_tests.rs"]
mod tests;
