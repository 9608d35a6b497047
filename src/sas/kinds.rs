//! The kinds of SAS, what they grant access to, and the parameters we know.

use super::permissions::{ResourceTypes, Services};

/// Every parameter this module understands; anything else is "unknown" (kept, shown).
pub const KNOWN_PARAMS: &[&str] = &[
    "sv", "st", "se", "sr", "sp", "sip", "spr", "si", "ss", "srt", "ses", "rscc", "rscd", "rsce",
    "rscl", "rsct", "sdd", "skoid", "sktid", "skt", "ske", "sks", "skv", "saoid", "suoid", "scid",
    "sdtid", "sduoid", "srh", "srq", "sig",
];

/// Response-header overrides: parameter and the header it sets.
pub const RESPONSE_HEADER_PARAMS: &[(&str, &str)] = &[
    ("rscc", "Cache-Control"),
    ("rscd", "Content-Disposition"),
    ("rsce", "Content-Encoding"),
    ("rscl", "Content-Language"),
    ("rsct", "Content-Type"),
];

/// User delegation parameters and what they are.
pub const DELEGATION_PARAMS: &[(&str, &str)] = &[
    ("skoid", "signing key object id"),
    ("sktid", "signing key tenant id"),
    ("skt", "signing key start"),
    ("ske", "signing key expiry"),
    ("sks", "signing key service"),
    ("skv", "signing key version"),
    ("saoid", "authorized object id"),
    ("suoid", "unauthorized object id"),
    ("scid", "correlation id"),
    ("sdtid", "delegated user tenant id"),
    ("sduoid", "delegated user object id"),
    ("srh", "signed request headers"),
    ("srq", "signed request query parameters"),
];

/// What a service or user delegation SAS grants access to (`sr`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SignedResource {
    /// `c`: a container and the blobs in it.
    Container,
    /// `b`: one blob.
    Blob,
    /// `bv`: one blob version.
    BlobVersion,
    /// `bs`: one blob snapshot.
    BlobSnapshot,
    /// `d`: a directory (hierarchical namespace), to the depth given by `sdd`.
    Directory,
    /// Anything else, e.g. `s`/`f` of the file service.
    Other(String),
}

impl SignedResource {
    /// Reads an `sr` value.
    pub fn parse(sr: &str) -> SignedResource {
        match sr {
            "c" => SignedResource::Container,
            "b" => SignedResource::Blob,
            "bv" => SignedResource::BlobVersion,
            "bs" => SignedResource::BlobSnapshot,
            "d" => SignedResource::Directory,
            other => SignedResource::Other(other.to_string()),
        }
    }
    /// The `sr` value.
    pub fn code(&self) -> &str {
        match self {
            SignedResource::Container => "c",
            SignedResource::Blob => "b",
            SignedResource::BlobVersion => "bv",
            SignedResource::BlobSnapshot => "bs",
            SignedResource::Directory => "d",
            SignedResource::Other(s) => s,
        }
    }
    /// Spelled out: "container", "blob", "blob version", "blob snapshot", "directory".
    pub fn describe(&self) -> &str {
        match self {
            SignedResource::Container => "container",
            SignedResource::Blob => "blob",
            SignedResource::BlobVersion => "blob version",
            SignedResource::BlobSnapshot => "blob snapshot",
            SignedResource::Directory => "directory",
            SignedResource::Other(_) => "unknown resource",
        }
    }
}

/// The three kinds of SAS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SasKind {
    /// Signed with the account key, for one resource (`sr`).
    Service { resource: SignedResource },
    /// Signed with the account key, for whole services (`ss`) and resource types (`srt`).
    Account {
        services: Services,
        resource_types: ResourceTypes,
    },
    /// Signed with a user delegation key (has `skoid`), for one resource (`sr`).
    UserDelegation { resource: SignedResource },
}

impl SasKind {
    /// "service", "account" or "user delegation".
    pub fn describe(&self) -> &'static str {
        match self {
            SasKind::Service { .. } => "service",
            SasKind::Account { .. } => "account",
            SasKind::UserDelegation { .. } => "user delegation",
        }
    }
}
