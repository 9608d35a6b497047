//! Write staging: the new version of one blob, built while programs write.
//!
//! - Written bytes go to an unlinked local file (a sparse mirror of the blob's blocks), so
//!   memory does not grow with file size, programs read back what they wrote, and a block can
//!   be written again after it was uploaded.
//! - The blob is cut in blocks of the block size. A block the writer has moved past is uploaded
//!   at once with Put Block (several in parallel), under an id unique to this upload.
//! - Bytes written but not yet uploaded hold a share of the mount-wide write budget; a writer
//!   that would exceed it waits (backpressure) while uploads catch up.
//! - The commit (close, fsync) uploads what is left, has the service copy untouched ranges of
//!   the version writing started from (Put Block From URL, or the ids of a previous commit),
//!   and commits with one conditional Put Block List: the blob is the old or the new version.
//! - Bytes of the old version needed to complete a partly written block are read from the
//!   service; if they cannot be, the write fails (never filled with zeros).

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::ops::RangeInclusive;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::time::SystemTime;

use base64::Engine;
use bytes::Bytes;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;

use super::grid::Grid;
use crate::blob::{BlobClient, BlobError, Committed, ErrorKind, WriteOptions};

/// The mount-wide budget of bytes written but not yet uploaded.
pub struct WriteBudget {
    sem: Arc<Semaphore>,
    bytes: u64,
    /// Signalled when a writer has waited a while: other files' dirty blocks should go up.
    pub pressure: tokio::sync::Notify,
}

impl WriteBudget {
    pub fn new(bytes: u64) -> Arc<Self> {
        let permits = bytes.min(Semaphore::MAX_PERMITS as u64) as usize;
        Arc::new(WriteBudget {
            sem: Arc::new(Semaphore::new(permits)),
            bytes,
            pressure: tokio::sync::Notify::new(),
        })
    }

    pub fn available(&self) -> u64 {
        self.sem.available_permits() as u64
    }

    pub fn total(&self) -> u64 {
        self.bytes
    }

    /// What is held now: the shares of blocks written and not yet uploaded, uploads in
    /// progress included (a block whose upload failed holds none until it is written again).
    pub fn in_use(&self) -> u64 {
        (self.bytes.min(Semaphore::MAX_PERMITS as u64)).saturating_sub(self.available())
    }

    /// What a block of `len` bytes holds of the budget while it is written and uploaded: all
    /// of it, up to half the budget. Larger blocks (only in files of thousands of blocks) are
    /// uploaded straight from the local copy, so they need no more memory than that.
    pub fn share(&self, len: u64) -> u64 {
        len.min(self.bytes / 2).max(1)
    }

    fn try_take(&self, n: u64) -> Option<OwnedSemaphorePermit> {
        self.sem.clone().try_acquire_many_owned(n as u32).ok()
    }

    async fn take(&self, n: u64) -> OwnedSemaphorePermit {
        self.sem
            .clone()
            .acquire_many_owned(n as u32)
            .await
            .expect("the write budget is never closed")
    }
}

/// The version writing started from, still part of the file up to `len`.
#[derive(Debug, Clone)]
struct Base {
    etag: Arc<str>,
    len: u64,
}

enum Block {
    /// Written locally and not uploaded since; holds its share of the budget (none after a
    /// failed upload).
    Dirty(Option<OwnedSemaphorePermit>),
    /// Being uploaded under this id.
    Uploading(String, JoinHandle<Result<(), BlobError>>),
    /// Staged in the service under this id, identical to the local copy.
    Staged(String),
}

pub struct Staging {
    client: Arc<dyn BlobClient>,
    budget: Arc<WriteBudget>,
    blob: Arc<str>,
    file: Arc<File>,
    size: u64,
    base: Option<Base>,
    /// The commit condition: `If-Match` this ETag, or (None) `If-None-Match: *`.
    expect: Option<Arc<str>>,
    grid: Grid,
    blocks: BTreeMap<u64, Block>,
    /// Blocks whose bytes are all in the local copy (written, or completed from the old
    /// version before a write): what a sibling can be made of without the old version.
    local: std::collections::BTreeSet<u64>,
    /// Block ids of the last commit made here, by index: reused for untouched blocks.
    committed_ids: Vec<String>,
    upload_id: u64,
    next_seq: u64,
    metadata: HashMap<String, String>,
    mtime: SystemTime,
    /// Commits of this staging that ended without an answer (each may have gone through),
    /// since the last one known to have: a conflict at a later commit may be one of them.
    unanswered: Vec<Attempt>,
    /// What the commit under way sends as its final request.
    attempt: Option<Attempt>,
}

/// What a commit asked the service to make of the blob (to recognise it later).
#[derive(Debug, Clone)]
enum Attempt {
    /// Put Block List of these ids (unique to this upload).
    Blocks(Vec<String>),
    /// Put Blob of an empty file with this metadata.
    Empty(HashMap<String, String>),
}

/// Where the stagings of one mount come from: its client, write budget, local directory and
/// block size.
#[derive(Clone)]
pub struct StagingArea {
    pub client: Arc<dyn BlobClient>,
    pub budget: Arc<WriteBudget>,
    pub dir: std::path::PathBuf,
    pub grid: Grid,
}

impl StagingArea {
    /// A staging for `blob`. `existing` is the current version (ETag and size) if the blob
    /// exists; with `truncate`, its content is dropped (the file starts empty), otherwise the
    /// file starts as that version. `metadata` goes to the new version.
    pub fn stage(
        &self,
        blob: Arc<str>,
        existing: Option<(Arc<str>, u64)>,
        truncate: bool,
        metadata: HashMap<String, String>,
    ) -> std::io::Result<Staging> {
        let file = tempfile::tempfile_in(&self.dir)?;
        let (size, base, expect) = match existing {
            Some((etag, len)) if !truncate => (
                len,
                Some(Base {
                    etag: etag.clone(),
                    len,
                }),
                Some(etag),
            ),
            Some((etag, _)) => (0, None, Some(etag)),
            None => (0, None, None),
        };
        Ok(Staging {
            client: self.client.clone(),
            budget: self.budget.clone(),
            blob,
            file: Arc::new(file),
            size,
            base,
            expect,
            grid: self.grid.clone(),
            blocks: BTreeMap::new(),
            local: Default::default(),
            committed_ids: Vec::new(),
            upload_id: fastrand::u64(..),
            next_seq: 0,
            metadata,
            mtime: SystemTime::now(),
            unanswered: Vec::new(),
            attempt: None,
        })
    }
}

impl Staging {
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The blob this staging commits to.
    pub fn blob(&self) -> &str {
        &self.blob
    }

    /// The version of that blob the commit replaces (`If-Match`), if it is one.
    pub fn expected_etag(&self) -> Option<&str> {
        self.expect.as_deref()
    }

    /// Whether an earlier commit ended without an answer: the blob may hold this content
    /// already, under a version not known here.
    pub fn is_unsure(&self) -> bool {
        !self.unanswered.is_empty()
    }

    pub fn mtime(&self) -> SystemTime {
        self.mtime
    }

    /// Sets (or removes) a metadata entry of the new version (chmod, utimes); applied at the
    /// next commit.
    pub fn set_meta(&mut self, key: &str, value: Option<String>) {
        match value {
            Some(v) => self.metadata.insert(key.to_string(), v),
            None => self.metadata.remove(key),
        };
    }

    /// The committed file was renamed (copied) to `blob`, whose version is `etag`: later
    /// commits go there. Only for a staging with nothing uncommitted (the file's lifecycle
    /// says so: see [`super::lifecycle::FileState::is_settled`]).
    pub fn moved_to(&mut self, blob: Arc<str>, etag: Arc<str>) {
        self.blob = blob;
        self.base = Some(Base {
            etag: etag.clone(),
            len: self.size,
        });
        self.expect = Some(etag);
        // Block ids were the old blob's: untouched ranges are copied from the new one instead.
        self.committed_ids.clear();
        self.blocks.clear();
    }

    /// The file as it stands, in the form listings and HEADs give (for attributes).
    pub fn props(&self, etag: &str, last_modified: SystemTime) -> crate::blob::BlobProps {
        crate::blob::BlobProps {
            name: self.blob.to_string(),
            size: self.size,
            etag: etag.to_string(),
            last_modified,
            metadata: self.metadata.clone(),
        }
    }

    /// Block ids: fixed length (base64 of 32 hex digits), unique to this upload.
    fn new_id(&mut self) -> String {
        self.next_seq += 1;
        base64::engine::general_purpose::STANDARD
            .encode(format!("{:016x}{:016x}", self.upload_id, self.next_seq))
    }

    fn block_extent(&self, index: u64) -> (u64, u64) {
        self.grid.range(index, self.size)
    }

    /// A failure of the local copy (StorageFull when the staging disk is full).
    fn io_error(&self, op: &'static str, e: std::io::Error) -> BlobError {
        BlobError::new(
            ErrorKind::Local(e.kind()),
            op,
            &self.blob,
            format!("local staging file: {e}"),
        )
    }

    /// Makes block `index` writable: waits out its upload, loads the old version's bytes it
    /// needs (unless `covered`: the write replaces all of them), and takes its budget share.
    /// Blocks in `busy` (those of the write in progress) are not uploaded to make room.
    async fn touch(
        &mut self,
        index: u64,
        covered: bool,
        busy: RangeInclusive<u64>,
    ) -> Result<(), BlobError> {
        match self.blocks.remove(&index) {
            Some(Block::Dirty(p)) => {
                self.blocks.insert(index, Block::Dirty(p));
                return Ok(());
            }
            Some(Block::Uploading(_, handle)) => {
                // The local copy is intact; the upload is simply superseded.
                let _ = handle.await;
            }
            Some(Block::Staged(_)) | None => {}
        }
        // A block staged by the service (copied from the old version) or never touched has
        // its old bytes in the service only.
        if !covered && !self.local.contains(&index) {
            self.load_base(index).await?;
        }
        self.local.insert(index);
        let permit = self.reserve(index, busy).await;
        self.blocks.insert(index, Block::Dirty(Some(permit)));
        Ok(())
    }

    /// Takes one block's share of the budget; if it is all taken, uploads this file's other
    /// dirty blocks first, then waits.
    async fn reserve(&mut self, index: u64, busy: RangeInclusive<u64>) -> OwnedSemaphorePermit {
        let n = self.budget.share(self.grid.extent(index).1);
        if let Some(p) = self.budget.try_take(n) {
            return p;
        }
        self.upload_dirty(|i| !busy.contains(&i));
        let take = self.budget.take(n);
        tokio::pin!(take);
        loop {
            tokio::select! {
                p = &mut take => return p,
                // Still waiting: the budget is held by other files' dirty blocks.
                _ = tokio::time::sleep(std::time::Duration::from_millis(200)) => {
                    self.budget.pressure.notify_one();
                }
            }
        }
    }

    /// Starts uploading every dirty block (to free the write budget).
    pub fn flush_dirty(&mut self) {
        self.upload_dirty(|_| true);
    }

    /// Copies every byte of the version writing started from that is not local yet into the
    /// local copy, so the file no longer needs that version (which is about to be replaced
    /// while the file stays open).
    pub async fn materialize(&mut self) -> Result<(), BlobError> {
        let n = self.grid.count(self.size);
        for index in 0..n {
            if !self.local.contains(&index) {
                self.load_base(index).await?;
                self.local.insert(index);
            }
        }
        self.base = None;
        Ok(())
    }

    /// Copies the old version's bytes of block `index` into the local file.
    async fn load_base(&mut self, index: u64) -> Result<(), BlobError> {
        let Some(base) = self.base.clone() else {
            return Ok(());
        };
        let (start, full) = self.grid.extent(index);
        if start >= base.len {
            return Ok(());
        }
        let len = full.min(base.len - start);
        let data = self
            .client
            .get_range(&self.blob, start, len, Some(&base.etag))
            .await?;
        if data.len() as u64 != len {
            return Err(BlobError::new(
                ErrorKind::Other,
                "Get Blob",
                &self.blob,
                "short read of the old version",
            ));
        }
        self.write_local(start, data).await
    }

    async fn write_local(&self, offset: u64, data: Bytes) -> Result<(), BlobError> {
        let file = self.file.clone();
        tokio::task::spawn_blocking(move || file.write_all_at(&data, offset))
            .await
            .map_err(|e| self.io_error("write", std::io::Error::other(e)))?
            .map_err(|e| self.io_error("write", e))
    }

    async fn read_local(&self, offset: u64, len: u64) -> Result<Vec<u8>, BlobError> {
        let file = self.file.clone();
        tokio::task::spawn_blocking(move || crate::blob::read_file_range(&file, offset, len))
            .await
            .map_err(|e| self.io_error("read", std::io::Error::other(e)))?
            .map_err(|e| self.io_error("read", e))
    }

    /// Writes `data` at `offset`. Blocks the writer has moved past are uploaded.
    pub async fn write(&mut self, offset: u64, data: &[u8]) -> Result<(), BlobError> {
        // A write past the end grows the block holding the old end (zeros follow its bytes):
        // it becomes a local block, to be sent again at its new length.
        if offset > self.size {
            let index = self.grid.index_of(self.size);
            if self.grid.extent(index).0 != self.size {
                self.touch(index, false, index..=index).await?;
            }
        }
        // The new size first: a block uploaded while this write waits for room (to free the
        // budget) is sent at its length in the grown file, never cut at the old end.
        let old_size = self.size;
        self.size = self.size.max(offset + data.len() as u64);
        let result = self.write_blocks(offset, data, old_size).await;
        if let Err(at) = &result {
            // Failed part way: the file ends where what was written ends.
            self.size = old_size.max(at.0);
        }
        result.map_err(|(_, e)| e)
    }

    /// The block-by-block part of [`Staging::write`]; on failure, how far it had written.
    async fn write_blocks(
        &mut self,
        offset: u64,
        data: &[u8],
        old_size: u64,
    ) -> Result<(), (u64, BlobError)> {
        // Block by block, so a write spanning many blocks holds the budget for one at a time
        // and the blocks it has finished go up while it goes on.
        let mut at = 0usize;
        while at < data.len() {
            let pos = offset + at as u64;
            let index = self.grid.index_of(pos);
            let (start, full) = self.grid.extent(index);
            let seg_end = (offset + data.len() as u64).min(start + full);
            let base_len = self.base.as_ref().map_or(0, |b| b.len);
            let old_end = (start + full).min(base_len.max(old_size));
            let covered = pos <= start && seg_end >= old_end;
            self.touch(index, covered, index..=index)
                .await
                .map_err(|e| (pos, e))?;
            let seg = &data[at..(seg_end - offset) as usize];
            self.write_local(pos, Bytes::copy_from_slice(seg))
                .await
                .map_err(|e| (pos, e))?;
            self.mtime = SystemTime::now();
            // Written now: a time set earlier (utimes) no longer holds.
            self.metadata.remove(super::inode::META_MTIME);
            // Sequential writers: every block before this one is done.
            self.upload_dirty(|i| i < index);
            at += seg.len();
        }
        Ok(())
    }

    /// Starts uploading the dirty blocks `which` selects.
    fn upload_dirty(&mut self, which: impl Fn(u64) -> bool) {
        let ready: Vec<u64> = self
            .blocks
            .iter()
            .filter(|(i, b)| matches!(b, Block::Dirty(_)) && which(**i))
            .map(|(i, _)| *i)
            .collect();
        for index in ready {
            let Some(Block::Dirty(permit)) = self.blocks.remove(&index) else {
                continue;
            };
            let (start, len) = self.block_extent(index);
            if len == 0 {
                continue; // truncated away
            }
            let id = self.new_id();
            let (client, blob, file, id2) = (
                self.client.clone(),
                self.blob.clone(),
                self.file.clone(),
                id.clone(),
            );
            let handle = tokio::spawn(async move {
                let _permit = permit; // the budget share is released when the upload ends
                client
                    .put_block_from_file(&blob, &id2, file, start, len)
                    .await
            });
            self.blocks.insert(index, Block::Uploading(id, handle));
        }
    }

    /// Reads what the file holds now: written blocks from the local copy, the rest from the
    /// version writing started from, zeros past it. If that version is gone because an
    /// unanswered commit of this staging landed, the rest reads from that commit.
    pub async fn read(&mut self, offset: u64, len: u64) -> Result<Bytes, BlobError> {
        match self.read_once(offset, len).await {
            Err(e) if is_conflict(&e) && !self.unanswered.is_empty() => {
                match self.earlier_commit_landed().await {
                    Ok(Some(c)) => {
                        self.build_on(&c);
                        self.read_once(offset, len).await
                    }
                    Ok(None) | Err(_) => Err(e),
                }
            }
            other => other,
        }
    }

    async fn read_once(&self, offset: u64, len: u64) -> Result<Bytes, BlobError> {
        if offset >= self.size || len == 0 {
            return Ok(Bytes::new());
        }
        let len = len.min(self.size - offset);
        let (first, last) = self.grid.span(offset, len);
        let base_len = self.base.as_ref().map_or(0, |b| b.len);
        let mut out = Vec::with_capacity(len as usize);
        for index in first..=last {
            let (bstart, blen) = self.block_extent(index);
            let from = offset.max(bstart);
            let to = (offset + len).min(bstart + blen);
            // Local: written (or completed) here; beyond the old version: zeros. A block the
            // service staged from the old version (or never touched) reads from that version.
            if self.local.contains(&index) || from >= base_len {
                out.extend_from_slice(&self.read_local(from, to - from).await?);
            } else {
                let base = self.base.as_ref().expect("base_len > 0");
                let upto = to.min(base.len);
                let data = self
                    .client
                    .get_range(&self.blob, from, upto - from, Some(&base.etag))
                    .await?;
                out.extend_from_slice(&data);
                out.resize(out.len() + (to - upto) as usize, 0);
            }
        }
        Ok(Bytes::from(out))
    }

    /// Changes the size (truncate or extend with zeros).
    pub async fn set_size(&mut self, size: u64) -> Result<(), BlobError> {
        if size == self.size {
            return Ok(());
        }
        // The block holding the new end keeps part of its bytes: make it a local block.
        let boundary = size.min(self.size);
        let index = self.grid.index_of(boundary);
        if self.grid.extent(index).0 != boundary {
            self.touch(index, false, index..=index).await?;
        }
        let file = self.file.clone();
        let (local_end, new_len) = (self.size.min(size), size);
        tokio::task::spawn_blocking(move || {
            // Zero what lies past the old end locally, then size the file.
            file.set_len(local_end)?;
            file.set_len(new_len)
        })
        .await
        .map_err(|e| self.io_error("truncate", std::io::Error::other(e)))?
        .map_err(|e| self.io_error("truncate", e))?;
        if let Some(b) = self.base.as_mut() {
            b.len = b.len.min(size);
        }
        let keep = self.grid.count(size);
        self.blocks.retain(|i, _| *i < keep);
        self.local.retain(|i| *i < keep);
        self.committed_ids.truncate(
            self.grid
                .count(size.min(self.base.as_ref().map_or(0, |b| b.len))) as usize,
        );
        self.size = size;
        self.mtime = SystemTime::now();
        Ok(())
    }

    /// Uploads what is left and commits the new version with one Put Block List (an empty
    /// file: one Put Blob), conditional on the version writing started from.
    pub async fn commit(&mut self) -> Result<Committed, BlobError> {
        let mut result = self.commit_once().await;
        if matches!(&result, Err(e) if is_conflict(e)) && !self.unanswered.is_empty() {
            // An earlier commit whose answer never came may have landed: the blob is then that
            // commit, and this one goes on top of it.
            match self.earlier_commit_landed().await {
                Ok(Some(c)) => {
                    self.build_on(&c);
                    result = self.commit_once().await;
                }
                Ok(None) => {}
                Err(check) => {
                    if let Err(e) = &result {
                        result = Err(crate::blob::outcome_unknown(e, &check));
                    }
                }
            }
        }
        let attempt = self.attempt.take();
        match &result {
            Ok(_) => self.unanswered.clear(),
            Err(e) if e.may_have_applied() => self.unanswered.extend(attempt),
            Err(_) => {}
        }
        result
    }

    /// An unanswered earlier commit is known to have landed as `c`: the blob is that commit,
    /// and what follows builds on it.
    fn build_on(&mut self, c: &Committed) {
        self.unanswered.clear();
        self.expect = Some(c.etag.as_str().into());
        if let Some(b) = self.base.as_mut() {
            // Its bytes are this file's as they were then: those not changed since read the
            // same from it.
            b.etag = c.etag.as_str().into();
        }
        self.committed_ids.clear();
    }

    /// The blob's version if it is what one of the unanswered earlier commits made; an error
    /// if it cannot be told.
    async fn earlier_commit_landed(&self) -> Result<Option<Committed>, BlobError> {
        for attempt in self.unanswered.iter().rev() {
            let found = match attempt {
                Attempt::Blocks(ids) => self.already_committed(&self.blob, ids).await?,
                Attempt::Empty(metadata) => {
                    crate::blob::own_put_blob(self.client.as_ref(), &self.blob, b"", metadata)
                        .await?
                }
            };
            if found.is_some() {
                return Ok(found);
            }
        }
        Ok(None)
    }

    async fn commit_once(&mut self) -> Result<Committed, BlobError> {
        let opts = WriteOptions {
            if_match: self.expect.as_deref().map(str::to_string),
            if_none_match_any: self.expect.is_none(),
            metadata: self.metadata.clone(),
            content_type: None,
        };
        if self.size == 0 {
            self.attempt = Some(Attempt::Empty(opts.metadata.clone()));
            let c = self.put_empty(&self.blob.clone(), &opts).await?;
            self.committed(c.clone(), Vec::new());
            return Ok(c);
        }
        self.upload_dirty(|_| true);
        let n = self.grid.count(self.size);
        let base = self.base.clone();
        if let (true, Some(b)) = (self.committed_ids.is_empty(), &base) {
            let untouched =
                (0..n).any(|i| !self.blocks.contains_key(&i) && self.grid.extent(i).0 < b.len);
            if untouched {
                self.committed_ids = self.reusable_ids(b).await;
            }
        }
        let mut ids = Vec::with_capacity(n as usize);
        // Uploads to wait for: (index whose state they settle, id, upload, whether it was
        // sent from the local copy). Each is recorded as staged once done, so a commit tried
        // again sends the same ids (and can tell its own earlier success).
        let mut pending = Vec::new();
        for index in 0..n {
            let (start, len) = self.block_extent(index);
            match self.blocks.remove(&index) {
                Some(Block::Uploading(id, handle)) => {
                    pending.push((index, id.clone(), handle, true));
                    ids.push(id);
                }
                Some(Block::Staged(id)) => {
                    self.blocks.insert(index, Block::Staged(id.clone()));
                    ids.push(id);
                }
                Some(Block::Dirty(_)) => unreachable!("all dirty blocks were just sent"),
                None => {
                    let id = match (self.committed_ids.get(index as usize), &base) {
                        (Some(id), _) => {
                            ids.push(id.clone());
                            continue;
                        }
                        (None, Some(b)) if start + len <= b.len => {
                            // Unchanged range of the old version: the service copies it.
                            let id = self.new_id();
                            let (client, blob, etag, id2) = (
                                self.client.clone(),
                                self.blob.clone(),
                                b.etag.clone(),
                                id.clone(),
                            );
                            let h = tokio::spawn(async move {
                                client
                                    .put_block_from_url(&blob, &id2, &blob, start, len, Some(&etag))
                                    .await
                            });
                            pending.push((index, id.clone(), h, false));
                            id
                        }
                        _ => {
                            // Never written and past the old version: zeros (a hole).
                            let id = self.new_id();
                            let (client, blob, id2) =
                                (self.client.clone(), self.blob.clone(), id.clone());
                            // The local copy reads zeros there (sparse).
                            let file = self.file.clone();
                            let h = tokio::spawn(async move {
                                client
                                    .put_block_from_file(&blob, &id2, file, start, len)
                                    .await
                            });
                            pending.push((index, id.clone(), h, true));
                            id
                        }
                    };
                    ids.push(id);
                }
            }
        }
        let mut failure = None;
        for (index, id, handle, from_local) in pending {
            let result = handle.await.unwrap_or_else(|e| {
                Err(BlobError::new(
                    ErrorKind::Other,
                    "Put Block",
                    &self.blob,
                    e.to_string(),
                ))
            });
            match result {
                Ok(()) => {
                    self.blocks.insert(index, Block::Staged(id));
                }
                Err(e) => {
                    if from_local && self.local.contains(&index) {
                        // The local copy is intact: send it again at the next commit.
                        self.blocks.insert(index, Block::Dirty(None));
                    }
                    failure.get_or_insert(e);
                }
            }
        }
        if let Some(e) = failure {
            return Err(e);
        }
        self.attempt = Some(Attempt::Blocks(ids.clone()));
        let c = self.put_block_list(&self.blob.clone(), &ids, &opts).await?;
        self.committed(c.clone(), ids);
        Ok(c)
    }

    /// Put Block List, recognising its own success after a lost answer: a retry then looks
    /// like a conflict (412, or 409 BlobAlreadyExists), but the blob already is exactly these
    /// blocks (the ids of the blocks this upload sent are unique to it).
    async fn put_block_list(
        &self,
        name: &str,
        ids: &[String],
        opts: &WriteOptions,
    ) -> Result<Committed, BlobError> {
        match self.client.put_block_list(name, ids, opts).await {
            Err(e) if is_conflict(&e) => {
                // Only a commit that may have gone through already can meet itself; any other
                // conflict is someone else's version (block ids may be reused across mounts).
                if e.after_lost_answer || !self.unanswered.is_empty() {
                    match self.already_committed(name, ids).await {
                        Ok(Some(c)) => return Ok(c),
                        Ok(None) => {}
                        Err(check) => return Err(crate::blob::outcome_unknown(&e, &check)),
                    }
                }
                for opts in self.instead_of_uncommitted(name, opts, &e).await? {
                    match self.client.put_block_list(name, ids, &opts).await {
                        Err(e) if e.kind == ErrorKind::ConditionNotMet => continue,
                        r => return r,
                    }
                }
                Err(e)
            }
            r => r,
        }
    }

    /// After `If-None-Match: *` met a blob of uncommitted blocks only: the condition that
    /// replaces exactly that (see [`crate::blob::over_uncommitted`]).
    async fn instead_of_uncommitted(
        &self,
        name: &str,
        opts: &WriteOptions,
        e: &BlobError,
    ) -> Result<Vec<WriteOptions>, BlobError> {
        if !opts.if_none_match_any || e.kind != ErrorKind::AlreadyExists {
            return Ok(Vec::new());
        }
        crate::blob::over_uncommitted(self.client.as_ref(), name, opts).await
    }

    /// Put Blob of an empty file. After a lost answer, a conflict is its own success when the
    /// blob is empty with exactly this file's metadata (identical to what it would have been).
    async fn put_empty(&self, name: &str, opts: &WriteOptions) -> Result<Committed, BlobError> {
        match self.client.put_blob(name, Bytes::new(), opts).await {
            Err(e) if is_conflict(&e) => {
                if e.after_lost_answer || !self.unanswered.is_empty() {
                    let client = self.client.as_ref();
                    match crate::blob::own_put_blob(client, name, b"", &opts.metadata).await {
                        Ok(Some(c)) => return Ok(c),
                        Ok(None) => {}
                        Err(check) => return Err(crate::blob::outcome_unknown(&e, &check)),
                    }
                }
                for opts in self.instead_of_uncommitted(name, opts, &e).await? {
                    match self.client.put_blob(name, Bytes::new(), &opts).await {
                        Err(e) if e.kind == ErrorKind::ConditionNotMet => continue,
                        r => return r,
                    }
                }
                Err(e)
            }
            r => r,
        }
    }

    /// Commits this file's content beside its blob, as `BLOB.KIND-<UTC time>` (`-2`, `-3`… if
    /// taken; KIND is `conflict` after a conflict, `partial` for unfinished content at
    /// shutdown), and goes on there: further writes and commits of this staging go to the
    /// sibling. Ranges left unchanged from the version writing started from are copied from
    /// it, which fails if it no longer exists.
    pub async fn save_as_sibling(&mut self, kind: &str) -> Result<String, BlobError> {
        let fmt = time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");
        let stamp = time::OffsetDateTime::now_utc()
            .format(&fmt)
            .unwrap_or_default();
        let blob = self.blob.clone();
        let mut last = None;
        for n in 1..=5 {
            let name = match n {
                1 => format!("{blob}.{kind}-{stamp}"),
                n => format!("{blob}.{kind}-{stamp}-{n}"),
            };
            match self.save_as(&name).await {
                Ok((c, ids)) => {
                    self.blob = name.as_str().into();
                    self.committed(c, ids);
                    return Ok(name);
                }
                Err(e) if e.kind == ErrorKind::AlreadyExists => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.expect("tried at least once"))
    }

    /// Commits this file's content as the new blob `name` (`If-None-Match: *`); gives the
    /// version and its block ids.
    async fn save_as(&mut self, name: &str) -> Result<(Committed, Vec<String>), BlobError> {
        let n = self.grid.count(self.size);
        let base = self.base.clone();
        // Settle uploads in flight (their ids belong to the old name).
        for (_, b) in std::mem::take(&mut self.blocks) {
            if let Block::Uploading(_, h) = b {
                let _ = h.await;
            }
        }
        let opts = WriteOptions {
            if_none_match_any: true,
            metadata: self.metadata.clone(),
            ..Default::default()
        };
        if n == 0 {
            return Ok((self.put_empty(name, &opts).await?, Vec::new()));
        }
        let mut ids = Vec::with_capacity(n as usize);
        for index in 0..n {
            let (start, len) = self.block_extent(index);
            let id = self.new_id();
            match &base {
                Some(b) if !self.local.contains(&index) && start + len <= b.len => {
                    // Unchanged since the old version: the service copies it, if it still
                    // exists.
                    self.client
                        .put_block_from_url(name, &id, &self.blob, start, len, Some(&b.etag))
                        .await
                        .map_err(|e| match e.kind {
                            ErrorKind::ConditionNotMet | ErrorKind::NotFound => BlobError::new(
                                ErrorKind::Other,
                                "Put Block List",
                                name,
                                "parts of the file left unchanged belong to a version that no longer exists",
                            ),
                            _ => e,
                        })?;
                }
                _ => {
                    self.client
                        .put_block_from_file(name, &id, self.file.clone(), start, len)
                        .await?;
                }
            }
            ids.push(id);
        }
        let c = self.put_block_list(name, &ids, &opts).await?;
        Ok((c, ids))
    }

    /// The version of blob `name` if its committed blocks are exactly `ids` (ids are unique
    /// to this upload: nobody else commits them); an error if it cannot be told.
    async fn already_committed(
        &self,
        name: &str,
        ids: &[String],
    ) -> Result<Option<Committed>, BlobError> {
        let list = match self.client.get_block_list(name, None).await {
            Ok(list) => list,
            Err(e) if e.kind == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        if list.len() != ids.len() || list.iter().zip(ids).any(|(b, id)| &b.id != id) {
            return Ok(None);
        }
        let p = self.client.properties(name).await?;
        tracing::info!(
            blob = name,
            "the commit had gone through (its answer was lost)"
        );
        Ok(Some(Committed {
            etag: p.etag,
            last_modified: p.last_modified,
        }))
    }

    /// The committed block ids of the old version, if they can be reused as they are: cut on
    /// this mount's block grid and of the same id length (a blob's ids must all have one
    /// length). Otherwise none, and unchanged ranges are copied by the service instead.
    async fn reusable_ids(&self, base: &Base) -> Vec<String> {
        let list = match self
            .client
            .get_block_list(&self.blob, Some(&base.etag))
            .await
        {
            Ok(l) => l,
            Err(e) => {
                tracing::debug!(blob = %self.blob, "no block list to reuse: {e}");
                return Vec::new();
            }
        };
        let id_len = self.id_len();
        let on_grid = list.split_last().is_some_and(|(last, rest)| {
            rest.iter()
                .enumerate()
                .all(|(i, b)| b.size == self.grid.extent(i as u64).1)
                && last.size > 0
                && last.size <= self.grid.extent(rest.len() as u64).1
        });
        if !on_grid || list.iter().any(|b| b.id.len() != id_len) {
            return Vec::new();
        }
        list.into_iter().map(|b| b.id).collect()
    }

    /// The length of this upload's block ids.
    fn id_len(&self) -> usize {
        base64::engine::general_purpose::STANDARD
            .encode([0u8; 32])
            .len()
    }

    /// After a commit: the new version is the base of further writes.
    fn committed(&mut self, c: Committed, ids: Vec<String>) {
        let etag: Arc<str> = c.etag.as_str().into();
        self.base = Some(Base {
            etag: etag.clone(),
            len: self.size,
        });
        self.expect = Some(etag);
        self.committed_ids = ids;
        self.blocks.clear();
        self.unanswered.clear();
    }
}

/// Whether a conditional write failed because the blob changed (412) or exists (409).
pub fn is_conflict(e: &BlobError) -> bool {
    e.kind == ErrorKind::ConditionNotMet || e.kind == ErrorKind::AlreadyExists
}

#[cfg(test)]
#[path = "staging_tests.rs"]
mod tests;
