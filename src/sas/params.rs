//! The inputs of signing: [`ServiceSasParams`] and [`AccountSasParams`].

use time::OffsetDateTime;

use super::permissions::Permissions;
use super::DEFAULT_VERSION;

/// Everything that goes into a service SAS for a container (`sr=c`) or a blob (`sr=b`,
/// or `sr=bs` with a snapshot time).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceSasParams {
    pub account: String,
    pub container: String,
    /// The blob name, unencoded (`dir one/a.txt`); `None` for a container SAS.
    pub blob: Option<String>,
    /// Permission letters as given; normalised (`lr` -> `rl`) when signing.
    pub permissions: String,
    pub start: Option<OffsetDateTime>,
    pub expiry: Option<OffsetDateTime>,
    /// `sip`: an address or range `a.b.c.d-e.f.g.h`.
    pub ip: Option<String>,
    /// `spr`: `https` or `https,http`.
    pub protocol: Option<String>,
    /// `si`: a stored access policy on the container.
    pub identifier: Option<String>,
    /// `sv`.
    pub version: String,
    /// For a blob snapshot SAS (`sr=bs`): the snapshot's time, as in its `snapshot=` query.
    /// Signed but not put in the token (the request carries `snapshot=` itself).
    pub snapshot_time: Option<String>,
    /// `ses` (2020-12-06 and later).
    pub encryption_scope: Option<String>,
    pub cache_control: Option<String>,
    pub content_disposition: Option<String>,
    pub content_encoding: Option<String>,
    pub content_language: Option<String>,
    pub content_type: Option<String>,
}

impl Default for ServiceSasParams {
    fn default() -> Self {
        ServiceSasParams {
            account: String::new(),
            container: String::new(),
            blob: None,
            permissions: String::new(),
            start: None,
            expiry: None,
            ip: None,
            protocol: None,
            identifier: None,
            version: DEFAULT_VERSION.to_string(),
            snapshot_time: None,
            encryption_scope: None,
            cache_control: None,
            content_disposition: None,
            content_encoding: None,
            content_language: None,
            content_type: None,
        }
    }
}

impl ServiceSasParams {
    /// A container SAS with the default version; set `blob` and others as needed.
    pub fn new(account: &str, container: &str, permissions: &str, expiry: OffsetDateTime) -> Self {
        ServiceSasParams {
            account: account.into(),
            container: container.into(),
            permissions: permissions.into(),
            expiry: Some(expiry),
            ..Default::default()
        }
    }

    /// `sr`: `c`, `b`, or `bs` for a snapshot.
    pub fn signed_resource(&self) -> &'static str {
        match (&self.blob, &self.snapshot_time) {
            (None, _) => "c",
            (Some(_), None) => "b",
            (Some(_), Some(_)) => "bs",
        }
    }

    /// `/blob/account/container[/blob]`, unencoded.
    pub fn canonicalized_resource(&self) -> String {
        let mut r = format!("/blob/{}/{}", self.account, self.container);
        if let Some(b) = &self.blob {
            r.push('/');
            r.push_str(b);
        }
        r
    }

    /// The permissions normalised when valid, else as given (signing rejects them then).
    pub(super) fn sp(&self) -> String {
        Permissions::parse(&self.permissions)
            .map(|p| p.letters())
            .unwrap_or_else(|_| self.permissions.clone())
    }

    pub(super) fn headers(&self) -> [(&'static str, &Option<String>); 5] {
        [
            ("rscc", &self.cache_control),
            ("rscd", &self.content_disposition),
            ("rsce", &self.content_encoding),
            ("rscl", &self.content_language),
            ("rsct", &self.content_type),
        ]
    }
}

/// Everything that goes into an account SAS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountSasParams {
    pub account: String,
    /// `ss`, e.g. `b`.
    pub services: String,
    /// `srt`, e.g. `sco`.
    pub resource_types: String,
    /// `sp`, e.g. `rwdlacup`; normalised when signing.
    pub permissions: String,
    pub start: Option<OffsetDateTime>,
    /// Required: an account SAS cannot use a stored access policy.
    pub expiry: Option<OffsetDateTime>,
    pub ip: Option<String>,
    pub protocol: Option<String>,
    pub version: String,
    /// `ses` (2020-12-06 and later).
    pub encryption_scope: Option<String>,
}

impl Default for AccountSasParams {
    fn default() -> Self {
        AccountSasParams {
            account: String::new(),
            services: "b".into(),
            resource_types: String::new(),
            permissions: String::new(),
            start: None,
            expiry: None,
            ip: None,
            protocol: None,
            version: DEFAULT_VERSION.to_string(),
            encryption_scope: None,
        }
    }
}
