//! A file being written: its local copy and its blocks, while programs write.
//!
//! - Written bytes go to an unlinked local file (a sparse mirror of the blob's blocks), so
//!   memory does not grow with file size, programs read back what they wrote, and a block can
//!   be written again after it was uploaded.
//! - The blob is cut in blocks of the block size ([`Grid`]). A block the writer has moved past
//!   is uploaded at once with Put Block (several in parallel), under an id unique to this upload.
//! - Bytes written but not yet uploaded hold a share of the [`WriteBudget`].
//! - Bytes of the old version needed to complete a partly written block are read from the
//!   service; if they cannot be, the write fails (never filled with zeros).
//!
//! The commit is in [`super::commit`].

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::File;
use std::ops::RangeInclusive;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::time::SystemTime;

use base64::Engine;
use bytes::Bytes;
use tokio::sync::{OnceCell, OwnedSemaphorePermit};
use tokio::task::JoinHandle;

use super::budget::WriteBudget;
use super::grid::Grid;
use super::journal::{self, Attempt, Durable, Entry, JournalDir, Record};
use super::reuse::{ReuseIndex, Staged};
use crate::blob::{BlobClient, BlobError, ErrorKind};

/// The version writing started from, still part of the file up to `len`.
#[derive(Debug, Clone)]
pub(super) struct Base {
    pub(super) etag: Arc<str>,
    pub(super) len: u64,
}

pub(super) enum Block {
    /// Written locally and not uploaded since; holds its share of the budget (none after a
    /// failed upload).
    Dirty(Option<OwnedSemaphorePermit>),
    /// Being uploaded under this id; the upload gives the id the block is staged under in
    /// the end (another one when an interrupted write had staged the same bytes there: see
    /// [`super::reuse`]).
    Uploading(String, JoinHandle<Result<String, BlobError>>),
    /// Staged in the service under this id, identical to the local copy.
    Staged(String),
}

pub struct Staging {
    pub(super) client: Arc<dyn BlobClient>,
    pub(super) budget: Arc<WriteBudget>,
    pub(super) blob: Arc<str>,
    pub(super) file: Arc<File>,
    pub(super) size: u64,
    pub(super) base: Option<Base>,
    /// The commit condition: `If-Match` this ETag, or (None) `If-None-Match: *`.
    pub(super) expect: Option<Arc<str>>,
    pub(super) grid: Grid,
    pub(super) blocks: BTreeMap<u64, Block>,
    /// Blocks whose bytes are all in the local copy (written, or completed from the old
    /// version before a write): what a sibling can be made of without the old version.
    pub(super) local: BTreeSet<u64>,
    /// Block ids of the last commit made here, by index: reused for untouched blocks.
    pub(super) committed_ids: Vec<String>,
    pub(super) upload_id: u64,
    pub(super) next_seq: u64,
    pub(super) metadata: HashMap<String, String>,
    pub(super) mtime: SystemTime,
    /// Commits of this staging that ended without an answer (each may have gone through),
    /// since the last one known to have: a conflict at a later commit may be one of them.
    pub(super) unanswered: Vec<Attempt>,
    /// What the commit under way sends as its final request.
    pub(super) attempt: Option<Attempt>,
    /// Its journal (record and named local copy), when the mount keeps one.
    pub(super) journal: Option<Arc<Entry>>,
    /// What the journal record says of the content (kept here so that a write after a close
    /// rewrites the record once, not at every write).
    pub(super) durable: Durable,
    /// Whether the local copy was flushed to disk since it last changed (a finish with `sync`
    /// that follows a metadata change only, e.g. `utimes` after close, flushes nothing again).
    pub(super) data_synced: bool,
    /// Blocks an interrupted write staged, offered to this one (None: never reused).
    pub(super) reuse: Option<Arc<ReuseIndex>>,
    /// The blob's uncommitted blocks (id, length), asked once, at the first block that
    /// matches one on offer.
    pub(super) in_service: Arc<OnceCell<HashMap<String, u64>>>,
}

/// Where the stagings of one mount come from: its client, write budget, local directory and
/// block size, and its journal directory (None: unlinked local copies, nothing survives the
/// process).
#[derive(Clone)]
pub struct StagingArea {
    pub client: Arc<dyn BlobClient>,
    pub budget: Arc<WriteBudget>,
    pub dir: std::path::PathBuf,
    pub grid: Grid,
    pub journal: Option<Arc<JournalDir>>,
    /// Blocks interrupted writes staged, offered to new writes of the same blob.
    pub reuse: Option<Arc<ReuseIndex>>,
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
        // A new or truncated file is a change before any write; an existing one opened as it
        // is has nothing to finish yet.
        let durable = if base.is_some() {
            Durable::Committed
        } else {
            Durable::Unfinished
        };
        let upload_id = fastrand::u64(..);
        let file = match &self.journal {
            Some(dir) => dir.new_data_file(upload_id)?,
            None => tempfile::tempfile_in(&self.dir)?,
        };
        // As long as the file (sparse: nothing is written), so the local copy's length is the
        // file's size at every point, as the journal expects.
        if let Err(e) = file.set_len(size) {
            if let Some(dir) = &self.journal {
                dir.remove_data_file(upload_id);
            }
            return Err(e);
        }
        let mut staging = Staging {
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
            upload_id,
            next_seq: 0,
            metadata,
            mtime: SystemTime::now(),
            unanswered: Vec::new(),
            attempt: None,
            journal: None,
            durable,
            data_synced: false,
            reuse: self.reuse.clone(),
            in_service: Default::default(),
        };
        if let Some(dir) = &self.journal {
            let mut record = Record::empty(dir.boot_id());
            staging.snapshot(&mut record);
            match dir.entry(record) {
                Ok(entry) => staging.journal = Some(Arc::new(entry)),
                Err(e) => {
                    dir.remove_data_file(upload_id);
                    return Err(e);
                }
            }
        }
        Ok(staging)
    }
}

impl Staging {
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Fills the journal record with what this staging holds (all but the blocks sent, which
    /// the uploads record as they finish).
    pub(super) fn snapshot(&self, r: &mut Record) {
        r.blob = self.blob.to_string();
        r.expect = self.expect.as_deref().map(str::to_string);
        r.base = self.base.as_ref().map(|b| journal::BaseRecord {
            etag: b.etag.to_string(),
            len: b.len,
        });
        r.size = self.size;
        r.block_size = self.grid.base();
        r.metadata = self
            .metadata
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        r.upload_id = self.upload_id;
        r.next_seq = self.next_seq;
        r.committed_ids = self.committed_ids.clone();
        r.local = journal::ranges(self.local.iter().copied());
        r.durable = self.durable;
        r.attempts = self
            .unanswered
            .iter()
            .chain(&self.attempt)
            .cloned()
            .collect();
    }

    /// Writes the journal record as the staging stands (a block became local, the size or the
    /// name changed, a commit ended).
    pub(super) fn journal_update(&self) {
        if let Some(j) = &self.journal {
            j.update(|r| self.snapshot(r));
        }
    }

    /// The local copy is about to change: the record says the content is unfinished (before
    /// the change, so a record never calls changed content finished).
    fn journal_unfinished(&mut self) {
        self.data_synced = false;
        if self.durable != Durable::Unfinished {
            self.durable = Durable::Unfinished;
            self.journal_update();
        }
    }

    /// The program closed or fsynced the file: the record says its content is finished, so a
    /// restart commits it. With `sync`, the local copy and the record are flushed to disk
    /// first (an error then is the caller's: a promise rests on it).
    pub fn mark_finished(&mut self, sync: bool) -> std::io::Result<()> {
        if self.durable == Durable::Finished && (!sync || self.data_synced) {
            // Finished already and the content unchanged since (a write makes it unfinished
            // first), flushed if asked: the record stands (a metadata change since rewrote
            // it; see set_meta).
            return Ok(());
        }
        let Some(j) = self.journal.clone() else {
            self.durable = Durable::Finished;
            return Ok(());
        };
        // Finished only once the record says so (flushed, when asked): a flush that failed
        // leaves the content as it was, so that a later change does not take it for promised.
        let before = std::mem::replace(&mut self.durable, Durable::Finished);
        if let Err(e) = j.finished(&self.file, sync, |r| self.snapshot(r)) {
            self.durable = before;
            return Err(e);
        }
        self.data_synced = sync;
        Ok(())
    }

    /// The local copy (tests change it behind the staging's back).
    #[cfg(test)]
    pub fn local_file(&self) -> &File {
        &self.file
    }

    /// Its journal record as it stands, if it has one.
    pub fn journal_record(&self) -> Option<Record> {
        self.journal.as_deref().map(Entry::record)
    }

    /// How many record writes of its journal were flushed to disk (tests).
    #[cfg(test)]
    pub fn journal_flushes(&self) -> u64 {
        self.journal.as_deref().map_or(0, Entry::flushes)
    }

    /// Where its journal record is, if it has one.
    pub fn journal_path(&self) -> Option<&std::path::Path> {
        self.journal.as_deref().map(Entry::path)
    }

    /// Nothing of this file is to be finished after a restart (it will never be committed, or
    /// its data is saved elsewhere): its journal goes, the local copy stays usable.
    pub fn discard_journal(&mut self) {
        if let Some(j) = self.journal.take() {
            j.remove();
        }
    }

    /// Bytes written here and not in the service yet (blocks dirty or being uploaded).
    pub fn not_uploaded(&self) -> u64 {
        self.blocks
            .iter()
            .filter(|(_, b)| !matches!(b, Block::Staged(_)))
            .map(|(index, _)| self.block_extent(*index).1)
            .sum()
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
        // Content the program finished stays finished: the content is what the promise (a
        // flushed record) is about, and the record as it was and as it is now are both true
        // of it: the record is rewritten (its text flushed first, see Entry::update), the data
        // not flushed again. `tar x` sets each file's time after closing it: with
        // --write-back this saves flushing the file and its record twice more.
        let finished = self.durable == Durable::Finished;
        if !finished {
            self.journal_unfinished();
        }
        match value {
            Some(v) => self.metadata.insert(key.to_string(), v),
            None => self.metadata.remove(key),
        };
        if finished {
            self.journal_update();
        }
    }

    /// The committed file was renamed (copied) to `blob`, whose version is `etag`: later
    /// commits go there. Only for a staging with nothing uncommitted (the file's lifecycle
    /// says so: see [`crate::fs::lifecycle::FileState::is_settled`]).
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
        self.in_service = Default::default();
        if let Some(j) = &self.journal {
            // Blocks sent were the old name's.
            j.forget_sent(|_| false);
            j.update(|r| self.snapshot(r));
        }
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
    pub(super) fn new_id(&mut self) -> String {
        self.next_seq += 1;
        base64::engine::general_purpose::STANDARD
            .encode(format!("{:016x}{:016x}", self.upload_id, self.next_seq))
    }

    pub(super) fn block_extent(&self, index: u64) -> (u64, u64) {
        self.grid.range(index, self.size)
    }

    /// A failure of the local copy (StorageFull when the staging disk is full).
    pub(super) fn io_error(&self, op: &'static str, e: std::io::Error) -> BlobError {
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
        self.journal_unfinished();
        if self.local.insert(index) {
            // Before its bytes are written: the record never misses a local block.
            self.journal_update();
        }
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

    /// Starts uploading every dirty block that holds a share of the write budget (to free it).
    pub fn flush_dirty(&mut self) {
        let holding: BTreeSet<u64> = self
            .blocks
            .iter()
            .filter(|(_, b)| matches!(b, Block::Dirty(Some(_))))
            .map(|(i, _)| *i)
            .collect();
        self.upload_dirty(|i| holding.contains(&i));
    }

    /// Gives back the write budget of the dirty blocks: the file is closed and flushed to
    /// local disk, and waits for the write-back, whose own limit bounds it (its blocks are
    /// sent at its commit, as they are).
    pub fn release_budget(&mut self) {
        for b in self.blocks.values_mut() {
            if let Block::Dirty(permit) = b {
                *permit = None;
            }
        }
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
        self.journal_update();
        Ok(())
    }

    /// Copies the old version's bytes of block `index` into the local file.
    async fn load_base(&mut self, index: u64) -> Result<(), BlobError> {
        let Some(base) = self.base.clone() else {
            return Ok(());
        };
        // The same bytes, now local: not flushed yet.
        self.data_synced = false;
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

    pub(super) async fn read_local(&self, offset: u64, len: u64) -> Result<Vec<u8>, BlobError> {
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
            self.journal_unfinished();
            self.write_local(pos, Bytes::copy_from_slice(seg))
                .await
                .map_err(|e| (pos, e))?;
            self.mtime = SystemTime::now();
            // Written now: a time set earlier (utimes) no longer holds.
            self.metadata.remove(crate::fs::inode::META_MTIME);
            // Sequential writers: every block before this one is done.
            self.upload_dirty(|i| i < index);
            at += seg.len();
        }
        Ok(())
    }

    /// Starts uploading the dirty blocks `which` selects.
    pub(super) fn upload_dirty(&mut self, which: impl Fn(u64) -> bool) {
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
            let offer = self
                .reuse
                .as_ref()
                .and_then(|r| r.take(&self.blob, start, len));
            let handle = self.spawn_upload(index, &id, start, len, permit, offer);
            self.blocks.insert(index, Block::Uploading(id, handle));
        }
    }

    /// Starts Put Block of block `index` (`len` bytes at `start` of the local copy) as `id`,
    /// holding `permit` (its budget share) until it ends; once sent, the journal records it.
    /// With `offer` (a block an interrupted write staged at the same place), nothing is sent
    /// if the local bytes have its MD5 and the service holds it: the block is staged under
    /// the offered id, which the upload gives back.
    pub(super) fn spawn_upload(
        &self,
        index: u64,
        id: &str,
        start: u64,
        len: u64,
        permit: Option<OwnedSemaphorePermit>,
        offer: Option<Staged>,
    ) -> JoinHandle<Result<String, BlobError>> {
        let (client, blob, file, id) = (
            self.client.clone(),
            self.blob.clone(),
            self.file.clone(),
            id.to_string(),
        );
        let journal = self.journal.clone();
        let reuse = self.reuse.clone().zip(offer);
        let in_service = self.in_service.clone();
        tokio::spawn(async move {
            let _permit = permit; // the budget share is released when the upload ends
            if let Some((index_of_offers, offer)) = reuse {
                if let Some(md5) =
                    already_staged(&client, &blob, &file, start, len, &offer, &in_service).await
                {
                    if let Some(j) = journal {
                        j.sent(index, &offer.id, len, &md5);
                    }
                    index_of_offers.reused(len);
                    return Ok(offer.id);
                }
            }
            let md5 = client
                .put_block_from_file(&blob, &id, file, start, len)
                .await?;
            if let Some(j) = journal {
                j.sent(index, &id, len, &md5);
            }
            Ok(id)
        })
    }

    /// Reads what the file holds now: written blocks from the local copy, the rest from the
    /// version writing started from, zeros past it. If that version is gone because an
    /// unanswered commit of this staging landed, the rest reads from that commit.
    pub async fn read(&mut self, offset: u64, len: u64) -> Result<Bytes, BlobError> {
        match self.read_once(offset, len).await {
            Err(e) if e.is_conflict() && !self.unanswered.is_empty() => {
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
        self.journal_unfinished();
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
        if let Some(j) = &self.journal {
            j.forget_sent(|i| i < keep);
        }
        self.journal_update();
        Ok(())
    }
}

/// Whether the `len` bytes at `start` of the local copy are block `offer` as the service holds
/// it, uncommitted, under `blob`: their MD5 is the one recorded for it, and the service lists
/// it at that length (asked once per staging, in `in_service`). Their MD5 if so. Any failure
/// (reading the local copy, asking the service) is a no: the block is sent.
async fn already_staged(
    client: &Arc<dyn BlobClient>,
    blob: &str,
    file: &Arc<File>,
    start: u64,
    len: u64,
    offer: &Staged,
    in_service: &OnceCell<HashMap<String, u64>>,
) -> Option<crate::blob::Md5Digest> {
    let f = file.clone();
    let bytes = tokio::task::spawn_blocking(move || crate::blob::read_file_range(&f, start, len))
        .await
        .ok()?
        .ok()?;
    let md5 = crate::blob::md5_of(&bytes);
    if base64::engine::general_purpose::STANDARD.encode(md5) != offer.md5 {
        return None;
    }
    let held = in_service
        .get_or_try_init(|| async {
            let blocks = client.uncommitted_blocks(blob).await?;
            Ok::<_, BlobError>(blocks.into_iter().map(|b| (b.id, b.size)).collect())
        })
        .await
        .ok()?;
    (held.get(&offer.id) == Some(&len)).then_some(md5)
}

impl Drop for Staging {
    /// A committed file's journal goes with its staging. Any other stays for the next start
    /// (a staging dropped while its content is not in the service: a resume cancelled, a
    /// commit that failed and could not be saved elsewhere); what is never to be committed
    /// is discarded explicitly ([`Staging::discard_journal`]).
    fn drop(&mut self) {
        if self.durable == Durable::Committed {
            self.discard_journal();
        }
    }
}

#[cfg(test)]
#[path = "staging_tests.rs"]
mod tests;
