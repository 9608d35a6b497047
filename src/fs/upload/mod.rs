//! The upload side of a file being written: from the bytes programs write to one committed
//! version of the blob.
//!
//! - [`grid`]: how a blob is cut in blocks (the block size, a last short block).
//! - [`budget`]: the mount-wide budget of bytes written but not yet uploaded (backpressure).
//! - [`staging`]: one file's local copy and its blocks (dirty, uploading, staged): write, read
//!   back, truncate, upload blocks the writer has moved past.
//! - [`plan`]: what a commit does for each block, decided without requests (pure, tested alone).
//! - [`journal`]: the record kept beside each local copy, so a restart finishes what the mount
//!   had not committed when it died.
//! - [`reuse`]: blocks an interrupted write staged, offered to the next write of the blob.
//! - [`commit`]: carries the plan out and commits with one conditional Put Block List (a small
//!   file written here: one Put Blob); recognises its own earlier success after a lost answer;
//!   conflict and partial siblings.
//!
//! It knows nothing of inodes, handles or errno: the filesystem core (`fs::write`) drives it.

pub mod budget;
pub mod commit;
pub mod grid;
pub mod journal;
pub mod plan;
pub mod reopen;
pub mod reuse;
pub mod staging;

pub use budget::WriteBudget;
pub use grid::Grid;
pub use staging::{Staging, StagingArea};
