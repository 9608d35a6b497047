//! The staging journal: what a file being written needs to be finished after the mount died
//! (kill -9, an OOM kill, a power cut), kept beside its local copy in the staging directory.
//!
//! Layout: `STAGING/journal/CONTAINER-KEY/INSTANCE/` is the directory of one mount (private,
//! 0700), held for the life of the mount by an exclusive `flock` on its `lock` file. Each file
//! being written there is two files:
//! - `UPLOAD.data`, its local copy (the staging file), and
//! - `UPLOAD.json`, its [`Record`]: the blob, the commit condition, the metadata to commit, the
//!   blocks already sent with their length and MD5, and how far the program got (unfinished,
//!   closed or fsynced, committed). It is replaced whole (written beside, then renamed over it),
//!   so it is always one complete version, never a mix.
//!
//! A directory whose lock nobody holds was left by a mount that is gone: the next mount of the
//! same container, or `blobmount recover`, adopts it (see [`crate::fs::resume`]). The record
//! holds no part of the SAS.
//!
//! When it is flushed to disk: the record and the data reach the page cache at once (which
//! survives the death of the process); `fsync` follows where a promise is made (see
//! [`Entry::finished`]). A record that was not fsynced and comes from an earlier boot (power
//! cut) is not trusted as finished: its content becomes a `.partial` copy.

use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::grid::MAX_BLOCK_SIZE;

/// What a commit asked the service to make of the blob (to recognise it later).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Attempt {
    /// Put Block List of these ids (unique to this upload).
    Blocks(Vec<String>),
    /// Put Blob of the whole file (empty, or one block written here): its length, the SHA-256
    /// of its bytes (not the bytes: an unanswered attempt is remembered for a while) and its
    /// metadata.
    Whole {
        len: u64,
        sha256: [u8; 32],
        metadata: HashMap<String, String>,
    },
}

impl Attempt {
    /// The Put Blob of `data` with `metadata`.
    pub fn whole(data: &[u8], metadata: &HashMap<String, String>) -> Attempt {
        use sha2::Digest;
        Attempt::Whole {
            len: data.len() as u64,
            sha256: sha2::Sha256::digest(data).into(),
            metadata: metadata.clone(),
        }
    }
}

/// What every record says it is.
pub const FORMAT: &str = "blobmount-staging-journal";
/// The record layout this build writes and reads.
pub const VERSION: u32 = 1;

/// How far the program got with the content of the local copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Durable {
    /// Written since it was last closed or fsynced (or never closed): unfinished content.
    Unfinished,
    /// Closed or fsynced by the program; its commit was not confirmed yet.
    Finished,
    /// The blob (or the sibling it went on in) holds what the local copy holds.
    Committed,
}

/// The version writing started from, still part of the file up to `len`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BaseRecord {
    pub etag: String,
    pub len: u64,
}

/// A block sent with Put Block and not committed since: its id, length and the MD5 of the
/// bytes sent (base64).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SentBlock {
    pub id: String,
    pub len: u64,
    pub md5: String,
}

/// The journal record of one file being written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// Always [`FORMAT`].
    pub format: String,
    /// [`VERSION`] of the build that wrote it.
    pub version: u32,
    /// The blob the content is committed to.
    pub blob: String,
    /// The commit condition: `If-Match` this ETag, or (None) `If-None-Match: *`.
    pub expect: Option<String>,
    /// The version the untouched blocks are read or copied from.
    pub base: Option<BaseRecord>,
    /// The file's size when the record was written.
    pub size: u64,
    /// The base block size of the grid the file is cut on.
    pub block_size: u64,
    /// The metadata the new version is committed with.
    pub metadata: BTreeMap<String, String>,
    /// The upload's id: the first half of every block id it makes.
    pub upload_id: u64,
    /// The last sequence number used in a block id (new ids continue after it).
    pub next_seq: u64,
    /// Block ids of the last commit made here (or the base's own), reused for untouched blocks.
    pub committed_ids: Vec<String>,
    /// Blocks whose bytes are all in the local copy, as ranges of indexes (first and last):
    /// a file written in order is one range, whatever its size.
    pub local: Vec<[u64; 2]>,
    /// Blocks sent (Put Block) and not committed since, by index. Not in the record file:
    /// appended, one line each, to `UPLOAD.sent` as they are sent (a record rewritten per
    /// block would grow with the square of the file's size).
    #[serde(skip)]
    pub sent: BTreeMap<u64, SentBlock>,
    pub durable: Durable,
    /// Whether the local copy and this record were flushed to disk when `durable` was set.
    pub synced: bool,
    /// The boot (`/proc/sys/kernel/random/boot_id`) that wrote the record.
    pub boot_id: String,
    /// Commits sent whose answer never came: one of them may have landed.
    pub attempts: Vec<Attempt>,
    /// When the file's writing began (nanoseconds since the epoch): records of one blob are
    /// finished oldest first.
    #[serde(default)]
    pub created_ns: u64,
}

/// Ranges (first and last, inclusive) of the sorted indexes `sorted`.
pub fn ranges(sorted: impl IntoIterator<Item = u64>) -> Vec<[u64; 2]> {
    let mut out: Vec<[u64; 2]> = Vec::new();
    for i in sorted {
        match out.last_mut() {
            Some(r) if r[1] + 1 == i => r[1] = i,
            _ => out.push([i, i]),
        }
    }
    out
}

/// The indexes of `ranges`.
pub fn indexes(ranges: &[[u64; 2]]) -> impl Iterator<Item = u64> + '_ {
    ranges.iter().flat_map(|r| r[0]..=r[1])
}

impl Record {
    /// A record with nothing in it yet, for the boot `boot_id`.
    pub fn empty(boot_id: &str) -> Record {
        Record {
            format: FORMAT.into(),
            version: VERSION,
            blob: String::new(),
            expect: None,
            base: None,
            size: 0,
            block_size: 0,
            metadata: BTreeMap::new(),
            upload_id: 0,
            next_seq: 0,
            committed_ids: Vec::new(),
            local: Vec::new(),
            sent: BTreeMap::new(),
            durable: Durable::Unfinished,
            synced: false,
            boot_id: boot_id.to_string(),
            attempts: Vec::new(),
            created_ns: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64),
        }
    }

    /// Checks what a record must hold before anything is done with it; the message says what
    /// is wrong. (Blocks it names past the end of the file are ignored where it is used: a
    /// truncate may leave them, harmlessly.)
    pub fn check(&self) -> Result<(), String> {
        if self.block_size == 0 || self.block_size > MAX_BLOCK_SIZE {
            return Err(format!("block size {} is not valid", self.block_size));
        }
        if self.blob.is_empty() {
            return Err("it names no blob".into());
        }
        if self.local.iter().any(|r| r[0] > r[1]) {
            return Err("its ranges of local blocks are reversed".into());
        }
        let mut lens = self
            .sent
            .values()
            .map(|b| b.id.len())
            .chain(self.committed_ids.iter().map(String::len));
        if let Some(first) = lens.next() {
            if lens.any(|l| l != first) {
                return Err("its block ids differ in length".into());
            }
        }
        Ok(())
    }

    /// Whether its content may be committed under its name: the program closed or fsynced it,
    /// and the local copy is known to hold it (flushed to disk, or the machine did not restart
    /// since).
    pub fn is_finished(&self, boot_id: &str) -> bool {
        // An unknown boot (no boot id) is taken for another one.
        let same_boot = !boot_id.is_empty() && self.boot_id == boot_id;
        self.durable == Durable::Finished && (self.synced || same_boot)
    }
}

/// Reads and checks a record file and the blocks sent beside it (`UPLOAD.sent`): refused
/// (with the reason) when it is not a journal record, comes from another format version, or
/// does not hold together.
pub fn read_record(path: &Path) -> Result<Record, String> {
    let text = read_private(path).map_err(|e| format!("cannot read it: {e}"))?;
    let value: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("it is not a journal record: {e}"))?;
    if value.get("format").and_then(|f| f.as_str()) != Some(FORMAT) {
        return Err("it is not a blobmount journal record".into());
    }
    match value.get("version").and_then(|v| v.as_u64()) {
        Some(v) if v == u64::from(VERSION) => {}
        Some(v) => {
            return Err(format!(
                "it is in journal format {v}, and this blobmount reads format {VERSION} only"
            ))
        }
        None => return Err("it has no format version".into()),
    }
    let mut record: Record =
        serde_json::from_value(value).map_err(|e| format!("it is damaged: {e}"))?;
    record.sent = read_sent(&path.with_extension("sent"))?;
    record.check()?;
    Ok(record)
}

/// One line of `UPLOAD.sent`.
#[derive(Debug, Serialize, Deserialize)]
struct SentLine {
    index: u64,
    #[serde(flatten)]
    block: SentBlock,
}

/// The blocks sent, from `UPLOAD.sent` (none if it does not exist). A last line cut short (the
/// process died while appending it) is left out; any other bad line refuses the record.
fn read_sent(path: &Path) -> Result<BTreeMap<u64, SentBlock>, String> {
    let text = match read_private(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    let mut out = BTreeMap::new();
    let complete = text.ends_with('\n');
    let lines: Vec<&str> = text.lines().collect();
    for (n, line) in lines.iter().enumerate() {
        match serde_json::from_str::<SentLine>(line) {
            Ok(l) => {
                out.insert(l.index, l.block);
            }
            Err(_) if n + 1 == lines.len() && !complete => {}
            Err(e) => return Err(format!("{} is damaged: {e}", path.display())),
        }
    }
    Ok(out)
}

/// Reads a journal file that must be a regular file of this user's, not writable by others,
/// reached without following a symbolic link: another user who can write to a shared staging
/// directory must not get their records committed with this mount's SAS.
fn read_private(path: &Path) -> std::io::Result<String> {
    use std::io::Read;
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?;
    let meta = f.metadata()?;
    check_owner(&meta, path)?;
    if !meta.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    let mut text = String::new();
    f.read_to_string(&mut text)?;
    Ok(text)
}

/// Refuses what another user owns or may change.
fn check_owner(meta: &std::fs::Metadata, path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    // SAFETY: geteuid cannot fail.
    let me = unsafe { libc::geteuid() };
    if meta.uid() != me || meta.mode() & 0o022 != 0 {
        return Err(std::io::Error::other(format!(
            "{} belongs to another user or others may change it",
            path.display()
        )));
    }
    Ok(())
}

/// Whether a directory of journals is this user's and private enough to act on.
pub fn is_private_dir(path: &Path) -> Result<(), String> {
    let meta = std::fs::symlink_metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if !meta.is_dir() {
        return Err(format!("{} is not a directory", path.display()));
    }
    check_owner(&meta, path).map_err(|e| e.to_string())
}

/// This boot's id (empty where the kernel gives none).
pub fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// The journal directory of a container under the staging directory: one name per service
/// endpoint and container (safe characters only), so mounts of different containers never
/// see each other's files.
pub fn container_dir(staging_dir: &Path, container: &crate::blob::ContainerUrl) -> PathBuf {
    let raw = container.display();
    let raw = raw
        .split_once("://")
        .map_or(raw.as_str(), |(_, rest)| rest)
        .to_string();
    let safe: String = raw
        .chars()
        .map(|c| match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '.' | '-' => c,
            _ => '_',
        })
        .collect();
    staging_dir.join("journal").join(safe)
}

mod dir;
pub use dir::{Entry, JournalDir, Opened};

#[cfg(test)]
mod tests;
