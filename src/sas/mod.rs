//! SAS tokens: parsing, permissions, signing.
//!
//! - [`token`]: [`SasToken::parse`] of a bare token or a URL, with every parameter kept in
//!   order so that [`SasToken::query`] gives back exactly what the issuer signed.
//! - [`permissions`]: the `sp`, `ss` and `srt` letter sets, normalised to the service's order.
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
/// Checked against Azurite 3.37.0 (`--skipApiVersionCheck --loose`, in memory): a container
/// SAS (`sr=c&sp=rl`) signed by [`sign_service_sas`] with this version lists blobs with
/// `?restype=container&comp=list` (200), after the container was created with an account
/// SAS (`ss=b&srt=sco&sp=rwdlacup`) from [`sign_account_sas`]; the same tokens signed with a
/// wrong key get 403 AuthenticationFailed. 2026-06-06 is the newest version in Azurite's
/// own list of valid API versions; Azurite also verified signatures for the later 2026-10-06
/// (it only compares versions, `>= 2020-12-06` picks the layout), but would not know the
/// version as an `x-ms-version` header without `--skipApiVersionCheck`.
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
