//! A staging rebuilt from a journal entry a mount that is gone left behind, so that what it had
//! not committed can be finished (see [`crate::fs::resume`]).
//!
//! A block the record says was sent is used as it is only when the service still has it
//! uncommitted under that id at that length, and the local copy still holds the bytes sent
//! (same MD5); every other local block is sent again. New block ids start far past the ones
//! the gone mount used, so an upload of its still in flight can never land under an id this
//! one commits.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::sync::Arc;

use base64::Engine;

use super::grid::Grid;
use super::journal::{self, Attempt, Durable, Entry, Record};
use super::staging::{Base, Block, Staging, StagingArea};
use crate::blob::BlobError;

/// How far new block ids start past the last one the gone mount recorded.
const ID_GAP: u64 = 1 << 32;

/// A staging rebuilt from the journal, and what the record said of it.
pub struct Reopened {
    pub staging: Staging,
    /// The program had closed or fsynced it (and the local copy is known to hold that): it is
    /// committed under its name. Otherwise it is unfinished content, saved beside the blob.
    pub finished: bool,
    /// Blocks found in the service as sent (not sent again).
    pub blocks_kept: u64,
    /// Local blocks to send.
    pub blocks_to_send: u64,
}

impl StagingArea {
    /// Rebuilds the staging of a journal entry on its local copy `file`. For a finished file,
    /// asks the service which of the blocks sent it still holds (one Get Block List).
    pub async fn reopen(
        &self,
        file: File,
        entry: Entry,
        boot_id: &str,
    ) -> Result<Reopened, BlobError> {
        let r = entry.record();
        let io = |e: std::io::Error| {
            BlobError::new(
                crate::blob::ErrorKind::Local(e.kind()),
                "resume",
                &r.blob,
                format!("local copy: {e}"),
            )
        };
        let meta = file.metadata().map_err(io)?;
        // The local copy is as long as the file at every point: one of another length (cut
        // by a power cut) is not the finished content.
        let finished = r.is_finished(boot_id) && meta.len() == r.size;
        // Unfinished: the local copy as it is (the record may lag behind the last writes).
        let size = if finished { r.size } else { meta.len() };
        let grid = Grid::new(r.block_size);
        let count = grid.count(size);
        let file = Arc::new(file);
        // Blocks sent matter only for a commit under the blob's own name (a sibling is sent
        // whole under its new name).
        let in_service: HashMap<String, u64> = if finished && !r.sent.is_empty() {
            self.client
                .uncommitted_blocks(&r.blob)
                .await?
                .into_iter()
                .map(|b| (b.id, b.size))
                .collect()
        } else {
            HashMap::new()
        };
        let mut blocks = BTreeMap::new();
        let (mut kept, mut to_send) = (0, 0);
        let local: Vec<u64> = journal::indexes(&r.local).filter(|i| *i < count).collect();
        for &index in &local {
            let (start, len) = grid.range(index, size);
            let sent = r
                .sent
                .get(&index)
                .filter(|b| b.len == len && in_service.get(&b.id) == Some(&len));
            let same = match sent {
                Some(b) => {
                    let f = file.clone();
                    let local = tokio::task::spawn_blocking(move || {
                        crate::blob::read_file_range(&f, start, len)
                    })
                    .await
                    .map_err(|e| io(std::io::Error::other(e)))?
                    .map_err(io)?;
                    let md5 = base64::engine::general_purpose::STANDARD
                        .encode(crate::blob::md5_of(&local));
                    md5 == b.md5
                }
                None => false,
            };
            match sent {
                Some(b) if same => {
                    kept += 1;
                    blocks.insert(index, Block::Staged(b.id.clone()));
                }
                _ => {
                    to_send += 1;
                    blocks.insert(index, Block::Dirty(None));
                }
            }
        }
        let staging = Staging {
            client: self.client.clone(),
            budget: self.budget.clone(),
            blob: r.blob.as_str().into(),
            file,
            size,
            base: r.base.as_ref().map(|b| Base {
                etag: b.etag.as_str().into(),
                len: b.len.min(size),
            }),
            expect: r.expect.as_deref().map(Into::into),
            grid,
            blocks,
            local: local.iter().copied().collect(),
            committed_ids: r.committed_ids.clone(),
            upload_id: r.upload_id,
            next_seq: last_seq(&r) + ID_GAP,
            metadata: r.metadata.clone().into_iter().collect(),
            mtime: meta
                .modified()
                .unwrap_or_else(|_| std::time::SystemTime::now()),
            unanswered: r.attempts.clone(),
            attempt: None,
            journal: Some(Arc::new(entry)),
            durable: r.durable,
            // Whatever the record says, this process has not flushed the copy.
            data_synced: false,
            reuse: self.reuse.clone(),
            in_service: Default::default(),
        };
        // Before anything is sent: a resume cut off in turn starts its ids past these.
        staging.journal_update();
        Ok(Reopened {
            staging,
            finished,
            blocks_kept: kept,
            blocks_to_send: to_send,
        })
    }
}

/// The highest sequence number among the block ids of upload `r.upload_id` the record knows
/// (sent, committed, or in a commit whose answer was lost), or its `next_seq` if higher: a
/// block id made before the mount died may be in none of them but is below `next_seq` + the
/// ids made since its last record write, which [`ID_GAP`] covers.
fn last_seq(r: &Record) -> u64 {
    let ours = format!("{:016x}", r.upload_id);
    let seq_of = |id: &String| {
        let raw = base64::engine::general_purpose::STANDARD.decode(id).ok()?;
        let text = std::str::from_utf8(&raw).ok()?;
        let (upload, seq) = text.split_at_checked(16)?;
        (upload == ours).then(|| u64::from_str_radix(seq, 16).ok())?
    };
    let attempted = r.attempts.iter().flat_map(|a| match a {
        Attempt::Blocks(ids) => ids.as_slice(),
        Attempt::Whole { .. } => &[],
    });
    r.sent
        .values()
        .map(|b| &b.id)
        .chain(&r.committed_ids)
        .chain(attempted)
        .filter_map(seq_of)
        .fold(r.next_seq, u64::max)
}

impl Staging {
    /// Starts sending the blocks to send, each once its share of the write budget is free, so
    /// a resumed file never holds more of it than a file being written does.
    pub async fn send_within_budget(&mut self) {
        if self.grid.count(self.size) <= 1 {
            // One block at most: the commit sends it whole in one Put Blob.
            return;
        }
        let dirty: Vec<u64> = self
            .blocks
            .iter()
            .filter(|(_, b)| matches!(b, Block::Dirty(_)))
            .map(|(i, _)| *i)
            .collect();
        for index in dirty {
            let (start, len) = self.block_extent(index);
            if len == 0 {
                self.blocks.remove(&index);
                continue;
            }
            let permit = self.budget.take(self.budget.share(len)).await;
            let id = self.new_id();
            let handle = self.spawn_upload(index, &id, start, len, Some(permit), None);
            self.blocks.insert(index, Block::Uploading(id, handle));
        }
    }

    /// Whether the blob (or its sibling) holds what this staging holds: its journal record
    /// has nothing left to finish.
    pub fn is_committed(&self) -> bool {
        self.durable == Durable::Committed
    }
}
