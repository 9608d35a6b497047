//! Where the SAS of a mount comes from, and how it is renewed.
//!
//! - [`Credential`] (in [`crate::credential`]): the token in force.
//! - [`source`]: where tokens come from (the URL, `--sas-file`, `BLOBMOUNT_SAS`,
//!   `--sas-command`) and the checks a new token must pass.
//! - [`refresh`]: the task that fetches a new token before the current one expires, on SIGHUP,
//!   when the file changes, or when the service refuses the current one.

pub mod refresh;
pub mod source;

pub use crate::credential::{Credential, Secret};
