//! Write operations of the fake service, with the service's rules: block ids of one blob have one
//! length, Put Block List finds each id among the staged blocks first, then the committed ones
//! ("Latest"), a commit discards the other staged blocks, and conditions (`If-Match`,
//! `If-None-Match: *`) are checked before anything changes.

use std::collections::HashMap;

use bytes::{Bytes, BytesMut};

use super::{not_found, FakeBlob, State};
use crate::blob::{
    BlobError, Committed, CommittedBlock, CopyInfo, CopyState, ErrorKind, WriteOptions,
};

fn error(kind: ErrorKind, op: &'static str, name: &str, status: u16, code: &str) -> BlobError {
    let mut e = BlobError::new(kind, op, name, code);
    e.status = Some(status);
    e.code = Some(code.to_string());
    e
}

/// `If-Match` / `If-None-Match: *` against the blob as it is.
/// The conditions of a write that makes a version: [`check`], and `If-Unmodified-Since`.
fn check_write(
    op: &'static str,
    name: &str,
    existing: Option<&FakeBlob>,
    opts: &WriteOptions,
) -> Result<(), BlobError> {
    check(
        op,
        name,
        existing,
        opts.if_match.as_deref(),
        opts.if_none_match_any,
    )?;
    match (existing, opts.if_unmodified_since) {
        // The service compares whole seconds (HTTP dates).
        (Some(b), Some(since)) if secs(b.last_modified) > secs(since) => Err(error(
            ErrorKind::ConditionNotMet,
            op,
            name,
            412,
            "ConditionNotMet",
        )),
        _ => Ok(()),
    }
}

fn secs(t: std::time::SystemTime) -> u64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn check(
    op: &'static str,
    name: &str,
    existing: Option<&FakeBlob>,
    if_match: Option<&str>,
    none_match_any: bool,
) -> Result<(), BlobError> {
    if none_match_any && existing.is_some() {
        return Err(error(
            ErrorKind::AlreadyExists,
            op,
            name,
            409,
            "BlobAlreadyExists",
        ));
    }
    if let Some(want) = if_match {
        match existing {
            // As the service answers: the condition fails, the blob is not "not found".
            None => {
                return Err(error(
                    ErrorKind::ConditionNotMet,
                    op,
                    name,
                    412,
                    "ConditionNotMet",
                ))
            }
            Some(b) if b.etag != want => {
                return Err(error(
                    ErrorKind::ConditionNotMet,
                    op,
                    name,
                    412,
                    "ConditionNotMet",
                ))
            }
            Some(_) => {}
        }
    }
    Ok(())
}

fn stage(s: &mut State, name: &str, block_id: &str, data: Bytes) -> Result<(), BlobError> {
    let staged = s.staged.entry(name.to_string()).or_default();
    let committed_len = s
        .blobs
        .get(name)
        .and_then(|b| b.blocks.first())
        .map(|(id, _)| id.len());
    let other_len = staged.keys().next().map(String::len).or(committed_len);
    if other_len.is_some_and(|l| l != block_id.len()) {
        return Err(error(
            ErrorKind::Conflict,
            "Put Block",
            name,
            400,
            "InvalidBlobOrBlock",
        ));
    }
    staged.insert(block_id.to_string(), data);
    Ok(())
}

pub(super) fn put_block(
    s: &mut State,
    name: &str,
    block_id: &str,
    data: Bytes,
) -> Result<(), BlobError> {
    s.bytes_uploaded += data.len() as u64;
    stage(s, name, block_id, data)
}

pub(super) fn put_block_from_url(
    s: &mut State,
    name: &str,
    block_id: &str,
    source: &str,
    offset: u64,
    len: u64,
    source_if_match: Option<&str>,
) -> Result<(), BlobError> {
    let op = "Put Block From URL";
    let src = s.blobs.get(source).ok_or_else(|| not_found(op, source))?;
    if source_if_match.is_some_and(|e| e != src.etag) {
        return Err(error(
            ErrorKind::ConditionNotMet,
            op,
            name,
            412,
            "CannotVerifyCopySource",
        ));
    }
    let end = offset + len;
    if end > src.data.len() as u64 || len == 0 {
        return Err(error(ErrorKind::Conflict, op, name, 416, "InvalidRange"));
    }
    let data = src.data.slice(offset as usize..end as usize);
    stage(s, name, block_id, data)
}

fn new_blob(
    s: &mut State,
    data: Bytes,
    blocks: Vec<(String, u64)>,
    opts: &WriteOptions,
) -> FakeBlob {
    let (etag, last_modified) = s.next_version();
    FakeBlob {
        data,
        etag,
        last_modified,
        metadata: opts
            .metadata
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
            .collect(),
        blocks,
        copy: None,
    }
}

fn committed(b: &FakeBlob) -> Committed {
    Committed {
        etag: b.etag.clone(),
        last_modified: b.last_modified,
    }
}

pub(super) fn put_block_list(
    s: &mut State,
    name: &str,
    ids: &[String],
    opts: &WriteOptions,
) -> Result<Committed, BlobError> {
    let op = "Put Block List";
    check_write(op, name, s.blobs.get(name), opts)?;
    let staged = s.staged.get(name).cloned().unwrap_or_default();
    let old: HashMap<String, Bytes> = s
        .blobs
        .get(name)
        .map(|b| {
            let mut at = 0usize;
            b.blocks
                .iter()
                .map(|(id, n)| {
                    let part = b.data.slice(at..at + *n as usize);
                    at += *n as usize;
                    (id.clone(), part)
                })
                .collect()
        })
        .unwrap_or_default();
    let mut data = BytesMut::new();
    let mut blocks = Vec::with_capacity(ids.len());
    for id in ids {
        let part = staged
            .get(id)
            .or_else(|| old.get(id))
            .ok_or_else(|| error(ErrorKind::Conflict, op, name, 400, "InvalidBlockList"))?;
        data.extend_from_slice(part);
        blocks.push((id.clone(), part.len() as u64));
    }
    let blob = new_blob(s, data.freeze(), blocks, opts);
    let c = committed(&blob);
    s.blobs.insert(name.to_string(), blob);
    s.staged.remove(name);
    Ok(c)
}

pub(super) fn put_blob(
    s: &mut State,
    name: &str,
    data: Bytes,
    opts: &WriteOptions,
) -> Result<Committed, BlobError> {
    check_write("Put Blob", name, s.blobs.get(name), opts)?;
    let blob = new_blob(s, data, Vec::new(), opts);
    let c = committed(&blob);
    s.blobs.insert(name.to_string(), blob);
    s.staged.remove(name);
    Ok(c)
}

pub(super) fn get_block_list(
    s: &State,
    name: &str,
    if_match: Option<&str>,
) -> Result<Vec<CommittedBlock>, BlobError> {
    let op = "Get Block List";
    let b = s.blobs.get(name).ok_or_else(|| not_found(op, name))?;
    check(op, name, Some(b), if_match, false)?;
    Ok(b.blocks
        .iter()
        .map(|(id, size)| CommittedBlock {
            id: id.clone(),
            size: *size,
        })
        .collect())
}

pub(super) fn uncommitted_blocks(s: &State, name: &str) -> Vec<CommittedBlock> {
    let mut out: Vec<CommittedBlock> = s
        .staged
        .get(name)
        .map(|blocks| {
            blocks
                .iter()
                .map(|(id, data)| CommittedBlock {
                    id: id.clone(),
                    size: data.len() as u64,
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort_by(|a, b| a.id.cmp(&b.id));
    out
}

pub(super) fn delete_blob(
    s: &mut State,
    name: &str,
    if_match: Option<&str>,
) -> Result<(), BlobError> {
    let op = "Delete Blob";
    check(op, name, s.blobs.get(name), if_match, false)?;
    s.blobs.remove(name).ok_or_else(|| not_found(op, name))?;
    s.staged.remove(name);
    Ok(())
}

pub(super) fn copy_blob(
    s: &mut State,
    dest: &str,
    source: &str,
    source_if_match: Option<&str>,
    opts: &WriteOptions,
) -> Result<CopyInfo, BlobError> {
    let op = "Copy Blob";
    let src = s
        .blobs
        .get(source)
        .ok_or_else(|| not_found(op, source))?
        .clone();
    if source_if_match.is_some_and(|e| e != src.etag) {
        return Err(error(
            ErrorKind::ConditionNotMet,
            op,
            dest,
            412,
            "SourceConditionNotMet",
        ));
    }
    check_write(op, dest, s.blobs.get(dest), opts)?;
    // Without metadata in the request, the copy keeps the source's.
    let mut blob = new_blob(s, src.data.clone(), src.blocks.clone(), opts);
    if opts.metadata.is_empty() {
        blob.metadata = src.metadata.clone();
    }
    let info = CopyInfo {
        id: format!("copy-{}", s.etag_seq),
        state: CopyState::Success,
        source: None,
    };
    // The copy's properties name its source; Copy Blob's answer does not.
    blob.copy = Some(CopyInfo {
        source: Some(source.to_string()),
        ..info.clone()
    });
    s.blobs.insert(dest.to_string(), blob);
    Ok(info)
}

pub(super) fn set_metadata(
    s: &mut State,
    name: &str,
    opts: &WriteOptions,
) -> Result<Committed, BlobError> {
    let op = "Set Blob Metadata";
    check(op, name, s.blobs.get(name), opts.if_match.as_deref(), false)?;
    let (etag, last_modified) = s.next_version();
    let b = s.blobs.get_mut(name).ok_or_else(|| not_found(op, name))?;
    b.metadata = opts
        .metadata
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
        .collect();
    b.etag = etag;
    b.last_modified = last_modified;
    Ok(committed(b))
}

#[cfg(test)]
mod tests {
    use crate::blob::fake::FakeClient;
    use crate::blob::{BlobClient, CopyInfo, ErrorKind, WriteOptions};
    use bytes::Bytes;

    fn ids(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[tokio::test]
    async fn blocks_commit_in_order_and_reuse_committed_ones() {
        let f = FakeClient::new();
        f.put_block("b", "AAAA", Bytes::from_static(b"hello "))
            .await
            .unwrap();
        f.put_block("b", "BBBB", Bytes::from_static(b"world"))
            .await
            .unwrap();
        let new = WriteOptions {
            if_none_match_any: true,
            ..Default::default()
        };
        let c = f
            .put_block_list("b", &ids(&["AAAA", "BBBB"]), &new)
            .await
            .unwrap();
        assert_eq!(&f.blob("b").unwrap().0[..], b"hello world");
        // A second commit reuses one committed block and a new staged one.
        f.put_block("b", "CCCC", Bytes::from_static(b"there"))
            .await
            .unwrap();
        let cond = WriteOptions {
            if_match: Some(c.etag.clone()),
            ..Default::default()
        };
        f.put_block_list("b", &ids(&["AAAA", "CCCC"]), &cond)
            .await
            .unwrap();
        assert_eq!(&f.blob("b").unwrap().0[..], b"hello there");
        assert_eq!(f.blob("b").unwrap().2, [6, 5]);
        // Conditions: the old ETag no longer matches; the blob exists.
        let e = f
            .put_block_list("b", &ids(&["AAAA"]), &cond)
            .await
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::ConditionNotMet);
        let e = f
            .put_block_list("b", &ids(&["AAAA"]), &new)
            .await
            .unwrap_err();
        assert_eq!(e.code.as_deref(), Some("BlobAlreadyExists"));
        // Unknown ids and ids of another length are refused.
        assert!(f
            .put_block_list("b", &ids(&["ZZZZ"]), &WriteOptions::default())
            .await
            .is_err());
        assert!(f.put_block("b", "LONGER", Bytes::new()).await.is_err());
    }

    #[tokio::test]
    async fn from_url_copy_delete_metadata() {
        let f = FakeClient::new();
        f.put("src", "0123456789");
        let etag = f.properties("src").await.unwrap().etag;
        f.put_block_from_url("dst", "AA", "src", 2, 3, Some(&etag))
            .await
            .unwrap();
        f.put_block("dst", "BB", Bytes::from_static(b"!"))
            .await
            .unwrap();
        f.put_block_list("dst", &ids(&["AA", "BB"]), &WriteOptions::default())
            .await
            .unwrap();
        assert_eq!(&f.blob("dst").unwrap().0[..], b"234!");
        assert_eq!(f.bytes_uploaded(), 1);
        let info = f
            .copy_blob("copy", "src", Some(&etag), &WriteOptions::default())
            .await
            .unwrap();
        assert_eq!(
            f.copy_info("copy").await.unwrap(),
            Some(CopyInfo {
                source: Some("src".into()),
                ..info
            })
        );
        assert_eq!(&f.blob("copy").unwrap().0[..], b"0123456789");
        let mut meta = WriteOptions::default();
        meta.metadata.insert("mode".into(), "0600".into());
        f.set_metadata("copy", &meta).await.unwrap();
        assert_eq!(f.blob("copy").unwrap().1["mode"], "0600");
        f.delete_blob("copy", None).await.unwrap();
        assert_eq!(
            f.delete_blob("copy", None).await.unwrap_err().kind,
            ErrorKind::NotFound
        );
    }
}
