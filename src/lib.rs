//! blobmount: mount an Azure Blob Storage container as a directory through FUSE,
//! authenticated by a shared access signature (SAS).
//!
//! Layout:
//! - [`sas`]: SAS parsing, permissions, signing (service and account SAS).
//! - [`credential`]: the SAS requests are signed with, swapped atomically.
//! - [`blob`]: the Blob REST client behind the [`blob::BlobClient`] trait, typed errors,
//!   retries, and (for tests, the `fake` feature) an in-memory fake.
//! - [`token`]: where the SAS comes from and how it is renewed (sources, the refresher).
//! - [`cache`]: the read path: the prefetcher, the block cache, streaming fetches.
//! - [`fs`]: the filesystem core, independent of FUSE: inodes, listings, handles, writes,
//!   renames, its error type and the one table from it to errno.
//! - [`fuse`]: the thin adapter from fuser callbacks to [`fs`].
//! - [`metrics`]: request, byte and cache counters; a log summary and a Prometheus endpoint.
//! - [`mount`]: checks, the FUSE session, daemon mode, shutdown; [`options`]: command line,
//!   `-o` options and config file, merged; [`logging`]: stderr, log file or syslog.
//! - [`cli`]: the command line.
//!
//! Dependencies between these modules run one way (checked by `tests/layers.rs`):
//! `sas` ← `credential` ← `blob` ← `token`, `cache` ← `fs` ← `fuse` ← `mount` ← `options`,
//! `cli`.
pub mod blob;
pub mod cache;
pub mod cli;
pub mod credential;
pub mod fs;
pub mod fuse;
pub mod fuse_tuning;
pub mod logging;
pub mod man;
pub mod metrics;
pub mod mount;
pub mod options;
pub mod sas;
pub mod size;
pub mod token;
