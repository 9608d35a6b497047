//! The filesystem core, independent of FUSE: names to blobs, attributes, listings, handles,
//! reads (served by the cache's [`Prefetcher`]) and writes (the [`upload`] side).
//!
//! [`Fs`] is thin: it holds the parts, each of which owns its state behind its own locks and
//! knows nothing of `Fs` (checked by `tests/layers.rs`):
//! - [`metadata`]: what the mount knows of names (inodes, listings, negative entries);
//! - [`handles`]: open files (`Read` or `Write`) and directories;
//! - `open_files`: files being written (their staging and lifecycle), blobs kept for files
//!   unlinked while open;
//! - [`upload`]: the block grid, the write budget, local copies, the commit plan and commit;
//! - `gate`: the change gate that closes at shutdown;
//! - `scan`: directory-aware prefetch (which files a program reading a directory opens next).
//!
//! The operations are `impl Fs` blocks, one file each: `lookup`, `readdir`, `read`, `write`,
//! [`namespace`], `rename`, `attributes`, `shutdown`. Every operation is async and takes no
//! lock across a request, so a slow read never holds up a lookup or a listing elsewhere.
//!
//! Errors are [`FsError`]s; the FUSE adapter logs each once and answers its errno
//! ([`FsError::to_errno`]).

mod attributes;
pub mod dircache;
pub mod error;
mod gate;
mod gauges;
pub mod handles;
pub mod inode;
pub mod lifecycle;
mod lookup;
pub mod metadata;
pub mod namespace;
mod open_files;
pub mod posix;
mod read;
mod readdir;
mod recovery;
mod rename;
pub mod resume;
mod scan;
mod shutdown;
mod unlinked;
pub mod upload;
mod write;
pub mod write_back;
pub mod xattr;

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use crate::blob::BlobClient;
use crate::cache::{BlockCache, Prefetcher};
use crate::metrics::{self, Metrics};
pub use attributes::SetAttrs;
pub use inode::{Attr, EntryInfo, Kind, ROOT_INO};
pub use shutdown::CommitReport;
pub use write::OpenMode;

use error::fail;
pub use error::{Errno, FsError};

/// How the kernel's page cache serves an open file. The kernel keeps one set of pages per
/// inode, shared by all its open files: they may hold one version of the blob only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageCache {
    /// Pages of another version (or of data written here) are dropped at open.
    Drop,
    /// The pages hold this version: kept (re-reading costs no request).
    Keep,
    /// Other open files read another version through the pages: this one reads around them
    /// (direct I/O), leaving them as they are.
    Bypass,
}

/// How long a directory that this mount emptied is still found (see [`inode::Node::emptied`]).
const EMPTIED_GRACE: Duration = Duration::from_secs(60);

/// Small files fetched ahead of a directory's reader by default (`--prefetch-files`).
pub const PREFETCH_FILES: usize = scan::AHEAD;

/// Settings of the filesystem core.
#[derive(Debug, Clone)]
pub struct FsConfig {
    pub uid: u32,
    pub gid: u32,
    pub file_mode: u16,
    pub dir_mode: u16,
    /// How long attributes, listings and negative lookups are trusted.
    pub metadata_ttl: Duration,
    pub block_size: u64,
    pub cache_size: u64,
    pub read_only: bool,
    /// Small files fetched ahead of a program reading a directory's files in order (0: none).
    pub prefetch_files: usize,
    /// Bytes written but not yet uploaded, for the whole mount (backpressure above it).
    pub write_buffer: u64,
    /// Where the local copies of files being written live (unlinked temp files without a
    /// journal), and copies of files that could not be committed.
    pub staging_dir: std::path::PathBuf,
    /// This mount's staging journal (None: local copies are unlinked, and nothing survives
    /// the process). See [`upload::journal`].
    pub journal: Option<Arc<upload::journal::JournalDir>>,
    /// Whether owners kept in metadata are shown and recorded: on a mount by root, or one
    /// other users reach (allow_other, allow_root). A personal mount shows every file as
    /// `uid`/`gid`: only its user reaches it, who must never be locked out of their own data
    /// by an owner recorded elsewhere.
    pub keep_owners: bool,
    /// The SAS in force, whose permissions decide what is allowed (None: everything).
    pub credential: Option<Arc<crate::token::Credential>>,
    /// `--write-back`: close returns once the file is on local disk, committed later (None:
    /// close returns once committed). Needs the journal.
    pub write_back: Option<write_back::WriteBackConfig>,
}

impl FsConfig {
    /// Most blocks read ahead for one sequential reader: half the cache, at most 64 (large
    /// windows give large requests: fewer per-request costs).
    pub fn max_prefetch_window(&self) -> u64 {
        (self.cache_size / self.block_size / 2).clamp(1, 64)
    }
}

pub struct Fs {
    client: Arc<dyn BlobClient>,
    /// The read path: block cache and readahead.
    reads: Prefetcher,
    /// Programs reading a directory's files one after another, to fetch ahead of.
    scans: scan::Scans,
    cfg: FsConfig,
    mount_time: SystemTime,
    /// What the mount knows of names: inodes, listings, negative lookups.
    meta: metadata::Metadata,
    /// Open files and directories.
    handles: handles::HandleTable,
    /// Files being written (every handle of a file shares one staging), and blobs of files
    /// unlinked here while still open (hidden, removed at the last close).
    open_files: open_files::OpenFiles,
    staging: upload::StagingArea,
    /// Changes pass it while the mount runs; it closes at shutdown (see [`Fs::stop_changes`]).
    gate: gate::ChangeGate,
    /// Files an earlier mount left in its journal, finished by this one ([`Fs::resume_left_behind`]).
    resumed: resume::ResumeProgress,
    /// Files closed and not committed yet (`--write-back`).
    write_back: Option<write_back::WriteBack>,
}

/// A std mutex's guard, also after a panic elsewhere (the data stays usable: every update of
/// it is complete before the guard drops).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Fs {
    pub fn new(client: Arc<dyn BlobClient>, cfg: FsConfig) -> Arc<Self> {
        Self::counting_into(client, cfg, metrics::global())
    }

    /// An Fs that counts into `metrics` instead of the process-wide [`metrics::global`].
    pub fn counting_into(
        client: Arc<dyn BlobClient>,
        cfg: FsConfig,
        metrics: &'static Metrics,
    ) -> Arc<Self> {
        let mount_time = SystemTime::now();
        let staging = upload::StagingArea {
            client: client.clone(),
            budget: upload::WriteBudget::new(cfg.write_buffer),
            dir: cfg.staging_dir.clone(),
            grid: upload::Grid::new(cfg.block_size),
            journal: cfg.journal.clone(),
            reuse: Some(Default::default()),
        };
        let write_back = cfg.write_back.map(write_back::WriteBack::new);
        Arc::new(Fs {
            reads: Prefetcher::new(
                client.clone(),
                cfg.cache_size,
                cfg.block_size,
                cfg.max_prefetch_window(),
                metrics,
            ),
            scans: scan::Scans::new(cfg.block_size, cfg.prefetch_files),
            client,
            meta: metadata::Metadata::new(mount_time, cfg.metadata_ttl),
            cfg,
            mount_time,
            handles: handles::HandleTable::default(),
            open_files: open_files::OpenFiles::default(),
            staging,
            gate: gate::ChangeGate::default(),
            resumed: Default::default(),
            write_back,
        })
    }

    /// Finishes, in the background of a running mount, what earlier mounts of this container
    /// left in their journals under `container_dir` (see [`resume`]); the mount is usable
    /// meanwhile. Progress is in the log, the status line and the metrics.
    pub async fn resume_left_behind(self: Arc<Self>, container_dir: std::path::PathBuf) {
        let own = self.cfg.journal.as_ref().map(|j| j.path().to_path_buf());
        resume::resume_all(&self.staging, &container_dir, own.as_deref(), &self.resumed).await;
    }

    pub fn config(&self) -> &FsConfig {
        &self.cfg
    }

    pub fn cache(&self) -> &Arc<BlockCache> {
        self.reads.cache()
    }

    /// Inodes currently known (for tests and diagnostics).
    pub fn inode_count(&self) -> usize {
        self.meta.inode_count()
    }

    /// Path, attributes and whether they are fresh, of `ino`.
    fn node(&self, ino: u64) -> Result<(String, EntryInfo, bool), FsError> {
        self.meta.node(ino)
    }

    fn attr_of(&self, ino: u64) -> Result<Attr, FsError> {
        self.meta.attr(ino)
    }
}

#[cfg(test)]
mod fault_tests;
#[cfg(test)]
mod tests;
