//! Staging against the in-memory fake service.

use super::*;
use crate::blob::fake::{FakeClient, Op};
use std::time::Duration;

const BS: u64 = 1000;

fn pattern(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

struct Env {
    fake: Arc<FakeClient>,
    budget: Arc<WriteBudget>,
    dir: tempfile::TempDir,
}

impl Env {
    fn new(budget_blocks: u64) -> Env {
        Env {
            fake: Arc::new(FakeClient::new()),
            budget: WriteBudget::new(budget_blocks * BS),
            dir: tempfile::tempdir().unwrap(),
        }
    }

    async fn staging(&self, name: &str, truncate: bool) -> Staging {
        let existing = match self.fake.properties(name).await {
            Ok(p) => Some((Arc::from(p.etag.as_str()), p.size)),
            Err(_) => None,
        };
        let area = StagingArea {
            client: self.fake.clone(),
            budget: self.budget.clone(),
            dir: self.dir.path().to_path_buf(),
            grid: crate::fs::upload::Grid::new(BS),
            journal: None,
            reuse: None,
        };
        area.stage(name.into(), existing, truncate, HashMap::new())
            .unwrap()
    }

    fn content(&self, name: &str) -> Vec<u8> {
        self.fake.blob(name).unwrap().0.to_vec()
    }
}

#[tokio::test]
async fn a_sequential_write_uploads_as_it_goes_and_commits_once() {
    let env = Env::new(4);
    let data = pattern(10 * BS as usize + 500, 1);
    let mut s = env.staging("new.bin", false).await;
    for chunk in data.chunks(128) {
        let off = chunk.as_ptr() as usize - data.as_ptr() as usize;
        s.write(off as u64, chunk).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(
        env.fake.count(Op::PutBlock) >= 9,
        "blocks go up while writing"
    );
    assert_eq!(env.fake.count(Op::PutBlockList), 0);
    assert!(
        env.fake.blob("new.bin").is_none(),
        "nothing visible before the commit"
    );
    s.commit().await.unwrap();
    assert_eq!(env.content("new.bin"), data);
    assert_eq!(env.fake.blob("new.bin").unwrap().2.len(), 11);
    assert_eq!(env.fake.count(Op::PutBlockList), 1);
    assert_eq!(
        env.fake.bytes_uploaded(),
        data.len() as u64,
        "each byte sent once"
    );
    // A commit without changes sends nothing but the block list.
    s.commit().await.unwrap();
    assert_eq!(env.fake.bytes_uploaded(), data.len() as u64);
    assert_eq!(
        env.budget.available(),
        env.budget.total(),
        "the budget is all returned"
    );
}

#[tokio::test]
async fn a_sequential_writer_keeps_several_put_blocks_in_flight() {
    let env = Env::new(8);
    // Each Put Block takes a round trip: a writer that waited for each would have one in flight.
    env.fake.set_delay(Op::PutBlock, Duration::from_millis(20));
    let data = pattern(16 * BS as usize, 3);
    let mut s = env.staging("par.bin", false).await;
    for chunk in data.chunks(BS as usize / 4) {
        let off = chunk.as_ptr() as usize - data.as_ptr() as usize;
        s.write(off as u64, chunk).await.unwrap();
    }
    s.commit().await.unwrap();
    assert_eq!(env.content("par.bin"), data);
    let peak = env.fake.peak_in_flight(Op::PutBlock);
    assert!(peak >= 4, "at most {peak} Put Block in flight");
}

#[tokio::test]
async fn random_writes_read_back_before_the_commit() {
    let env = Env::new(8);
    let mut s = env.staging("r.bin", false).await;
    let mut model = vec![0u8; 5 * BS as usize];
    let mut rng = fastrand::Rng::with_seed(5);
    for _ in 0..200 {
        let off = rng.usize(..model.len() - 10);
        let len = rng.usize(1..(model.len() - off).min(2500));
        let data = pattern(len, rng.u8(..));
        s.write(off as u64, &data).await.unwrap();
        model[off..off + len].copy_from_slice(&data);
        let check = rng.usize(..model.len());
        let got = s.read(check as u64, 700).await.unwrap();
        let size = s.size() as usize;
        let (from, to) = (check.min(size), (check + 700).min(size));
        assert_eq!(&got[..], &model[from..to]);
    }
    let size = s.size() as usize;
    s.commit().await.unwrap();
    assert_eq!(env.content("r.bin"), model[..size]);
}

#[tokio::test]
async fn appending_to_a_put_blob_copies_the_old_bytes_in_the_service() {
    let env = Env::new(4);
    let old = pattern(3 * BS as usize + 200, 2);
    env.fake.put("log", old.clone());
    let mut s = env.staging("log", false).await;
    s.write(old.len() as u64, b"appended line\n").await.unwrap();
    s.commit().await.unwrap();
    let mut want = old.clone();
    want.extend_from_slice(b"appended line\n");
    assert_eq!(env.content("log"), want);
    // Blocks 0-2 were copied by the service; block 3 needed its old 200 bytes.
    assert_eq!(env.fake.count(Op::PutBlockFromUrl), 3);
    assert_eq!(env.fake.bytes_uploaded(), 214);
    assert_eq!(env.fake.bytes_read(), 200);
}

#[tokio::test]
async fn a_mid_file_overwrite_uploads_only_the_changed_block() {
    let env = Env::new(4);
    let old = pattern(3 * BS as usize, 3);
    env.fake.put("three", old.clone());
    let mut s = env.staging("three", false).await;
    s.write(BS + 10, b"XYZ").await.unwrap();
    s.commit().await.unwrap();
    let mut want = old.clone();
    want[BS as usize + 10..BS as usize + 13].copy_from_slice(b"XYZ");
    assert_eq!(env.content("three"), want);
    assert_eq!(env.fake.bytes_uploaded(), BS, "only block 1 went up");
    assert_eq!(env.fake.count(Op::PutBlockFromUrl), 2);
    // Writing again after the commit reuses the committed blocks by id.
    let copies = env.fake.count(Op::PutBlockFromUrl);
    s.write(0, b"A").await.unwrap();
    s.commit().await.unwrap();
    want[0] = b'A';
    assert_eq!(env.content("three"), want);
    assert_eq!(
        env.fake.count(Op::PutBlockFromUrl),
        copies,
        "no copies: ids of the last commit"
    );
    assert_eq!(env.fake.bytes_uploaded(), 2 * BS);
}

#[tokio::test]
async fn truncate_shrinks_and_extends_with_zeros() {
    let env = Env::new(4);
    let old = pattern(3 * BS as usize + 7, 4);
    env.fake.put("t", old.clone());
    let mut s = env.staging("t", false).await;
    s.set_size(BS + 5).await.unwrap();
    s.set_size(2 * BS + 1).await.unwrap();
    assert_eq!(
        &s.read(BS, 10).await.unwrap()[..],
        &[&old[BS as usize..BS as usize + 5], &[0u8; 5][..]].concat()[..]
    );
    s.commit().await.unwrap();
    let mut want = old[..BS as usize + 5].to_vec();
    want.resize(2 * BS as usize + 1, 0);
    assert_eq!(env.content("t"), want);
    // O_TRUNC: the old content is dropped without reading it.
    let mut s = env.staging("t", true).await;
    s.write(0, b"fresh").await.unwrap();
    s.commit().await.unwrap();
    assert_eq!(env.content("t"), b"fresh");
}

#[tokio::test]
async fn commits_are_conditional() {
    let env = Env::new(4);
    env.fake.put("c", "base");
    let mut s = env.staging("c", false).await;
    s.write(0, b"mine").await.unwrap();
    env.fake.put("c", "theirs");
    let e = s.commit().await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::ConditionNotMet);
    assert_eq!(env.content("c"), b"theirs", "their version is untouched");
    // A new file that appeared meanwhile is not overwritten.
    let mut s = env.staging("n", false).await;
    s.write(0, b"mine").await.unwrap();
    env.fake.put("n", "theirs");
    assert_eq!(
        s.commit().await.unwrap_err().code.as_deref(),
        Some("BlobAlreadyExists")
    );
    assert_eq!(env.content("n"), b"theirs");
}

#[tokio::test]
async fn old_bytes_that_cannot_be_read_fail_the_write() {
    let env = Env::new(4);
    env.fake.put("f", pattern(2 * BS as usize, 5));
    let mut s = env.staging("f", false).await;
    env.fake.fail_next(Op::GetBlob, ErrorKind::Forbidden);
    assert_eq!(
        s.write(10, b"x").await.unwrap_err().kind,
        ErrorKind::Forbidden
    );
    // A write covering the whole block needs no old bytes.
    s.write(BS, &pattern(BS as usize, 6)).await.unwrap();
}

#[tokio::test]
async fn the_writer_waits_for_uploads_when_the_budget_is_spent() {
    let env = Env::new(2);
    env.fake.set_delay(Op::PutBlock, Duration::from_millis(30));
    let data = pattern(12 * BS as usize, 7);
    let mut s = env.staging("slow", false).await;
    for (i, chunk) in data.chunks(BS as usize / 2).enumerate() {
        s.write((i * chunk.len()) as u64, chunk).await.unwrap();
        assert!(env.budget.available() <= env.budget.total());
    }
    s.commit().await.unwrap();
    assert_eq!(env.content("slow"), data);
    assert_eq!(env.budget.available(), env.budget.total());
}

#[tokio::test]
async fn a_failed_upload_is_sent_again_at_the_next_commit() {
    let env = Env::new(4);
    let data = pattern(2 * BS as usize, 8);
    let mut s = env.staging("retry", false).await;
    s.write(0, &data).await.unwrap();
    env.fake.fail_next(Op::PutBlock, ErrorKind::Transient);
    assert!(s.commit().await.is_err());
    assert!(env.fake.blob("retry").is_none());
    s.commit().await.unwrap();
    assert_eq!(env.content("retry"), data);
}

#[tokio::test]
async fn an_empty_new_file_commits() {
    let env = Env::new(2);
    let mut s = env.staging("empty", false).await;
    s.commit().await.unwrap();
    assert_eq!(env.content("empty"), b"");
}

#[tokio::test]
async fn blocks_committed_on_this_grid_are_reused_by_id() {
    let env = Env::new(4);
    let data = pattern(3 * BS as usize + 10, 9);
    let mut s = env.staging("grid", false).await;
    s.write(0, &data).await.unwrap();
    s.commit().await.unwrap();
    // A new writer (a later open, another mount) appends: no copies, no re-uploads.
    let mut s = env.staging("grid", false).await;
    let uploaded = env.fake.bytes_uploaded();
    s.write(data.len() as u64, b"tail").await.unwrap();
    s.commit().await.unwrap();
    assert_eq!(env.fake.count(Op::PutBlockFromUrl), 0);
    assert_eq!(
        env.fake.bytes_uploaded() - uploaded,
        14,
        "only the last block went up again"
    );
    let mut want = data.clone();
    want.extend_from_slice(b"tail");
    assert_eq!(env.content("grid"), want);
}

#[tokio::test]
async fn blocks_grow_past_the_first_thousand() {
    let env = Env::new(4);
    // 1000 blocks of BS, then blocks of 2 BS.
    let data = pattern(1000 * BS as usize + 5 * BS as usize, 10);
    let mut s = env.staging("grown", false).await;
    for chunk in data.chunks(4096) {
        let off = chunk.as_ptr() as usize - data.as_ptr() as usize;
        s.write(off as u64, chunk).await.unwrap();
    }
    s.commit().await.unwrap();
    assert_eq!(env.content("grown"), data);
    let sizes = env.fake.blob("grown").unwrap().2;
    assert_eq!(sizes.len(), 1003);
    assert!(sizes[..1000].iter().all(|s| *s == BS));
    assert_eq!(&sizes[1000..], &[2 * BS, 2 * BS, BS]);
}

#[tokio::test]
async fn a_write_past_the_end_keeps_the_old_last_block_whole() {
    let env = Env::new(8);
    // The old version ends mid-block; a write far past it.
    let old = pattern(BS as usize + 500, 7);
    env.fake.put("sparse", old.clone());
    let mut s = env.staging("sparse", false).await;
    s.write(3 * BS + 10, b"tail").await.unwrap();
    let mut want = old.clone();
    want.resize(3 * BS as usize + 10, 0);
    want.extend_from_slice(b"tail");
    assert_eq!(&s.read(0, want.len() as u64).await.unwrap()[..], &want[..]);
    s.commit().await.unwrap();
    assert_eq!(env.content("sparse"), want);
    // The same after the partial last block was already uploaded (pressure, fsync).
    let mut s = env.staging("sparse2", false).await;
    let a = pattern(BS as usize + 500, 9);
    s.write(0, &a).await.unwrap();
    s.flush_dirty();
    tokio::time::sleep(Duration::from_millis(50)).await;
    s.write(3 * BS, b"tail").await.unwrap();
    s.commit().await.unwrap();
    let mut want = a.clone();
    want.resize(3 * BS as usize, 0);
    want.extend_from_slice(b"tail");
    assert_eq!(env.content("sparse2"), want);
    // And after a commit (the short last block's id must not be reused at a new length).
    s.write(6 * BS, b"more").await.unwrap();
    s.commit().await.unwrap();
    want.resize(6 * BS as usize, 0);
    want.extend_from_slice(b"more");
    assert_eq!(env.content("sparse2"), want);
}

/// One change of a file, for the property test below.
#[derive(Debug, Clone)]
enum Change {
    Write(u64, Vec<u8>),
    SetSize(u64),
    Commit,
    /// A commit whose Put Block List is carried out but its answer lost (and retried).
    CommitLosingAnswer,
}

fn change() -> impl proptest::strategy::Strategy<Value = Change> {
    use proptest::prelude::*;
    let max = 6 * BS;
    prop_oneof![
        6 => (0..max, proptest::collection::vec(any::<u8>(), 1..(2 * BS as usize + 7)))
            .prop_map(|(o, d)| Change::Write(o, d)),
        2 => (0..max).prop_map(Change::SetSize),
        2 => Just(Change::Commit),
        1 => Just(Change::CommitLosingAnswer),
    ]
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

    /// Any sequence of writes, truncations and commits on a file that had content: what the
    /// staging reads back, and what every commit leaves in the service, is a plain byte vector
    /// that took the same changes.
    #[test]
    fn staging_matches_a_byte_vector(
        start in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..(4 * BS as usize)),
        changes in proptest::collection::vec(change(), 1..25),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let env = Env::new(3);
            if !start.is_empty() {
                env.fake.put("p", start.clone());
            }
            let mut s = env.staging("p", false).await;
            let mut model = start.clone();
            for c in &changes {
                match c {
                    Change::Write(offset, data) => {
                        s.write(*offset, data).await.unwrap();
                        let end = *offset as usize + data.len();
                        if model.len() < end {
                            model.resize(end, 0);
                        }
                        model[*offset as usize..end].copy_from_slice(data);
                    }
                    Change::SetSize(size) => {
                        s.set_size(*size).await.unwrap();
                        model.resize(*size as usize, 0);
                    }
                    Change::Commit | Change::CommitLosingAnswer => {
                        if matches!(c, Change::CommitLosingAnswer) {
                            env.fake.inject_next(
                                Op::PutBlockList,
                                crate::blob::fake::Fault::LoseAnswer,
                            );
                            env.fake.inject_next(Op::PutBlob, crate::blob::fake::Fault::LoseAnswer);
                        }
                        s.commit().await.unwrap();
                        assert_eq!(env.content("p"), model, "committed content");
                        // The fault for the kind of commit not made is not left for later.
                        while env.fake.pending_faults() > 0 {
                            env.fake.set_random_faults(None);
                            let _ = env.fake.put_blob("unused", bytes::Bytes::new(), &Default::default()).await;
                            let _ = env.fake.put_block_list("unused", &[], &Default::default()).await;
                        }
                        env.fake.remove("unused");
                    }
                }
                assert_eq!(s.size(), model.len() as u64);
                let got = s.read(0, model.len() as u64 + 10).await.unwrap();
                assert_eq!(&got[..], &model[..], "read back");
            }
            s.commit().await.unwrap();
            assert_eq!(env.content("p"), model);
            assert_eq!(env.fake.names(), vec!["p"], "one blob, no copies");
        });
    }
}

#[tokio::test]
async fn a_write_past_the_end_that_waits_for_room_sends_the_old_last_block_whole() {
    // Two blocks of budget, both held by dirty blocks: the write far past the end has to
    // upload them to make room, the old last block included, which must go at its new length.
    let env = Env::new(2);
    let old = pattern(BS as usize + 500, 9);
    env.fake.put("g", old.clone());
    let mut s = env.staging("g", false).await;
    s.write(BS + 10, b"one").await.unwrap();
    s.write(10, b"zero").await.unwrap();
    s.write(5 * BS + 500, b"far").await.unwrap();
    s.commit().await.unwrap();
    let mut want = old.clone();
    want[BS as usize + 10..BS as usize + 13].copy_from_slice(b"one");
    want[10..14].copy_from_slice(b"zero");
    want.resize(5 * BS as usize + 503, 0);
    want[5 * BS as usize + 500..].copy_from_slice(b"far");
    assert_eq!(env.content("g"), want);
}

#[tokio::test]
async fn a_file_of_one_block_written_here_is_committed_with_one_put_blob() {
    let env = Env::new(4);
    // New: one Put Blob with If-None-Match: *, nothing staged.
    let mut s = env.staging("small", false).await;
    s.write(0, b"hello").await.unwrap();
    s.set_meta("mode", Some("644".into()));
    s.commit().await.unwrap();
    assert_eq!(env.content("small"), b"hello");
    assert_eq!(
        env.fake
            .blob("small")
            .unwrap()
            .1
            .get("mode")
            .map(String::as_str),
        Some("644")
    );
    assert_eq!(env.fake.count(Op::PutBlob), 1);
    assert_eq!(env.fake.count(Op::PutBlock), 0);
    assert_eq!(env.fake.count(Op::PutBlockList), 0);
    // Rewritten: one Put Blob again (If-Match the version just made).
    s.write(5, b", world").await.unwrap();
    s.commit().await.unwrap();
    assert_eq!(env.content("small"), b"hello, world");
    assert_eq!(env.fake.count(Op::PutBlob), 2);
    // Only its metadata changed: nothing written, so the service copies the bytes (no
    // download and upload of them).
    s.set_meta("mode", Some("600".into()));
    s.commit().await.unwrap();
    assert_eq!(env.content("small"), b"hello, world");
    assert_eq!(env.fake.count(Op::PutBlob), 2);
    assert_eq!(env.fake.count(Op::PutBlockList), 1);
    // A file of two blocks: blocks and a block list.
    let mut big = env.staging("big", false).await;
    big.write(0, &pattern(BS as usize + 1, 2)).await.unwrap();
    big.commit().await.unwrap();
    assert_eq!(env.content("big"), pattern(BS as usize + 1, 2));
    assert_eq!(env.fake.count(Op::PutBlob), 2);
    assert_eq!(env.fake.count(Op::PutBlockList), 2);
}

#[tokio::test]
async fn after_a_failed_commit_unchanged_blocks_still_read_the_old_version() {
    // Blocks 0 and 1 are copied by the service (staged, never local); the commit fails: the
    // file still reads them from the old version, not as zeros, and a local copy made now
    // (recovery) is whole.
    let env = Env::new(4);
    let old = pattern(3 * BS as usize, 4);
    env.fake.put("f", old.clone());
    let mut s = env.staging("f", false).await;
    s.write(2 * BS + 5, b"new").await.unwrap();
    env.fake
        .fail_next(Op::PutBlockList, crate::blob::ErrorKind::Transient);
    assert!(s.commit().await.is_err());
    let mut want = old.clone();
    want[2 * BS as usize + 5..2 * BS as usize + 8].copy_from_slice(b"new");
    assert_eq!(&s.read(0, 3 * BS).await.unwrap()[..], &want[..]);
    s.materialize().await.unwrap();
    env.fake.put("f", "replaced by someone else");
    assert_eq!(&s.read(0, 3 * BS).await.unwrap()[..], &want[..]);
}
