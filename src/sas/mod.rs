//! SAS tokens: parsing, permissions, signing.
//!
//! - [`kinds`]: service / account / user delegation SAS, `sr`, and the known parameters.
//! - [`token`]: [`SasToken::parse`] of a bare token or a URL, with every parameter kept in
//!   order so that [`SasToken::query`] gives back exactly what the issuer signed.
//! - [`permissions`]: the `sp`, `ss` and `srt` letter sets, normalised to the service's order.
//! - [`params`]: the inputs of signing.
//! - [`sign`]: string-to-sign and HMAC-SHA256 for service SAS and account SAS.
//! - [`dates`]: the date formats Azure accepts in `st`/`se`, and the one it is given.
//! - [`inspect`]: human and JSON descriptions of a token (`blobmount sas inspect`).
//! - [`cli`]: the `blobmount sas` subcommands.
//!
//! The signature (`sig`) is a password. Nothing in this module prints it: `Debug` redacts
//! it, errors never quote it, and the inspector shows `<redacted>`. The only ways to get it
//! back are [`SasToken::query`] (to send requests) and [`SasToken::signature`].

pub mod cli;
pub mod dates;
pub mod inspect;
pub mod kinds;
pub mod params;
pub mod permissions;
pub mod sign;
pub mod token;

#[cfg(test)]
mod vectors_test;

pub use permissions::{PermissionScope, Permissions, ResourceTypes, Services};
pub use sign::{
    sign_account_sas, sign_service_sas, string_to_sign_account, string_to_sign_service,
    AccountSasParams, ServiceSasParams,
};
pub use token::{SasKind, SasToken, SignedResource};

/// The service version (`sv`) that generated tokens carry unless told otherwise.
///
/// 2026-06-06 is the newest version in Azurite 3.37.0's list of valid API versions (the
/// pinned emulator). Checked by hand against Azurite 3.37.0 (`--inMemoryPersistence
/// --skipApiVersionCheck --loose`, path-style `http://127.0.0.1:PORT/devstoreaccount1`):
/// an account SAS from [`sign_account_sas`] (`ss=b&srt=sco&sp=rwdlacup`) creates a
/// container (201) and puts a blob (201); a container SAS from [`sign_service_sas`]
/// (`sr=c&sp=rl`) lists it with `?restype=container&comp=list` (200); a blob SAS (`sr=b`,
/// with `st`, `sip`, `spr`, `rscc`, `rsct`) reads it (200, with the overridden headers).
/// Azurite's debug log showed the same strings-to-sign as ours. The same tokens signed with
/// a wrong key, or with `sp` altered after signing, or expired, are refused with 403 (Azurite
/// answers `AuthorizationFailure` for a bad SAS signature, where Azure says
/// `AuthenticationFailed`). Versions 2015-04-05, 2018-03-28, 2018-11-09, 2019-02-02,
/// 2020-10-02, 2020-12-06 and 2026-10-06 (newer than Azurite knows; it only compares
/// versions to pick the layout) passed the same checks.
pub const DEFAULT_VERSION: &str = "2026-06-06";

/// The oldest version whose service-SAS layout we know (and Azure still accepts for a
/// service SAS with `sr`): earlier tokens are refused rather than signed wrongly.
pub const MIN_VERSION: &str = "2015-04-05";

/// What can go wrong parsing or signing a SAS. No message ever contains the signature
/// (nor the account key).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SasError {
    /// A required parameter is absent.
    #[error("invalid SAS token: missing `{0}` ({1})")]
    Missing(&'static str, &'static str),
    /// A parameter appears twice.
    #[error("invalid SAS token: parameter `{0}` appears more than once")]
    Duplicate(String),
    /// A date parameter does not parse.
    #[error("invalid SAS token: {param}={value:?} is not a date (expected e.g. 2026-01-31, 2026-01-31T12:00Z or 2026-01-31T12:00:00Z)")]
    BadDate { param: &'static str, value: String },
    /// A permission, service or resource-type letter is not known.
    #[error("invalid {what} {letters:?}: unknown letter {letter:?} (valid: {valid})")]
    BadLetters {
        what: &'static str,
        letters: String,
        letter: char,
        valid: &'static str,
    },
    /// The version is too old, or not a version at all.
    #[error("unsupported SAS version {0:?}: {1}")]
    Version(String, &'static str),
    /// The account key is not base64 (the key itself is never quoted).
    #[error("invalid account key: {0}")]
    BadKey(&'static str),
    /// Anything else wrong with a token or with signing parameters.
    #[error("invalid SAS: {0}")]
    Invalid(String),
}
