//! The commit (close, fsync): uploads what is left, has the service copy untouched ranges of
//! the version writing started from (Put Block From URL, or the ids of a previous commit), and
//! commits with one conditional Put Block List: the blob is the old or the new version. A small
//! file written here (one block) or an empty one is one conditional Put Blob instead. What to
//! do for each block is the [`plan`]'s; this module carries it out.
//!
//! Every request is safe to retry after a lost answer: block ids are unique to the upload (an
//! id an interrupted write staged goes to one later write only: see [`super::reuse`]), so a
//! Put Block List that meets a conflict checks whether the blob already is exactly those
//! blocks with this metadata, a Put Blob whether it is exactly those bytes and metadata, and a
//! later commit or read recognises an unanswered earlier one the same way.

use std::sync::Arc;

use base64::Engine;
use bytes::Bytes;
use tokio::task::JoinHandle;

use super::journal;
use super::journal::Attempt;
use super::plan::{self, Known, Step};
use super::staging::{Base, Block, Staging};
use crate::blob::{BlobError, Committed, ErrorKind, WriteOptions};

/// An upload the commit waits for.
struct Pending {
    /// The block whose state it settles.
    index: u64,
    id: String,
    /// Gives the id the block is staged under (see [`Block::Uploading`]).
    upload: JoinHandle<Result<String, BlobError>>,
    /// Sent from the local copy (which can send it again), or copied by the service.
    from_local: bool,
}

impl Staging {
    /// Uploads what is left and commits the new version with one Put Block List (an empty or
    /// one-block file written here: one Put Blob), conditional on the version writing started
    /// from.
    pub async fn commit(&mut self) -> Result<Committed, BlobError> {
        let mut result = self.commit_once().await;
        if matches!(&result, Err(e) if e.code.as_deref() == Some("InvalidBlockList"))
            && self.send_reused_again()
        {
            // A block an interrupted write had staged expired after it was found (the service
            // keeps them 7 days): its bytes are sent after all, and the commit made once more.
            result = self.commit_once().await;
        }
        if matches!(&result, Err(e) if e.is_conflict()) && !self.unanswered.is_empty() {
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

    /// Blocks staged under an id an interrupted write had staged (not this upload's own) are
    /// dirty again, to be sent under ids of this upload; whether there were any. Their bytes are
    /// in the local copy: a block is reused only where all of it was written here.
    fn send_reused_again(&mut self) -> bool {
        let reused: Vec<u64> = self
            .blocks
            .iter()
            .filter(|(i, b)| {
                matches!(b, Block::Staged(id) if !self.is_own_id(id)) && self.local.contains(i)
            })
            .map(|(i, _)| *i)
            .collect();
        for &index in &reused {
            self.blocks.insert(index, Block::Dirty(None));
            if let Some(r) = &self.reuse {
                r.unreused(self.block_extent(index).1);
            }
        }
        self.in_service = Default::default();
        !reused.is_empty()
    }

    /// Whether block id `id` is one this upload made.
    fn is_own_id(&self, id: &str) -> bool {
        base64::engine::general_purpose::STANDARD
            .decode(id)
            .is_ok_and(|raw| raw.starts_with(format!("{:016x}", self.upload_id).as_bytes()))
    }

    /// An unanswered earlier commit is known to have landed as `c`: the blob is that commit,
    /// and what follows builds on it.
    pub(super) fn build_on(&mut self, c: &Committed) {
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
    pub(super) async fn earlier_commit_landed(&self) -> Result<Option<Committed>, BlobError> {
        for attempt in self.unanswered.iter().rev() {
            let found = match attempt {
                // Its metadata is not recorded (it may differ from today's): the ids are this
                // upload's alone.
                Attempt::Blocks(ids) => self.already_committed(&self.blob, ids, None).await?,
                Attempt::Whole {
                    len,
                    sha256,
                    metadata,
                } => {
                    let same = |got: &[u8]| {
                        use sha2::Digest;
                        sha2::Sha256::digest(got).as_slice() == sha256.as_slice()
                    };
                    crate::blob::own_put_blob_if(
                        self.client.as_ref(),
                        &self.blob,
                        *len,
                        metadata,
                        same,
                    )
                    .await?
                }
            };
            if found.is_some() {
                return Ok(found);
            }
        }
        Ok(None)
    }

    /// One attempt: the whole file's Put Blob, or the plan (what each block needs), its
    /// uploads, and the Put Block List of its ids, each conditional on the version expected.
    async fn commit_once(&mut self) -> Result<Committed, BlobError> {
        let opts = WriteOptions {
            if_match: self.expect.as_deref().map(str::to_string),
            if_none_match_any: self.expect.is_none(),
            metadata: self.metadata.clone(),
            ..Default::default()
        };
        let first_dirty = matches!(self.blocks.get(&0), Some(Block::Dirty(_)));
        if plan::sent_whole(&self.grid, self.size, first_dirty) {
            // All of it is in the local copy (an empty file has nothing to read).
            let data = Bytes::from(self.read_local(0, self.size).await?);
            self.attempt = Some(Attempt::whole(&data, &opts.metadata));
            // Recorded before it is sent: a restart can then tell whether it landed.
            self.journal_update();
            let c = self.put_whole(&self.blob.clone(), data, &opts).await?;
            self.committed(c.clone(), Vec::new());
            return Ok(c);
        }
        self.upload_dirty(|_| true);
        if let Some(b) = self.base.clone() {
            let touched = |i| self.blocks.contains_key(&i);
            if plan::wants_old_ids(&self.grid, self.size, b.len, &self.committed_ids, touched) {
                self.committed_ids = self.reusable_ids(&b).await;
            }
        }
        let base_len = self.base.as_ref().map(|b| b.len);
        let known = |i| match self.blocks.get(&i) {
            Some(Block::Uploading(id, _)) => Known::Uploading(id.clone()),
            Some(Block::Staged(id)) => Known::Staged(id.clone()),
            Some(Block::Dirty(_)) => unreachable!("all dirty blocks were just sent"),
            None => Known::Untouched,
        };
        let steps = plan::commit(&self.grid, self.size, base_len, &self.committed_ids, known);
        let (mut ids, pending) = self.start(steps);
        self.settle(pending, &mut ids).await?;
        self.attempt = Some(Attempt::Blocks(ids.clone()));
        self.journal_update();
        let c = self.put_block_list(&self.blob.clone(), &ids, &opts).await?;
        self.committed(c.clone(), ids);
        Ok(c)
    }

    /// Starts what the plan's steps send (Put Block, Put Block From URL); the block ids of the
    /// new version, in order, and the uploads to wait for.
    fn start(&mut self, steps: Vec<Step>) -> (Vec<String>, Vec<Pending>) {
        let mut ids = Vec::with_capacity(steps.len());
        let mut pending = Vec::new();
        for (index, step) in (0u64..).zip(steps) {
            let id = match step {
                Step::Staged(id) | Step::Reuse(id) => id,
                Step::Await(id) => {
                    let Some(Block::Uploading(_, handle)) = self.blocks.remove(&index) else {
                        unreachable!("the plan awaits uploads under way only");
                    };
                    pending.push(Pending {
                        index,
                        id: id.clone(),
                        upload: handle,
                        from_local: true,
                    });
                    id
                }
                Step::CopyFromBase { start, len } => {
                    let id = self.new_id();
                    let etag = self.base.as_ref().expect("a copy has a base").etag.clone();
                    pending.push(Pending {
                        index,
                        id: id.clone(),
                        upload: self.copy_block(&id, start, len, etag),
                        from_local: false,
                    });
                    id
                }
                Step::FromLocal { start, len } => {
                    let id = self.new_id();
                    pending.push(Pending {
                        index,
                        id: id.clone(),
                        upload: self.spawn_upload(index, &id, start, len, None, None),
                        from_local: true,
                    });
                    id
                }
            };
            ids.push(id);
        }
        (ids, pending)
    }

    /// Waits for the uploads; each is recorded as staged once done, so a commit tried again
    /// sends the same ids (and can tell its own earlier success), and its place in `ids`
    /// gets the id it is staged under. A failed one whose local copy is intact is dirty again
    /// (sent at the next commit). The first failure, if any.
    async fn settle(&mut self, pending: Vec<Pending>, ids: &mut [String]) -> Result<(), BlobError> {
        let mut failure = None;
        for p in pending {
            let result = p.upload.await.unwrap_or_else(|e| {
                Err(BlobError::new(
                    ErrorKind::Other,
                    "Put Block",
                    &self.blob,
                    e.to_string(),
                ))
            });
            match result {
                Ok(id) => {
                    if id != p.id {
                        ids[p.index as usize] = id.clone();
                    }
                    self.blocks.insert(p.index, Block::Staged(id));
                }
                Err(e) => {
                    if p.from_local && self.local.contains(&p.index) {
                        // The local copy is intact: send it again at the next commit.
                        self.blocks.insert(p.index, Block::Dirty(None));
                    }
                    failure.get_or_insert(e);
                }
            }
        }
        match failure {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Starts Put Block From URL of `len` bytes at `start` of version `etag` of this blob, as
    /// block `id` of the new version.
    fn copy_block(
        &self,
        id: &str,
        start: u64,
        len: u64,
        etag: Arc<str>,
    ) -> JoinHandle<Result<String, BlobError>> {
        let (client, blob, id) = (self.client.clone(), self.blob.clone(), id.to_string());
        tokio::spawn(async move {
            client
                .put_block_from_url(&blob, &id, &blob, start, len, Some(&etag))
                .await?;
            Ok(id)
        })
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
            Err(e) if e.is_conflict() => {
                // Only a commit that may have gone through already can meet itself; any other
                // conflict is someone else's version (block ids may be reused across mounts).
                if e.after_lost_answer || !self.unanswered.is_empty() {
                    match self
                        .already_committed(name, ids, Some(&opts.metadata))
                        .await
                    {
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

    /// Put Blob of the whole file. After a lost answer, a conflict is its own success when the
    /// blob has exactly these bytes and this metadata (identical to what it would have been).
    async fn put_whole(
        &self,
        name: &str,
        data: Bytes,
        opts: &WriteOptions,
    ) -> Result<Committed, BlobError> {
        match self.client.put_blob(name, data.clone(), opts).await {
            Err(e) if e.is_conflict() => {
                if e.after_lost_answer || !self.unanswered.is_empty() {
                    let client = self.client.as_ref();
                    match crate::blob::own_put_blob(client, name, &data, &opts.metadata).await {
                        Ok(Some(c)) => return Ok(c),
                        Ok(None) => {}
                        Err(check) => return Err(crate::blob::outcome_unknown(&e, &check)),
                    }
                }
                for opts in self.instead_of_uncommitted(name, opts, &e).await? {
                    match self.client.put_blob(name, data.clone(), &opts).await {
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
        if self.size == 0 {
            return Ok((self.put_whole(name, Bytes::new(), &opts).await?, Vec::new()));
        }
        let base = self.base.clone();
        let local = |i| self.local.contains(&i);
        let steps = plan::sibling(&self.grid, self.size, base.as_ref().map(|b| b.len), local);
        let mut ids = Vec::with_capacity(steps.len());
        for step in steps {
            let id = self.new_id();
            match (step, &base) {
                (Step::CopyFromBase { start, len }, Some(b)) => {
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
                (Step::FromLocal { start, len }, _) => {
                    self.client
                        .put_block_from_file(name, &id, self.file.clone(), start, len)
                        .await?;
                }
                (step, _) => unreachable!("a sibling copies or sends every block: {step:?}"),
            }
            ids.push(id);
        }
        let c = self.put_block_list(name, &ids, &opts).await?;
        Ok((c, ids))
    }

    /// The version of blob `name` if its committed blocks are exactly `ids` (ids are unique
    /// to this upload: nobody else commits them) and, if given, its metadata `metadata`; an
    /// error if it cannot be told.
    async fn already_committed(
        &self,
        name: &str,
        ids: &[String],
        metadata: Option<&std::collections::HashMap<String, String>>,
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
        if metadata.is_some_and(|m| !crate::blob::same_metadata(&p.metadata, m)) {
            return Ok(None);
        }
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
        self.attempt = None;
        self.durable = journal::Durable::Committed;
        if let Some(r) = &self.reuse {
            // The service dropped the blob's uncommitted blocks.
            r.withdraw(&self.blob);
        }
        self.in_service = Default::default();
        if let Some(j) = &self.journal {
            // Committed blocks are not the uncommitted ones a restart looks for.
            j.forget_sent(|_| false);
            j.update(|r| self.snapshot(r));
        }
    }
}
