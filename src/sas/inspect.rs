//! Describing a SAS token for people (`blobmount sas inspect`) and for scripts (`--json`).
//! The signature is never shown: both say `<redacted>`.

use serde_json::{json, Map, Value};
use time::OffsetDateTime;

use super::dates::{format_sas_date, human_duration};
use super::kinds::DELEGATION_PARAMS;
use super::{Permissions, SasKind, SasToken};

/// What a SAS URL points to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlTarget {
    /// `https://acct.blob.core.windows.net`, or path-style `http://127.0.0.1:10000/devstoreaccount1`.
    pub account_url: String,
    /// The account name, when the URL tells it.
    pub account: Option<String>,
    pub container: Option<String>,
    /// The blob name, decoded (`dir one/a.txt`).
    pub blob: Option<String>,
}

impl UrlTarget {
    /// The account URL, container and blob of a URL; `None` if `input` is not a URL.
    /// Hosts that are IP addresses or have no dot (`localhost`, `azurite`) are path-style
    /// (the first path segment is the account, as with Azurite).
    pub fn from_input(input: &str) -> Option<UrlTarget> {
        let input = input.trim();
        if !input.contains("://") {
            return None;
        }
        let url = url::Url::parse(input).ok()?;
        let host = url.host_str()?.to_string();
        let mut segments: Vec<String> = url
            .path_segments()
            .map(|s| {
                s.filter(|seg| !seg.is_empty())
                    .map(|seg| {
                        percent_encoding::percent_decode_str(seg)
                            .decode_utf8_lossy()
                            .into_owned()
                    })
                    .collect()
            })
            .unwrap_or_default();
        let path_style = matches!(url.host(), Some(url::Host::Ipv4(_) | url::Host::Ipv6(_)))
            || !host.contains('.');
        let origin = url.origin().ascii_serialization();
        let (account_url, account) = if path_style && !segments.is_empty() {
            let account = segments.remove(0);
            (format!("{origin}/{account}"), Some(account))
        } else if host.contains(".blob.") {
            let account = host.split('.').next().map(str::to_string);
            (origin, account)
        } else {
            (origin, None)
        };
        let mut rest = segments.into_iter();
        let container = rest.next();
        let blob = Some(rest.collect::<Vec<_>>().join("/")).filter(|b| !b.is_empty());
        Some(UrlTarget {
            account_url,
            account,
            container,
            blob,
        })
    }
}

/// Where the token stands in time at `now`.
enum Status {
    Valid { left: Option<time::Duration> },
    Expired { ago: time::Duration },
    NotYetValid { in_: time::Duration },
}

fn status(t: &SasToken, now: OffsetDateTime) -> Status {
    match (t.start(), t.expiry()) {
        (_, Some(se)) if now >= se => Status::Expired { ago: now - se },
        (Some(st), _) if now < st => Status::NotYetValid { in_: st - now },
        (_, se) => Status::Valid {
            left: se.map(|se| se - now),
        },
    }
}

fn perms_line(p: &Permissions, policy: Option<&str>) -> String {
    if p.is_empty() {
        return match policy {
            Some(_) => "(none in the token: set by the stored access policy)".into(),
            None => "(none)".into(),
        };
    }
    format!("{}  ({})", p.letters(), p.describe().join(", "))
}

fn redact_unknown<'a>(name: &str, value: &'a str) -> &'a str {
    if name.eq_ignore_ascii_case("sig") {
        "<redacted>"
    } else {
        value
    }
}

/// A description for people, one `label: value` per line.
pub fn inspect_human(t: &SasToken, target: Option<&UrlTarget>, now: OffsetDateTime) -> String {
    let mut lines: Vec<(String, String)> = Vec::new();
    let mut add = |k: &str, v: String| lines.push((k.to_string(), v));
    let kind = t.kind();
    add("kind", format!("{} SAS", kind.describe()));
    match &kind {
        SasKind::Service { resource } | SasKind::UserDelegation { resource } => add(
            "resource",
            format!("{} (sr={})", resource.describe(), resource.code()),
        ),
        SasKind::Account {
            services,
            resource_types,
        } => {
            add(
                "services",
                format!(
                    "{}  ({})",
                    services.letters(),
                    services.describe().join(", ")
                ),
            );
            add(
                "resource types",
                format!(
                    "{}  ({})",
                    resource_types.letters(),
                    resource_types.describe().join(", ")
                ),
            );
        }
    }
    if let Some(d) = t.directory_depth() {
        add("directory depth", d.to_string());
    }
    if let Some(u) = target {
        add("account url", u.account_url.clone());
        if let Some(a) = &u.account {
            add("account", a.clone());
        }
        if let Some(c) = &u.container {
            add("container", c.clone());
        }
        if let Some(b) = &u.blob {
            add("blob", b.clone());
        }
    }
    add("version", t.version().unwrap_or("").to_string());
    add("permissions", perms_line(&t.permissions(), t.policy_id()));
    let policy_note = || match t.policy_id() {
        Some(_) => "(none in the token: set by the stored access policy)".to_string(),
        None => "(none)".to_string(),
    };
    add(
        "start",
        t.start()
            .map(format_sas_date)
            .unwrap_or_else(|| "(none: valid from when it was issued)".into()),
    );
    let st = status(t, now);
    let expiry = match (t.expiry(), &st) {
        (None, _) => policy_note(),
        (Some(se), Status::Expired { ago }) => {
            format!(
                "{}  (EXPIRED {} ago)",
                format_sas_date(se),
                human_duration(*ago)
            )
        }
        (Some(se), Status::NotYetValid { in_ }) => format!(
            "{}  (not yet valid: starts in {})",
            format_sas_date(se),
            human_duration(*in_)
        ),
        (Some(se), Status::Valid { left }) => format!(
            "{}  (valid for {} more)",
            format_sas_date(se),
            human_duration(left.unwrap_or_default())
        ),
    };
    add("expiry", expiry);
    add("ip range", t.ip_range().unwrap_or("any").to_string());
    add(
        "protocol",
        t.protocol()
            .unwrap_or("https,http (not restricted)")
            .to_string(),
    );
    add("policy id", t.policy_id().unwrap_or("(none)").to_string());
    if let Some(s) = t.encryption_scope() {
        add("encryption scope", s.to_string());
    }
    for (header, value) in t.response_headers() {
        add("response header", format!("{header}: {value}"));
    }
    for (param, label) in DELEGATION_PARAMS {
        if let Some(v) = t.get(param) {
            add(label, format!("{v}  ({param})"));
        }
    }
    for (name, value) in t.unknown_params() {
        add(
            "unknown param",
            format!("{name}={}", redact_unknown(name, value)),
        );
    }
    add("sig", "<redacted>".into());

    let width = lines.iter().map(|(k, _)| k.len()).max().unwrap_or(0) + 1;
    let mut out = String::new();
    for (k, v) in lines {
        out.push_str(&format!("{:<width$} {v}\n", format!("{k}:")));
    }
    out
}

/// One JSON object for scripts. Stable snake_case names; absent values are `null`.
pub fn inspect_json(t: &SasToken, target: Option<&UrlTarget>, now: OffsetDateTime) -> Value {
    let kind = t.kind();
    let letters = |l: &str, names: Vec<&str>| json!({ "letters": l, "names": names });
    let (services, resource_types) = match &kind {
        SasKind::Account {
            services,
            resource_types,
        } => (
            letters(services.letters(), services.describe()),
            letters(resource_types.letters(), resource_types.describe()),
        ),
        _ => (Value::Null, Value::Null),
    };
    let resource = t.signed_resource();
    let st = status(t, now);
    let headers: Map<String, Value> = t
        .response_headers()
        .into_iter()
        .map(|(h, v)| (h.to_ascii_lowercase().replace('-', "_"), json!(v)))
        .collect();
    let delegation: Map<String, Value> = DELEGATION_PARAMS
        .iter()
        .filter_map(|(p, _)| t.get(p).map(|v| (p.to_string(), json!(v))))
        .collect();
    let unknown: Map<String, Value> = t
        .unknown_params()
        .into_iter()
        .map(|(n, v)| (n.to_string(), json!(redact_unknown(n, v))))
        .collect();
    let perms = t.permissions();
    json!({
        "kind": kind.describe().replace(' ', "_"),
        "resource": resource.map(|r| r.describe().replace(' ', "_")),
        "signed_resource": resource.map(|r| r.code()),
        "directory_depth": t.directory_depth(),
        "services": services,
        "resource_types": resource_types,
        "version": t.version(),
        "permissions": letters(&perms.letters(), perms.describe()),
        "start": t.start().map(format_sas_date),
        "expiry": t.expiry().map(format_sas_date),
        "expires_in_seconds": t.expiry().map(|se| (se - now).whole_seconds()),
        "expired": matches!(st, Status::Expired { .. }),
        "not_yet_valid": matches!(st, Status::NotYetValid { .. }),
        "valid_now": matches!(st, Status::Valid { .. }),
        "validity_problem": t.validity_problem(now),
        "ip_range": t.ip_range(),
        "protocol": t.protocol(),
        "policy_id": t.policy_id(),
        "encryption_scope": t.encryption_scope(),
        "response_headers": headers,
        "user_delegation": if delegation.is_empty() { Value::Null } else { Value::Object(delegation) },
        "unknown_params": unknown,
        "target": target.map(|u| json!({
            "account_url": u.account_url,
            "account": u.account,
            "container": u.container,
            "blob": u.blob,
        })),
        "signature": "<redacted>",
    })
}

#[cfg(test)]
#[path = "inspect_tests.rs"]
mod tests;
