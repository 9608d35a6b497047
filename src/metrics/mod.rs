//! What the mount does, in numbers: requests to the Blob service by operation and status,
//! retries, body bytes in and out, block cache hits and misses. Logged on SIGUSR1
//! ([`summary`]) and served in the Prometheus text format ([`render_prometheus`], [`serve`]).
//!
//! - Counters live in one process-wide [`Metrics`] ([`global`]): fixed arrays of atomics, so
//!   counting costs one relaxed atomic add and never takes a lock.
//! - Values that live elsewhere (cache bytes held, dirty bytes, token lifetime, open files)
//!   are read when rendering, into a [`Gauges`] (see `Fs::gauges`).
//! - No label carries a URL, a blob name or anything from the SAS: the label values are the
//!   fixed sets of [`Op::label`] and [`STATUS_LABELS`].

mod render;
mod serve;

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

pub use render::{render_prometheus, summary};
pub use serve::serve;

/// A Blob service operation, as the REST API names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Op {
    CopyBlob,
    DeleteBlob,
    GetBlob,
    GetBlobProperties,
    GetBlockList,
    ListBlobs,
    PutBlob,
    PutBlock,
    PutBlockFromUrl,
    PutBlockList,
    SetBlobMetadata,
}

impl Op {
    /// Whether requests of this kind change the container.
    pub fn is_mutating(self) -> bool {
        !matches!(
            self,
            Op::ListBlobs | Op::GetBlobProperties | Op::GetBlob | Op::GetBlockList
        )
    }

    /// Every operation, in the order of their labels.
    pub const ALL: [Op; 11] = [
        Op::CopyBlob,
        Op::DeleteBlob,
        Op::GetBlob,
        Op::GetBlobProperties,
        Op::GetBlockList,
        Op::ListBlobs,
        Op::PutBlob,
        Op::PutBlock,
        Op::PutBlockFromUrl,
        Op::PutBlockList,
        Op::SetBlobMetadata,
    ];

    /// The operation's name in the REST API documentation, for errors and logs ("Get Blob").
    pub const fn name(self) -> &'static str {
        match self {
            Op::CopyBlob => "Copy Blob",
            Op::DeleteBlob => "Delete Blob",
            Op::GetBlob => "Get Blob",
            Op::GetBlobProperties => "Get Blob Properties",
            Op::GetBlockList => "Get Block List",
            Op::ListBlobs => "List Blobs",
            Op::PutBlob => "Put Blob",
            Op::PutBlock => "Put Block",
            Op::PutBlockFromUrl => "Put Block From URL",
            Op::PutBlockList => "Put Block List",
            Op::SetBlobMetadata => "Set Blob Metadata",
        }
    }

    /// The same name as a metric label ("get_blob").
    pub const fn label(self) -> &'static str {
        match self {
            Op::CopyBlob => "copy_blob",
            Op::DeleteBlob => "delete_blob",
            Op::GetBlob => "get_blob",
            Op::GetBlobProperties => "get_blob_properties",
            Op::GetBlockList => "get_block_list",
            Op::ListBlobs => "list_blobs",
            Op::PutBlob => "put_blob",
            Op::PutBlock => "put_block",
            Op::PutBlockFromUrl => "put_block_from_url",
            Op::PutBlockList => "put_block_list",
            Op::SetBlobMetadata => "set_blob_metadata",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Statuses the service answers often, counted each under its own label.
const KNOWN_STATUSES: [u16; 20] = [
    200, 201, 202, 206, 304, 400, 401, 403, 404, 405, 408, 409, 412, 413, 416, 429, 500, 502, 503,
    504,
];

/// The `status` label values: `KNOWN_STATUSES`, then a class for any other status (`4xx`),
/// `other` for a status outside 100..=599, `error` for no answer (connection refused or
/// reset, timeout).
pub const STATUS_LABELS: [&str; 27] = [
    "200", "201", "202", "206", "304", "400", "401", "403", "404", "405", "408", "409", "412",
    "413", "416", "429", "500", "502", "503", "504", "1xx", "2xx", "3xx", "4xx", "5xx", "other",
    "error",
];

/// Where a status is counted, in [`STATUS_LABELS`].
fn status_slot(status: Option<u16>) -> usize {
    match status {
        None => STATUS_LABELS.len() - 1,
        Some(s @ 100..=599) => KNOWN_STATUSES
            .iter()
            .position(|&k| k == s)
            .unwrap_or(KNOWN_STATUSES.len() + usize::from(s / 100) - 1),
        Some(_) => STATUS_LABELS.len() - 2,
    }
}

const OPS: usize = Op::ALL.len();
const STATUSES: usize = STATUS_LABELS.len();

/// The counters. One process-wide instance ([`global`]); tests make their own.
pub struct Metrics {
    requests: [[AtomicU64; STATUSES]; OPS],
    retries: [AtomicU64; OPS],
    bytes_received: AtomicU64,
    bytes_sent: AtomicU64,
    cache_hits: AtomicU64,
    cache_misses: AtomicU64,
    cache_hit_bytes: AtomicU64,
    cache_miss_bytes: AtomicU64,
    files_fetched_ahead: AtomicU64,
}

static GLOBAL: Metrics = Metrics::new();

/// The counters of this process.
pub fn global() -> &'static Metrics {
    &GLOBAL
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// Requests of one operation answered with one status (label).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestCount {
    pub op: Op,
    pub status: &'static str,
    pub count: u64,
}

/// The counters' values at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Only the (operation, status) pairs seen, sorted by operation then status label.
    pub requests: Vec<RequestCount>,
    /// Every operation, in [`Op::ALL`] order.
    pub retries: Vec<(Op, u64)>,
    pub bytes_received: u64,
    pub bytes_sent: u64,
    pub cache_hits: u64,
    pub cache_misses: u64,
    pub cache_hit_bytes: u64,
    pub cache_miss_bytes: u64,
    pub files_fetched_ahead: u64,
}

impl Snapshot {
    pub fn total_requests(&self) -> u64 {
        self.requests.iter().map(|r| r.count).sum()
    }

    pub fn total_retries(&self) -> u64 {
        self.retries.iter().map(|(_, n)| n).sum()
    }

    /// Requests of `op` answered with `status` (a [`STATUS_LABELS`] value).
    pub fn requests_of(&self, op: Op, status: &str) -> u64 {
        self.requests
            .iter()
            .find(|r| r.op == op && r.status == status)
            .map_or(0, |r| r.count)
    }

    pub fn retries_of(&self, op: Op) -> u64 {
        self.retries
            .iter()
            .find(|(o, _)| *o == op)
            .map_or(0, |(_, n)| *n)
    }
}

impl Metrics {
    pub const fn new() -> Self {
        Metrics {
            requests: [const { [const { AtomicU64::new(0) }; STATUSES] }; OPS],
            retries: [const { AtomicU64::new(0) }; OPS],
            bytes_received: AtomicU64::new(0),
            bytes_sent: AtomicU64::new(0),
            cache_hits: AtomicU64::new(0),
            cache_misses: AtomicU64::new(0),
            cache_hit_bytes: AtomicU64::new(0),
            cache_miss_bytes: AtomicU64::new(0),
            files_fetched_ahead: AtomicU64::new(0),
        }
    }

    /// One HTTP attempt of `op`, answered with `status`, or not answered (`None`).
    pub fn request(&self, op: Op, status: Option<u16>) {
        self.requests[op.index()][status_slot(status)].fetch_add(1, Relaxed);
    }

    /// An attempt of `op` after the first one (backoff, or a new SAS).
    pub fn retry(&self, op: Op) {
        self.retries[op.index()].fetch_add(1, Relaxed);
    }

    /// Body bytes received from the service.
    pub fn received(&self, bytes: u64) {
        self.bytes_received.fetch_add(bytes, Relaxed);
    }

    /// Body bytes sent to the service.
    pub fn sent(&self, bytes: u64) {
        self.bytes_sent.fetch_add(bytes, Relaxed);
    }

    /// A block a read needed was in the cache; `bytes` of it were served.
    pub fn cache_hit(&self, bytes: u64) {
        self.cache_hits.fetch_add(1, Relaxed);
        self.cache_hit_bytes.fetch_add(bytes, Relaxed);
    }

    /// A block a read needed was not in the cache (fetched, or waited for in flight); `bytes`
    /// of it were served.
    pub fn cache_miss(&self, bytes: u64) {
        self.cache_misses.fetch_add(1, Relaxed);
        self.cache_miss_bytes.fetch_add(bytes, Relaxed);
    }

    /// A small file was fetched ahead of a program reading its directory in order.
    pub fn fetched_ahead(&self) {
        self.files_fetched_ahead.fetch_add(1, Relaxed);
    }

    pub fn snapshot(&self) -> Snapshot {
        let mut requests = Vec::new();
        for op in Op::ALL {
            let mut row: Vec<RequestCount> = STATUS_LABELS
                .iter()
                .zip(&self.requests[op.index()])
                .map(|(status, c)| RequestCount {
                    op,
                    status,
                    count: c.load(Relaxed),
                })
                .filter(|r| r.count > 0)
                .collect();
            row.sort_by_key(|r| r.status);
            requests.extend(row);
        }
        Snapshot {
            requests,
            retries: Op::ALL
                .iter()
                .map(|op| (*op, self.retries[op.index()].load(Relaxed)))
                .collect(),
            bytes_received: self.bytes_received.load(Relaxed),
            bytes_sent: self.bytes_sent.load(Relaxed),
            cache_hits: self.cache_hits.load(Relaxed),
            cache_misses: self.cache_misses.load(Relaxed),
            cache_hit_bytes: self.cache_hit_bytes.load(Relaxed),
            cache_miss_bytes: self.cache_miss_bytes.load(Relaxed),
            files_fetched_ahead: self.files_fetched_ahead.load(Relaxed),
        }
    }
}

/// Values read from the mount when rendering (see `Fs::gauges`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Gauges {
    /// Bytes the block cache holds: cached blocks and blocks being fetched.
    pub cache_bytes: u64,
    /// The block cache's budget (`--cache-size`).
    pub cache_budget_bytes: u64,
    /// Write buffer held by blocks written and not yet uploaded (being uploaded included):
    /// each such block counts its full block size, at most half the buffer.
    pub dirty_bytes: u64,
    /// The write buffer (`--write-buffer`).
    pub write_buffer_bytes: u64,
    /// Open file handles.
    pub open_files: u64,
    /// Files open for writing through this mount (each has one local staging, shared by its
    /// write handles).
    pub files_open_for_writing: u64,
    /// Seconds until the SAS in force expires (negative: expired); `None` without a SAS or
    /// when it has no expiry.
    pub token_seconds_left: Option<i64>,
    /// Files left uncommitted by an earlier mount (its staging journal) and finished by this
    /// one: still to do, committed under their name, saved beside their blob (`.partial-`,
    /// `.conflict-`), left in place (refused or failed).
    pub resume_pending_files: u64,
    pub resume_committed_files: u64,
    pub resume_saved_beside_files: u64,
    pub resume_left_files: u64,
    /// Blocks of those files found in the service (not sent again), and blocks sent.
    pub resume_blocks_kept: u64,
    pub resume_blocks_sent: u64,
    /// Blocks of files written here committed under the id an interrupted write (its mount
    /// killed) had staged the same bytes under, instead of being sent again; and their bytes.
    pub write_blocks_reused: u64,
    pub write_bytes_reused: u64,
    /// `--write-back`: files closed and not committed yet, and the bytes of their local
    /// copies; files committed after their close returned, and those whose commit after close
    /// failed for good (a conflict copy, or data saved locally).
    pub write_back_pending_files: u64,
    pub write_back_pending_bytes: u64,
    pub write_back_committed_files: u64,
    pub write_back_failed_files: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_fixed_sorted_and_distinct() {
        let labels: Vec<_> = Op::ALL.iter().map(|o| o.label()).collect();
        let mut sorted = labels.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(labels, sorted);
        for (i, op) in Op::ALL.iter().enumerate() {
            assert_eq!(op.index(), i);
            assert_eq!(op.label(), op.name().to_lowercase().replace(' ', "_"));
        }
        for (code, label) in KNOWN_STATUSES.iter().zip(STATUS_LABELS) {
            assert_eq!(code.to_string(), label);
        }
        let mut statuses = STATUS_LABELS.to_vec();
        statuses.sort();
        statuses.dedup();
        assert_eq!(statuses.len(), STATUS_LABELS.len());
    }

    #[test]
    fn statuses_go_to_their_slot_or_class() {
        let label = |s| STATUS_LABELS[status_slot(s)];
        assert_eq!(label(Some(200)), "200");
        assert_eq!(label(Some(206)), "206");
        assert_eq!(label(Some(503)), "503");
        assert_eq!(label(Some(207)), "2xx");
        assert_eq!(label(Some(418)), "4xx");
        assert_eq!(label(Some(599)), "5xx");
        assert_eq!(label(Some(100)), "1xx");
        assert_eq!(label(Some(99)), "other");
        assert_eq!(label(Some(600)), "other");
        assert_eq!(label(Some(0)), "other");
        assert_eq!(label(None), "error");
    }

    #[test]
    fn counters_add_up() {
        let m = Metrics::new();
        m.request(Op::GetBlob, Some(206));
        m.request(Op::GetBlob, Some(206));
        m.request(Op::GetBlob, Some(503));
        m.request(Op::PutBlock, None);
        m.retry(Op::GetBlob);
        m.received(10);
        m.received(5);
        m.sent(7);
        m.cache_hit(100);
        m.cache_miss(30);
        m.cache_miss(20);
        let s = m.snapshot();
        assert_eq!(
            s.requests,
            vec![
                RequestCount {
                    op: Op::GetBlob,
                    status: "206",
                    count: 2
                },
                RequestCount {
                    op: Op::GetBlob,
                    status: "503",
                    count: 1
                },
                RequestCount {
                    op: Op::PutBlock,
                    status: "error",
                    count: 1
                },
            ]
        );
        assert_eq!(s.total_requests(), 4);
        assert_eq!(s.requests_of(Op::GetBlob, "206"), 2);
        assert_eq!(s.requests_of(Op::ListBlobs, "200"), 0);
        assert_eq!((s.retries_of(Op::GetBlob), s.total_retries()), (1, 1));
        assert_eq!(s.retries.len(), Op::ALL.len());
        assert_eq!((s.bytes_received, s.bytes_sent), (15, 7));
        assert_eq!((s.cache_hits, s.cache_hit_bytes), (1, 100));
        assert_eq!((s.cache_misses, s.cache_miss_bytes), (2, 50));
    }
}
