//! Signing: the string-to-sign of a service SAS and of an account SAS, HMAC-SHA256 with
//! the account key, and the resulting token.
//!
//! Service SAS string-to-sign (Azure "Create a service SAS"), fields joined by `\n`:
//! - 2015-04-05 ..: sp, st, se, canonicalizedResource, si, sip, spr, sv,
//!   rscc, rscd, rsce, rscl, rsct
//! - 2018-11-09 ..: as above with sr and snapshotTime after sv
//! - 2020-12-06 ..: as above with ses after snapshotTime
//!
//! Account SAS: account, sp, ss, srt, st, se, sip, spr, sv (and from 2020-12-06 ses),
//! each followed by `\n`.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use time::OffsetDateTime;

use super::dates::{format_sas_date, is_version};
pub use super::params::{AccountSasParams, ServiceSasParams};
use super::permissions::{Permissions, ResourceTypes, Services};
use super::token::encode_component;
use super::{SasError, MIN_VERSION};

fn opt(s: &Option<String>) -> &str {
    s.as_deref().unwrap_or("")
}

fn date(t: Option<OffsetDateTime>) -> String {
    t.map(format_sas_date).unwrap_or_default()
}

/// The string a service SAS signs, for the layout of `p.version`.
pub fn string_to_sign_service(p: &ServiceSasParams) -> String {
    let v = p.version.as_str();
    let (sp, st, se, resource) = (
        p.sp(),
        date(p.start),
        date(p.expiry),
        p.canonicalized_resource(),
    );
    let mut fields: Vec<&str> = vec![
        &sp,
        &st,
        &se,
        &resource,
        opt(&p.identifier),
        opt(&p.ip),
        opt(&p.protocol),
        v,
    ];
    if v >= "2018-11-09" {
        fields.push(p.signed_resource());
        fields.push(opt(&p.snapshot_time));
    }
    if v >= "2020-12-06" {
        fields.push(opt(&p.encryption_scope));
    }
    fields.extend(p.headers().iter().map(|(_, h)| opt(h)));
    fields.join("\n")
}

/// The string an account SAS signs, for the layout of `p.version`.
pub fn string_to_sign_account(p: &AccountSasParams) -> String {
    let sp = Permissions::parse_account(&p.permissions)
        .map(|x| x.letters())
        .unwrap_or_else(|_| p.permissions.clone());
    let ss = Services::parse(&p.services)
        .map(|s| s.letters().to_string())
        .unwrap_or_else(|_| p.services.clone());
    let srt = ResourceTypes::parse(&p.resource_types)
        .map(|s| s.letters().to_string())
        .unwrap_or_else(|_| p.resource_types.clone());
    let (st, se) = (date(p.start), date(p.expiry));
    let mut fields: Vec<&str> = vec![
        &p.account,
        &sp,
        &ss,
        &srt,
        &st,
        &se,
        opt(&p.ip),
        opt(&p.protocol),
        &p.version,
    ];
    if p.version.as_str() >= "2020-12-06" {
        fields.push(opt(&p.encryption_scope));
    }
    let mut s = fields.join("\n");
    s.push('\n');
    s
}

/// Decodes a base64 account key; errors never quote it.
fn decode_key(key_b64: &str) -> Result<Vec<u8>, SasError> {
    let key = STANDARD
        .decode(key_b64.trim())
        .map_err(|_| SasError::BadKey("it is not valid base64"))?;
    if key.is_empty() {
        return Err(SasError::BadKey("it is empty"));
    }
    Ok(key)
}

/// Base64 of HMAC-SHA256(key, message).
fn hmac_b64(key: &[u8], message: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(message.as_bytes());
    STANDARD.encode(mac.finalize().into_bytes())
}

fn check_version(v: &str) -> Result<(), SasError> {
    if !is_version(v) {
        return Err(SasError::Version(v.into(), "expected a date, YYYY-MM-DD"));
    }
    if v < MIN_VERSION {
        return Err(SasError::Version(
            v.into(),
            "versions before 2015-04-05 sign differently and are not supported",
        ));
    }
    Ok(())
}

fn check_common(
    start: Option<OffsetDateTime>,
    expiry: Option<OffsetDateTime>,
    protocol: &Option<String>,
    encryption_scope: &Option<String>,
    version: &str,
) -> Result<(), SasError> {
    check_version(version)?;
    if let (Some(st), Some(se)) = (start, expiry) {
        if se <= st {
            return Err(SasError::Invalid(format!(
                "expiry {} is not after start {}",
                format_sas_date(se),
                format_sas_date(st)
            )));
        }
    }
    if let Some(spr) = protocol {
        if spr != "https" && spr != "https,http" {
            return Err(SasError::Invalid(format!(
                "protocol {spr:?} must be \"https\" or \"https,http\""
            )));
        }
    }
    if encryption_scope.is_some() && version < "2020-12-06" {
        return Err(SasError::Invalid(
            "an encryption scope needs version 2020-12-06 or later".into(),
        ));
    }
    Ok(())
}

/// Joins (name, value) pairs into a query, encoding each; `sig` goes last.
fn token(pairs: &[(&str, &str)], sig: &str) -> String {
    pairs
        .iter()
        .chain(std::iter::once(&("sig", sig)))
        .map(|(n, v)| format!("{}={}", encode_component(n), encode_component(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// Signs a service SAS with the account key and returns the token (no leading `?`), in the
/// order sv, st, se, sr, sp, sip, spr, si, ses, rscc..rsct, sig.
pub fn sign_service_sas(p: &ServiceSasParams, account_key_b64: &str) -> Result<String, SasError> {
    let perms = Permissions::parse(&p.permissions)?;
    check_common(
        p.start,
        p.expiry,
        &p.protocol,
        &p.encryption_scope,
        &p.version,
    )?;
    if p.account.is_empty() || p.container.is_empty() {
        return Err(SasError::Invalid(
            "the account and container must not be empty".into(),
        ));
    }
    if p.blob.as_deref() == Some("") {
        return Err(SasError::Invalid("the blob name must not be empty".into()));
    }
    if p.identifier.is_none() && (perms.is_empty() || p.expiry.is_none()) {
        return Err(SasError::Invalid(
            "permissions and an expiry are required unless a stored access policy (identifier) is given".into(),
        ));
    }
    if p.snapshot_time.is_some() && (p.blob.is_none() || p.version.as_str() < "2018-11-09") {
        return Err(SasError::Invalid(
            "a snapshot SAS needs a blob and version 2018-11-09 or later".into(),
        ));
    }
    let key = decode_key(account_key_b64)?;
    let sig = hmac_b64(&key, &string_to_sign_service(p));

    let (sp, st, se) = (perms.letters(), date(p.start), date(p.expiry));
    let mut pairs: Vec<(&str, &str)> = vec![("sv", &p.version)];
    if p.start.is_some() {
        pairs.push(("st", &st));
    }
    if p.expiry.is_some() {
        pairs.push(("se", &se));
    }
    pairs.push(("sr", p.signed_resource()));
    if !sp.is_empty() {
        pairs.push(("sp", &sp));
    }
    for (name, value) in [
        ("sip", &p.ip),
        ("spr", &p.protocol),
        ("si", &p.identifier),
        ("ses", &p.encryption_scope),
    ]
    .into_iter()
    .chain(p.headers())
    {
        if let Some(v) = value {
            pairs.push((name, v));
        }
    }
    Ok(token(&pairs, &sig))
}

/// Signs an account SAS with the account key and returns the token (no leading `?`), in
/// the order sv, ss, srt, sp, st, se, sip, spr, ses, sig.
pub fn sign_account_sas(p: &AccountSasParams, account_key_b64: &str) -> Result<String, SasError> {
    let perms = Permissions::parse_account(&p.permissions)?;
    let services = Services::parse(&p.services)?;
    let types = ResourceTypes::parse(&p.resource_types)?;
    check_common(
        p.start,
        p.expiry,
        &p.protocol,
        &p.encryption_scope,
        &p.version,
    )?;
    if p.account.is_empty() {
        return Err(SasError::Invalid("the account must not be empty".into()));
    }
    if perms.is_empty() || services.letters().is_empty() || types.letters().is_empty() {
        return Err(SasError::Invalid(
            "an account SAS needs permissions, services and resource types".into(),
        ));
    }
    if p.expiry.is_none() {
        return Err(SasError::Invalid("an account SAS needs an expiry".into()));
    }
    let key = decode_key(account_key_b64)?;
    let sig = hmac_b64(&key, &string_to_sign_account(p));

    let (sp, st, se) = (perms.letters(), date(p.start), date(p.expiry));
    let mut pairs: Vec<(&str, &str)> = vec![
        ("sv", &p.version),
        ("ss", services.letters()),
        ("srt", types.letters()),
        ("sp", &sp),
    ];
    if p.start.is_some() {
        pairs.push(("st", &st));
    }
    pairs.push(("se", &se));
    for (name, value) in [
        ("sip", &p.ip),
        ("spr", &p.protocol),
        ("ses", &p.encryption_scope),
    ] {
        if let Some(v) = value {
            pairs.push((name, v));
        }
    }
    Ok(token(&pairs, &sig))
}

#[cfg(test)]
#[path = "sign_tests.rs"]
mod tests;
