//! blobmount: mount an Azure Blob Storage container as a directory through FUSE,
//! authenticated by a shared access signature (SAS).
//!
//! Layout:
//! - [`sas`]: SAS parsing, permissions, signing (service and account SAS).
//! - [`blob`]: the Blob REST client behind the [`blob::BlobClient`] trait, with an
//!   in-memory fake for unit tests.
//! - [`token`]: where the SAS comes from (and, later, refreshing it).
//! - [`cache`]: the block cache and sequential prefetch.
//! - [`fs`]: inodes, directory cache, open handles: the filesystem core, independent of FUSE.
//! - [`fuse`]: the thin adapter from fuser callbacks to [`fs`].
//! - [`metrics`]: request, byte and cache counters; a log summary and a Prometheus endpoint.
//! - [`mount`]: checks, the FUSE session, daemon mode, shutdown; [`options`]: command line,
//!   `-o` options and config file, merged; [`logging`]: stderr, log file or syslog.
//! - [`cli`]: the command line.
pub mod blob;
pub mod cache;
pub mod cli;
pub mod fs;
pub mod fuse;
pub mod logging;
pub mod metrics;
pub mod mount;
pub mod options;
pub mod sas;
pub mod size;
pub mod token;
