//! Unit tests of the filesystem core against the in-memory fake client.

use super::*;
use crate::blob::fake::{FakeClient, Op};
use crate::blob::ErrorKind;
use crate::fs::posix::Creator;
use std::ffi::OsStr;
use std::sync::atomic::Ordering;

const BS: u64 = 1024;

fn perm_mtime(perm: Option<u16>, mtime: Option<std::time::SystemTime>) -> SetAttrs {
    SetAttrs {
        perm,
        mtime,
        ..SetAttrs::default()
    }
}

fn config(ttl: Duration) -> FsConfig {
    FsConfig {
        uid: 1000,
        gid: 1000,
        file_mode: 0o644,
        dir_mode: 0o755,
        metadata_ttl: ttl,
        block_size: BS,
        cache_size: 64 * BS,
        read_only: true,
        prefetch_files: crate::fs::PREFETCH_FILES,
        write_buffer: 8 * BS,
        staging_dir: std::env::temp_dir(),
        journal: None,
        keep_owners: true,
        credential: None,
        write_back: None,
    }
}

fn setup(ttl: Duration) -> (Arc<FakeClient>, Arc<Fs>) {
    let fake = Arc::new(FakeClient::new());
    let fs = Fs::new(fake.clone(), config(ttl));
    (fake, fs)
}

fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 + i / 251) as u8).collect()
}

async fn lookup(fs: &Fs, parent: u64, name: &str) -> Result<Attr, Errno> {
    fs.lookup(parent, OsStr::new(name))
        .await
        .map_err(Errno::from)
}

async fn names(fs: &Fs, ino: u64) -> Vec<(String, Kind)> {
    let fh = fs.opendir(ino).await.unwrap();
    let mut out = Vec::new();
    fs.readdir(fh, 0, true, |_, _, name, attr| {
        out.push((name.to_string(), attr.kind));
        false
    })
    .unwrap();
    fs.releasedir(fh);
    out
}

#[tokio::test]
async fn lookups_find_files_prefix_dirs_and_both_marker_forms() {
    let (fake, fs) = setup(Duration::from_secs(60));
    fake.put("file.txt", "hello");
    fake.put("pre/inner", "x");
    fake.put("slash/", "");
    fake.put_with_metadata("hdi", "", &[("hdi_isfolder", "true")]);
    fake.put("both", "file loses");
    fake.put("both/x", "dir wins");

    let f = lookup(&fs, ROOT_INO, "file.txt").await.unwrap();
    assert_eq!((f.kind, f.size), (Kind::File, 5));
    for d in ["pre", "slash", "hdi", "both"] {
        assert_eq!(
            lookup(&fs, ROOT_INO, d).await.unwrap().kind,
            Kind::Dir,
            "{d}"
        );
    }
    assert_eq!(lookup(&fs, ROOT_INO, "missing").await, Err(libc::ENOENT));
    assert_eq!(
        lookup(&fs, ROOT_INO, &"x".repeat(256)).await,
        Err(libc::ENAMETOOLONG)
    );
    let pre = lookup(&fs, ROOT_INO, "pre").await.unwrap();
    assert_eq!(lookup(&fs, pre.ino, "inner").await.unwrap().size, 1);
    assert_eq!(lookup(&fs, f.ino, "x").await, Err(libc::ENOTDIR));
}

/// Blobs for the lookup tests: a file, a prefix directory, a marked directory, a name that is
/// both, and a sibling sharing a prefix.
fn lookup_cases(fake: &FakeClient) -> [(&'static str, Option<Kind>); 5] {
    fake.put("file", "1");
    fake.put("pre/inner", "2");
    fake.put_with_metadata("marked", "", &[("hdi_isfolder", "true")]);
    fake.put("both", "file of the same name");
    fake.put("both/x", "3");
    fake.put("file.txt", "a sibling sharing the prefix");
    [
        ("file", Some(Kind::File)),
        ("pre", Some(Kind::Dir)),
        ("marked", Some(Kind::Dir)),
        ("both", Some(Kind::Dir)),
        ("missing", None),
    ]
}

#[tokio::test]
async fn a_lookup_the_cache_cannot_answer_is_one_list_blobs() {
    // Each case on a mount of its own: its lookup is the first in the directory.
    for (name, kind) in lookup_cases(&FakeClient::new()) {
        let (fake, fs) = setup(Duration::from_secs(60));
        lookup_cases(&fake);
        let got = lookup(&fs, ROOT_INO, name).await;
        assert_eq!(got.map(|a| a.kind).ok(), kind, "{name}");
        assert_eq!(
            (fake.count(Op::ListBlobs), fake.count(Op::GetBlobProperties)),
            (1, 0),
            "{name}: one List Blobs"
        );
    }
    // More names sharing the prefix than a page holds, all sorted before `n/`: one more
    // listing, of `n/`, finds the directory.
    let (fake, fs) = setup(Duration::from_secs(60));
    fake.put("n", "file");
    for i in 0..40 {
        fake.put(&format!("n!{i:04}"), "x");
    }
    fake.put("n/inner", "x");
    assert_eq!(lookup(&fs, ROOT_INO, "n").await.unwrap().kind, Kind::Dir);
    assert_eq!(fake.count(Op::ListBlobs), 2);
}

/// An empty page with a continuation settles nothing: the lookup follows it, for the name
/// itself and for what is under `name/`.
#[tokio::test]
async fn a_lookup_follows_empty_pages() {
    for (name, kind) in lookup_cases(&FakeClient::new()) {
        for empties in [1, 3] {
            let (fake, fs) = setup(Duration::from_secs(60));
            lookup_cases(&fake);
            fake.empty_pages_next(name, empties);
            let got = lookup(&fs, ROOT_INO, name).await;
            assert_eq!(got.map(|a| a.kind).ok(), kind, "{name} after {empties}");
        }
    }
    // The probe of `n/` (page 1 full of names between `n` and `n/`) meets empty pages too.
    let (fake, fs) = setup(Duration::from_secs(60));
    fake.put("n", "file");
    for i in 0..40 {
        fake.put(&format!("n!{i:04}"), "x");
    }
    fake.put("n/inner", "x");
    fake.empty_pages_next("n/", 2);
    assert_eq!(lookup(&fs, ROOT_INO, "n").await.unwrap().kind, Kind::Dir);
    assert_eq!(fake.count(Op::ListBlobs), 4);
}

#[tokio::test]
async fn a_lookup_of_a_large_directory_asks_for_a_page_of_names_not_for_all_under_it() {
    // With `/` as delimiter the service goes through all 5,000 names under `big/` to roll
    // them into one prefix (Azurite took seconds); without, it stops after a page.
    let (fake, fs) = setup(Duration::from_secs(60));
    for i in 0..5000 {
        fake.put(&format!("big/f{i:05}"), "");
    }
    fake.put("big-sibling", "x");
    assert_eq!(lookup(&fs, ROOT_INO, "big").await.unwrap().kind, Kind::Dir);
    assert_eq!(fake.count(Op::ListBlobs), 1);
    // A page of 32, and the name after it that says there are more.
    assert!(
        fake.names_listed() <= 33,
        "{} names listed",
        fake.names_listed()
    );
}

#[tokio::test]
async fn names_probed_one_after_another_cost_one_listing_of_their_directory() {
    let (fake, fs) = setup(Duration::from_secs(60));
    let cases = lookup_cases(&fake);
    for i in 0..=super::dircache::SMALL_DIR {
        fake.put(&format!("big/f{i:05}"), "");
    }
    // Lookups ask for their name until one finds a name missing ("missing", the last case);
    // the next lists the directory, which answers every other name while it is fresh.
    for (name, kind) in cases {
        let got = lookup(&fs, ROOT_INO, name).await;
        assert_eq!(got.map(|a| a.kind).ok(), kind, "{name}");
    }
    for i in 0..1000 {
        let name = format!("missing-{i}");
        assert_eq!(lookup(&fs, ROOT_INO, &name).await, Err(libc::ENOENT));
    }
    assert_eq!(fake.count(Op::ListBlobs), 5 + 1);
    assert_eq!(fake.count(Op::GetBlobProperties), 0);

    // A directory too large to list at a lookup: one page is tried once, then each name is
    // looked up by itself.
    let big = lookup(&fs, ROOT_INO, "big").await.unwrap();
    let before = fake.count(Op::ListBlobs);
    for i in 0..10 {
        let name = format!("missing-{i}");
        assert_eq!(lookup(&fs, big.ino, &name).await, Err(libc::ENOENT));
    }
    assert_eq!(fake.count(Op::ListBlobs) - before, 10 + 1);
}

#[tokio::test]
async fn negative_lookups_are_cached_and_complete_listings_answer_without_requests() {
    let (fake, fs) = setup(Duration::from_secs(60));
    fake.put("a", "1");
    assert_eq!(lookup(&fs, ROOT_INO, "nope").await, Err(libc::ENOENT));
    let before = (fake.count(Op::ListBlobs), fake.count(Op::GetBlobProperties));
    assert_eq!(lookup(&fs, ROOT_INO, "nope").await, Err(libc::ENOENT));
    assert_eq!(
        (fake.count(Op::ListBlobs), fake.count(Op::GetBlobProperties)),
        before,
        "negative entry reused"
    );

    // After a complete listing, probing many missing names costs nothing.
    assert_eq!(names(&fs, ROOT_INO).await.len(), 3);
    let before = (fake.count(Op::ListBlobs), fake.count(Op::GetBlobProperties));
    for i in 0..1000 {
        assert_eq!(
            lookup(&fs, ROOT_INO, &format!(".git-probe-{i}")).await,
            Err(libc::ENOENT)
        );
    }
    assert_eq!(lookup(&fs, ROOT_INO, "a").await.unwrap().size, 1);
    assert_eq!(
        (fake.count(Op::ListBlobs), fake.count(Op::GetBlobProperties)),
        before
    );
}

#[tokio::test]
async fn ttl_expiry_sees_changes() {
    let (fake, fs) = setup(Duration::from_millis(50));
    fake.put("f", "one");
    assert_eq!(lookup(&fs, ROOT_INO, "g").await, Err(libc::ENOENT));
    let f = lookup(&fs, ROOT_INO, "f").await.unwrap();
    fake.put("f", "three");
    fake.put("g", "new");
    assert_eq!(
        fs.getattr(f.ino).await.unwrap().size,
        3,
        "within the TTL: cached"
    );
    tokio::time::sleep(Duration::from_millis(60)).await;
    assert_eq!(fs.getattr(f.ino).await.unwrap().size, 5);
    assert_eq!(lookup(&fs, ROOT_INO, "g").await.unwrap().size, 3);
}

#[tokio::test]
async fn readdir_lists_everything_with_dots_and_offsets() {
    let (fake, fs) = setup(Duration::from_secs(60));
    for i in 0..50 {
        fake.put(&format!("d/f{i:02}"), vec![0u8; i]);
    }
    fake.put("d/sub/x", "x");
    fake.put("d/bad//name", "hidden");
    let d = lookup(&fs, ROOT_INO, "d").await.unwrap();
    let fh = fs.opendir(d.ino).await.unwrap();
    // Read in small batches, resuming at the offsets handed out.
    let mut seen = Vec::new();
    let mut offset = 0;
    loop {
        let mut batch = Vec::new();
        fs.readdir(fh, offset, true, |ino, next, name, attr| {
            if batch.len() == 7 {
                return true;
            }
            assert_eq!(ino, attr.ino);
            batch.push((next, name.to_string(), attr.size));
            false
        })
        .unwrap();
        if batch.is_empty() {
            break;
        }
        offset = batch.last().unwrap().0;
        seen.extend(batch.into_iter().map(|(_, n, s)| (n, s)));
    }
    assert_eq!(
        seen.len(),
        2 + 50 + 2,
        "., .., 50 files, sub and bad (a prefix dir)"
    );
    assert_eq!(seen[0].0, ".");
    assert_eq!(seen[1].0, "..");
    assert!(seen.iter().any(|(n, s)| n == "f07" && *s == 7));
    // readdirplus took a reference on each entry: the names resolve without requests.
    let lists = fake.count(Op::ListBlobs);
    let f07 = lookup(&fs, d.ino, "f07").await.unwrap();
    assert_eq!(f07.size, 7);
    assert_eq!(fake.count(Op::ListBlobs), lists);
    fs.releasedir(fh);
    // The blob with an empty segment is hidden inside "bad".
    let bad = lookup(&fs, d.ino, "bad").await.unwrap();
    assert_eq!(names(&fs, bad.ino).await.len(), 2);
}

#[tokio::test]
async fn forget_drops_inodes() {
    let (fake, fs) = setup(Duration::from_secs(60));
    fake.put("a", "1");
    let base = fs.inode_count();
    let a = lookup(&fs, ROOT_INO, "a").await.unwrap();
    lookup(&fs, ROOT_INO, "a").await.unwrap();
    assert_eq!(fs.inode_count(), base + 1);
    fs.forget(a.ino, 2);
    assert_eq!(fs.inode_count(), base);
}

async fn read_all(fs: &Fs, fh: u64, chunk: u32) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let b = fs.read(fh, out.len() as u64, chunk).await.unwrap();
        if b.is_empty() {
            return out;
        }
        out.extend_from_slice(&b);
    }
}

#[tokio::test]
async fn reads_return_exact_bytes_at_block_edges() {
    let (fake, fs) = setup(Duration::from_secs(60));
    let sizes = [
        0,
        1,
        BS as usize - 1,
        BS as usize,
        BS as usize + 1,
        10 * BS as usize + 17,
    ];
    for size in sizes {
        fake.put(&format!("f{size}"), pattern(size));
    }
    for size in sizes {
        let name = format!("f{size}");
        let data = pattern(size);
        let a = lookup(&fs, ROOT_INO, &name).await.unwrap();
        let (fh, _) = fs.open(a.ino, OpenMode::default()).await.unwrap();
        assert_eq!(read_all(&fs, fh, 300).await, data, "size {size}");
        // A read spanning three blocks at an odd offset.
        if size > 3 * BS as usize {
            let b = fs.read(fh, BS - 5, 2 * BS as u32 + 10).await.unwrap();
            assert_eq!(&b[..], &data[BS as usize - 5..3 * BS as usize + 5]);
        }
        fs.release(fh).await;
    }
}

#[tokio::test]
async fn sequential_reads_prefetch_and_random_reads_fetch_only_what_they_need() {
    let (fake, fs) = setup(Duration::from_secs(60));
    let data = pattern(64 * BS as usize);
    fake.put("big", data.clone());
    let a = lookup(&fs, ROOT_INO, "big").await.unwrap();

    let (fh, _) = fs.open(a.ino, OpenMode::default()).await.unwrap();
    assert_eq!(read_all(&fs, fh, 256).await, data);
    fs.release(fh).await;
    let stats = &fs.cache().stats;
    assert!(
        stats.run_blocks.load(Ordering::Relaxed) > 2 * stats.runs.load(Ordering::Relaxed),
        "sequential reads fetch several blocks per request"
    );
    assert_eq!(
        fake.bytes_read(),
        data.len() as u64,
        "every byte fetched once"
    );
    assert!(fs.cache().used() <= fs.cache().budget());

    let (fake, fs) = setup(Duration::from_secs(60));
    fake.put("big", data.clone());
    let a = lookup(&fs, ROOT_INO, "big").await.unwrap();
    let (fh, _) = fs.open(a.ino, OpenMode::default()).await.unwrap();
    for (i, off) in [40 * BS + 3, 2 * BS, 60 * BS, 17 * BS + 100, 33]
        .into_iter()
        .enumerate()
    {
        let b = fs.read(fh, off, 100).await.unwrap();
        assert_eq!(&b[..], &data[off as usize..off as usize + 100], "read {i}");
    }
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(fake.count(Op::GetBlob), 5);
    assert_eq!(fake.bytes_read(), 5 * BS);
    assert_eq!(fs.cache().stats.run_blocks.load(Ordering::Relaxed), 5);
}

#[tokio::test]
async fn an_open_handle_keeps_its_version() {
    let (fake, fs) = setup(Duration::ZERO);
    let old = pattern(4 * BS as usize);
    fake.put("f", old.clone());
    let a = lookup(&fs, ROOT_INO, "f").await.unwrap();
    let (fh, keep) = fs.open(a.ino, OpenMode::default()).await.unwrap();
    assert_eq!(keep, PageCache::Drop, "first open: no page cache to keep");
    let b = fs.read(fh, 0, BS as u32).await.unwrap();
    assert_eq!(&b[..], &old[..BS as usize]);
    fake.put("f", vec![9u8; 4 * BS as usize]);
    // Cached block: still the old version. Uncached block: refused, never the new bytes.
    assert_eq!(&fs.read(fh, 10, 10).await.unwrap()[..], &old[10..20]);
    assert_eq!(
        fs.read(fh, 3 * BS, 10).await.map_err(Errno::from),
        Err(libc::ESTALE)
    );
    fs.release(fh).await;
    // A new open reads the new version.
    let (fh, keep) = fs.open(a.ino, OpenMode::default()).await.unwrap();
    assert_eq!(
        keep,
        PageCache::Drop,
        "new version: the kernel must drop its cached pages"
    );
    assert_eq!(&fs.read(fh, 3 * BS, 10).await.unwrap()[..], &[9u8; 10]);
    fs.release(fh).await;
    let (fh, keep) = fs.open(a.ino, OpenMode::default()).await.unwrap();
    assert_eq!(
        keep,
        PageCache::Keep,
        "same version: the kernel may keep its pages"
    );
    fs.release(fh).await;
}

#[tokio::test]
async fn a_handle_opened_from_stale_metadata_reads_the_current_version() {
    let (fake, fs) = setup(Duration::from_secs(60));
    fake.put("f", "old content");
    let a = lookup(&fs, ROOT_INO, "f").await.unwrap();
    fake.put("f", "new content!");
    let (fh, _) = fs.open(a.ino, OpenMode::default()).await.unwrap();
    assert_eq!(read_all(&fs, fh, 100).await, b"new content!");
}

#[tokio::test]
async fn errors_map_to_errno() {
    let (fake, fs) = setup(Duration::ZERO);
    fake.put("f", "data");
    let a = lookup(&fs, ROOT_INO, "f").await.unwrap();
    fake.fail_next(Op::GetBlobProperties, ErrorKind::Forbidden);
    assert_eq!(
        fs.getattr(a.ino).await.map_err(Errno::from),
        Err(libc::EACCES)
    );
    fake.fail_next(Op::ListBlobs, ErrorKind::Transient);
    assert_eq!(lookup(&fs, ROOT_INO, "other").await, Err(libc::EIO));
    let (fh, _) = fs.open(a.ino, OpenMode::default()).await.unwrap();
    fake.fail_next(Op::GetBlob, ErrorKind::Transient);
    assert_eq!(fs.read(fh, 0, 4).await.map_err(Errno::from), Err(libc::EIO));
    assert_eq!(
        &fs.read(fh, 0, 4).await.unwrap()[..],
        b"data",
        "errors are not cached"
    );
    assert_eq!(
        fs.open(
            a.ino,
            OpenMode {
                write: true,
                truncate: false
            }
        )
        .await
        .map_err(Errno::from),
        Err(libc::EROFS)
    );
    fake.remove("f");
    assert_eq!(
        fs.getattr(a.ino).await.map_err(Errno::from),
        Err(libc::ENOENT)
    );
}

#[tokio::test]
async fn a_slow_read_does_not_hold_up_lookups_or_listings() {
    let (fake, fs) = setup(Duration::ZERO);
    fake.put("slow", pattern(BS as usize));
    fake.put("d/x", "x");
    let a = lookup(&fs, ROOT_INO, "slow").await.unwrap();
    let (fh, _) = fs.open(a.ino, OpenMode::default()).await.unwrap();
    fake.set_delay(Op::GetBlob, Duration::from_secs(3600));
    let fs2 = fs.clone();
    let reader = tokio::spawn(async move { fs2.read(fh, 0, 10).await });
    tokio::time::sleep(Duration::from_millis(10)).await;
    let listed = tokio::time::timeout(Duration::from_secs(5), async {
        let d = lookup(&fs, ROOT_INO, "d").await.unwrap();
        names(&fs, d.ino).await
    })
    .await
    .expect("listing finished while the read was stuck");
    assert_eq!(listed.len(), 3);
    assert!(!reader.is_finished());
    reader.abort();
}

pub(super) fn setup_rw(ttl: Duration) -> (Arc<FakeClient>, Arc<Fs>) {
    let fake = Arc::new(FakeClient::new());
    let mut cfg = config(ttl);
    cfg.read_only = false;
    let fs = Fs::new(fake.clone(), cfg);
    (fake, fs)
}

#[tokio::test]
async fn a_new_file_is_listed_while_written_and_lands_on_close() {
    let (fake, fs) = setup_rw(Duration::from_secs(60));
    fake.put("d/old", "x");
    let d = lookup(&fs, ROOT_INO, "d").await.unwrap();
    assert_eq!(names(&fs, d.ino).await.len(), 3);
    let (a, fh) = fs
        .create(
            d.ino,
            OsStr::new("new.txt"),
            true,
            false,
            &Creator::DEFAULTS,
        )
        .await
        .unwrap();
    let data = pattern(3 * BS as usize + 5);
    fs.write(fh, 0, &data[..2000]).await.unwrap();
    // Visible with its growing size, to lookups and listings, before any commit.
    assert_eq!(fs.getattr(a.ino).await.unwrap().size, 2000);
    assert!(names(&fs, d.ino).await.iter().any(|(n, _)| n == "new.txt"));
    assert_eq!(lookup(&fs, d.ino, "new.txt").await.unwrap().ino, a.ino);
    // Read your writes, through another handle.
    let (rfh, _) = fs.open(a.ino, OpenMode::default()).await.unwrap();
    assert_eq!(&fs.read(rfh, 100, 50).await.unwrap()[..], &data[100..150]);
    fs.write(fh, 2000, &data[2000..]).await.unwrap();
    assert!(fake.blob("d/new.txt").is_none());
    fs.flush(fh).await.unwrap();
    fs.release(fh).await;
    fs.release(rfh).await;
    assert_eq!(&fake.blob("d/new.txt").unwrap().0[..], &data[..]);
    // O_EXCL on an existing name.
    assert_eq!(
        fs.create(
            d.ino,
            OsStr::new("new.txt"),
            true,
            false,
            &Creator::DEFAULTS
        )
        .await
        .unwrap_err()
        .to_errno(),
        libc::EEXIST
    );
    // After the commit, reads come from the service, bytes equal.
    let (rfh, _) = fs.open(a.ino, OpenMode::default()).await.unwrap();
    assert_eq!(&fs.read(rfh, 0, 10_000).await.unwrap()[..], &data[..]);
}

#[tokio::test]
async fn exclusive_create_is_exclusive_within_the_mount() {
    let (_fake, fs) = setup_rw(Duration::from_secs(60));
    let (_, fh) = fs
        .create(
            ROOT_INO,
            OsStr::new("lock"),
            true,
            false,
            &Creator::DEFAULTS,
        )
        .await
        .unwrap();
    assert_eq!(
        fs.create(
            ROOT_INO,
            OsStr::new("lock"),
            true,
            false,
            &Creator::DEFAULTS
        )
        .await
        .unwrap_err()
        .to_errno(),
        libc::EEXIST
    );
    fs.release(fh).await;
}

#[tokio::test]
async fn truncate_and_append_edit_existing_blobs() {
    let (fake, fs) = setup_rw(Duration::from_secs(60));
    fake.put("f", pattern(2 * BS as usize));
    let a = lookup(&fs, ROOT_INO, "f").await.unwrap();
    let attr = fs.set_size(a.ino, 10).await.unwrap();
    assert_eq!(attr.size, 10);
    assert_eq!(
        &fake.blob("f").unwrap().0[..],
        &pattern(2 * BS as usize)[..10]
    );
    let (fh, _) = fs
        .open(
            a.ino,
            OpenMode {
                write: true,
                truncate: false,
            },
        )
        .await
        .unwrap();
    fs.write(fh, 10, b"+tail").await.unwrap();
    fs.flush(fh).await.unwrap();
    fs.release(fh).await;
    let mut want = pattern(2 * BS as usize)[..10].to_vec();
    want.extend_from_slice(b"+tail");
    assert_eq!(&fake.blob("f").unwrap().0[..], &want[..]);
    let (fh, _) = fs
        .open(
            a.ino,
            OpenMode {
                write: true,
                truncate: true,
            },
        )
        .await
        .unwrap();
    fs.release(fh).await;
    assert_eq!(&fake.blob("f").unwrap().0[..], b"");
}

#[tokio::test]
async fn names_looked_up_in_a_directory_just_made_here_cost_no_request() {
    let (fake, fs) = setup_rw(Duration::from_secs(60));
    let d = fs
        .mkdir(ROOT_INO, OsStr::new("new"), &Creator::DEFAULTS)
        .await
        .unwrap();
    let ops = [Op::GetBlobProperties, Op::ListBlobs];
    let before: Vec<u64> = ops.iter().map(|op| fake.count(*op)).collect();
    // What `tar x` does for each file: look the name up (missing), create, write, close.
    for name in ["a", "b", "c"] {
        assert_eq!(lookup(&fs, d.ino, name).await.err(), Some(libc::ENOENT));
        let (_, fh) = fs
            .create(d.ino, OsStr::new(name), false, false, &Creator::DEFAULTS)
            .await
            .unwrap();
        fs.write(fh, 0, name.as_bytes()).await.unwrap();
        assert_eq!(fs.flush(fh).await, Ok(()));
        fs.release(fh).await;
    }
    // The files made are found, and listed, from what this mount knows.
    assert_eq!(lookup(&fs, d.ino, "b").await.unwrap().size, 1);
    let fh = fs.opendir(d.ino).await.unwrap();
    let mut names = Vec::new();
    fs.readdir(fh, 0, false, |_, _, name, _| {
        names.push(name.to_string());
        false
    })
    .unwrap();
    fs.releasedir(fh);
    assert_eq!(names, [".", "..", "a", "b", "c"]);
    let after: Vec<u64> = ops.iter().map(|op| fake.count(*op)).collect();
    assert_eq!(before, after, "no HEAD and no listing: {ops:?}");
    assert_eq!(
        fake.count(Op::PutBlob),
        4,
        "the marker and one Put Blob per file"
    );
    // Someone else's blob in it is seen once the listing is older than the TTL.
    let (fake, fs) = setup_rw(Duration::from_millis(50));
    let d = fs
        .mkdir(ROOT_INO, OsStr::new("shared"), &Creator::DEFAULTS)
        .await
        .unwrap();
    fake.put("shared/theirs", "x");
    assert_eq!(lookup(&fs, d.ino, "theirs").await.err(), Some(libc::ENOENT));
    tokio::time::sleep(Duration::from_millis(80)).await;
    assert_eq!(lookup(&fs, d.ino, "theirs").await.unwrap().size, 1);
}

#[tokio::test]
async fn mkdir_rmdir_unlink() {
    let (fake, fs) = setup_rw(Duration::from_secs(60));
    let d = fs
        .mkdir(ROOT_INO, OsStr::new("newdir"), &Creator::DEFAULTS)
        .await
        .unwrap();
    assert_eq!(d.kind, Kind::Dir);
    let (_, meta, _) = fake.blob("newdir").unwrap();
    assert_eq!(meta["hdi_isfolder"], "true");
    assert_eq!(
        fs.mkdir(ROOT_INO, OsStr::new("newdir"), &Creator::DEFAULTS)
            .await
            .unwrap_err()
            .to_errno(),
        libc::EEXIST
    );
    let (f, fh) = fs
        .create(d.ino, OsStr::new("f"), false, false, &Creator::DEFAULTS)
        .await
        .unwrap();
    fs.write(fh, 0, b"x").await.unwrap();
    fs.release(fh).await;
    assert_eq!(
        fs.rmdir(ROOT_INO, OsStr::new("newdir"))
            .await
            .unwrap_err()
            .to_errno(),
        libc::ENOTEMPTY
    );
    assert_eq!(
        fs.unlink(ROOT_INO, OsStr::new("newdir"))
            .await
            .unwrap_err()
            .to_errno(),
        libc::EISDIR
    );
    fs.unlink(d.ino, OsStr::new("f")).await.unwrap();
    assert!(fake.blob("newdir/f").is_none());
    assert_eq!(lookup(&fs, d.ino, "f").await.unwrap_err(), libc::ENOENT);
    fs.rmdir(ROOT_INO, OsStr::new("newdir")).await.unwrap();
    assert!(fake.names().is_empty());
    assert_eq!(
        lookup(&fs, ROOT_INO, "newdir").await.unwrap_err(),
        libc::ENOENT
    );
    let _ = f;
    // A prefix-only directory (no marker) can be removed once empty too (on a mount of its own:
    // this one's fresh listing of the root would not show a blob put behind its back).
    let (fake, fs) = setup_rw(Duration::from_secs(60));
    fake.put("p/only", "x");
    let p = lookup(&fs, ROOT_INO, "p").await.unwrap();
    fs.unlink(p.ino, OsStr::new("only")).await.unwrap();
    fs.rmdir(ROOT_INO, OsStr::new("p")).await.unwrap();
}

#[tokio::test]
async fn a_failed_commit_is_returned_by_close() {
    let (fake, fs) = setup_rw(Duration::from_secs(60));
    let (_, fh) = fs
        .create(ROOT_INO, OsStr::new("f"), false, false, &Creator::DEFAULTS)
        .await
        .unwrap();
    fs.write(fh, 0, b"data").await.unwrap();
    fake.fail_next(Op::PutBlob, ErrorKind::Transient);
    assert_eq!(fs.flush(fh).await.unwrap_err().to_errno(), libc::EIO);
    assert!(
        fake.blob("f").is_none(),
        "the blob is the old version (none), never a mix"
    );
    fs.flush(fh).await.unwrap();
    assert_eq!(&fake.blob("f").unwrap().0[..], b"data");
    fs.release(fh).await;
}

#[tokio::test]
async fn rename_moves_files_and_replaces_targets() {
    let (fake, fs) = setup_rw(Duration::from_secs(60));
    fake.put_with_metadata("a.txt", "AAA", &[("mode", "0600")]);
    fake.put("b.txt", "BBB");
    let a = lookup(&fs, ROOT_INO, "a.txt").await.unwrap();
    assert_eq!(
        fs.rename(
            ROOT_INO,
            OsStr::new("a.txt"),
            ROOT_INO,
            OsStr::new("b.txt"),
            true
        )
        .await
        .map_err(Errno::from),
        Err(libc::EEXIST)
    );
    fs.rename(
        ROOT_INO,
        OsStr::new("a.txt"),
        ROOT_INO,
        OsStr::new("b.txt"),
        false,
    )
    .await
    .unwrap();
    assert_eq!(fake.names(), ["b.txt"]);
    let (data, meta, _) = fake.blob("b.txt").unwrap();
    assert_eq!(
        (&data[..], meta["mode"].as_str()),
        (&b"AAA"[..], "0600"),
        "content and metadata kept"
    );
    assert_eq!(
        lookup(&fs, ROOT_INO, "b.txt").await.unwrap().ino,
        a.ino,
        "the inode moved"
    );
    assert_eq!(lookup(&fs, ROOT_INO, "a.txt").await, Err(libc::ENOENT));
    assert_eq!(
        fs.rename(
            ROOT_INO,
            OsStr::new("nope"),
            ROOT_INO,
            OsStr::new("x"),
            false
        )
        .await
        .map_err(Errno::from),
        Err(libc::ENOENT)
    );
}

#[tokio::test]
async fn rename_moves_a_directory_tree() {
    let (fake, fs) = setup_rw(Duration::from_secs(60));
    fake.put_with_metadata("d", "", &[("hdi_isfolder", "true")]);
    for i in 0..30 {
        fake.put(&format!("d/f{i}"), format!("{i}"));
    }
    fake.put("d/sub/deep", "deep");
    let d = lookup(&fs, ROOT_INO, "d").await.unwrap();
    assert_eq!(
        fs.rename(ROOT_INO, OsStr::new("d"), d.ino, OsStr::new("in"), false)
            .await
            .map_err(Errno::from),
        Err(libc::EINVAL)
    );
    fs.rename(ROOT_INO, OsStr::new("d"), ROOT_INO, OsStr::new("e"), false)
        .await
        .unwrap();
    let names = fake.names();
    assert_eq!(names.len(), 32);
    assert!(
        names.iter().all(|n| n == "e" || n.starts_with("e/")),
        "{names:?}"
    );
    assert_eq!(&fake.blob("e/sub/deep").unwrap().0[..], b"deep");
    let e = lookup(&fs, ROOT_INO, "e").await.unwrap();
    assert_eq!(e.ino, d.ino);
    assert_eq!(lookup(&fs, e.ino, "f7").await.unwrap().size, 1);
}

#[tokio::test]
async fn a_failed_directory_rename_moves_everything_back() {
    let (fake, fs) = setup_rw(Duration::from_secs(60));
    for i in 0..20 {
        fake.put(&format!("src/f{i:02}"), format!("{i}"));
    }
    lookup(&fs, ROOT_INO, "src").await.unwrap();
    fake.fail_next(Op::CopyBlob, ErrorKind::Other);
    assert_eq!(
        fs.rename(
            ROOT_INO,
            OsStr::new("src"),
            ROOT_INO,
            OsStr::new("dst"),
            false
        )
        .await
        .map_err(Errno::from),
        Err(libc::EIO)
    );
    let names = fake.names();
    assert_eq!(names.len(), 20, "none lost, none doubled: {names:?}");
    assert!(
        names.iter().all(|n| n.starts_with("src/")),
        "all back in the source: {names:?}"
    );
    // The same rename again completes.
    fs.rename(
        ROOT_INO,
        OsStr::new("src"),
        ROOT_INO,
        OsStr::new("dst"),
        false,
    )
    .await
    .unwrap();
    assert!(fake.names().iter().all(|n| n.starts_with("dst/")));
}

#[tokio::test]
async fn chmod_and_utimes_live_in_metadata_and_symlinks_hold_their_target() {
    let (fake, fs) = setup_rw(Duration::from_secs(60));
    fake.put("f", "data");
    let f = lookup(&fs, ROOT_INO, "f").await.unwrap();
    let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
    let a = fs
        .set_attrs(f.ino, perm_mtime(Some(0o600), Some(t)))
        .await
        .unwrap();
    assert_eq!((a.mode, a.mtime, a.size), (Some(0o600), t, 4));
    let (data, meta, _) = fake.blob("f").unwrap();
    assert_eq!(&data[..], b"data", "content untouched");
    assert_eq!(meta["mode"], "0600");
    assert_eq!(meta["mtime"], "2001-09-09T01:46:40Z");
    // A fresh mount sees them in listings.
    let fs2 = Fs::new(fake.clone(), config(Duration::from_secs(60)));
    let listed = names(&fs2, ROOT_INO).await;
    assert!(listed.iter().any(|(n, _)| n == "f"));
    let f2 = lookup(&fs2, ROOT_INO, "f").await.unwrap();
    assert_eq!((f2.mode, f2.mtime), (Some(0o600), t));
    // On a file being written: applied at the commit; a later write sets the time to now.
    let (c, fh) = fs
        .create(ROOT_INO, OsStr::new("c"), false, false, &Creator::DEFAULTS)
        .await
        .unwrap();
    fs.write(fh, 0, b"x").await.unwrap();
    fs.set_attrs(c.ino, perm_mtime(None, Some(t)))
        .await
        .unwrap();
    fs.flush(fh).await.unwrap();
    fs.release(fh).await;
    assert_eq!(fake.blob("c").unwrap().1["mtime"], "2001-09-09T01:46:40Z");
    // Symlinks.
    let l = fs
        .symlink(
            ROOT_INO,
            OsStr::new("link"),
            std::path::Path::new("../some where/ü"),
            &Creator::DEFAULTS,
        )
        .await
        .unwrap();
    assert_eq!(l.kind, Kind::Symlink);
    assert_eq!(
        &fs.readlink(l.ino).await.unwrap()[..],
        "../some where/ü".as_bytes()
    );
    assert_eq!(fake.blob("link").unwrap().1["is_symlink"], "true");
    let fs3 = Fs::new(fake.clone(), config(Duration::from_secs(60)));
    assert_eq!(
        lookup(&fs3, ROOT_INO, "link").await.unwrap().kind,
        Kind::Symlink
    );
}

#[tokio::test]
async fn a_conflicting_commit_saves_a_sibling_and_fails_the_close() {
    let (fake, fs) = setup_rw(Duration::from_secs(60));
    fake.put("doc.txt", "base");
    let a = lookup(&fs, ROOT_INO, "doc.txt").await.unwrap();
    let (fh, _) = fs
        .open(
            a.ino,
            OpenMode {
                write: true,
                truncate: true,
            },
        )
        .await
        .unwrap();
    fs.write(fh, 0, b"mine").await.unwrap();
    fake.put("doc.txt", "theirs");
    assert_eq!(fs.flush(fh).await.map_err(Errno::from), Err(libc::EIO));
    assert_eq!(
        &fake.blob("doc.txt").unwrap().0[..],
        b"theirs",
        "their version is kept"
    );
    let names = fake.names();
    let sibling = names
        .iter()
        .find(|n| n.starts_with("doc.txt.conflict-"))
        .expect("a conflict copy");
    assert_eq!(&fake.blob(sibling).unwrap().0[..], b"mine", "nothing lost");
    fs.release(fh).await;
    assert_eq!(fake.names().len(), 2);
}

#[tokio::test]
async fn an_idle_file_does_not_hold_the_write_budget_from_others() {
    let (fake, fs) = setup_rw(Duration::from_secs(60));
    tokio::spawn(fs.clone().relieve_write_pressure());
    // File a: written backwards, so none of its blocks is behind the writer: all stay dirty
    // and take the whole budget (8 blocks).
    let (_, fa) = fs
        .create(ROOT_INO, OsStr::new("a"), false, false, &Creator::DEFAULTS)
        .await
        .unwrap();
    for i in (0..8u64).rev() {
        fs.write(fa, i * BS, &pattern(BS as usize)).await.unwrap();
    }
    // File b needs budget too: it gets it once a's dirty blocks are uploaded for it.
    let (_, fb) = fs
        .create(ROOT_INO, OsStr::new("b"), false, false, &Creator::DEFAULTS)
        .await
        .unwrap();
    tokio::time::timeout(
        Duration::from_secs(10),
        fs.write(fb, 0, &pattern(3 * BS as usize)),
    )
    .await
    .expect("b was not starved")
    .unwrap();
    fs.release(fb).await;
    fs.release(fa).await;
    assert_eq!(fake.blob("a").unwrap().0.len(), 8 * BS as usize);
    assert_eq!(
        &fake.blob("b").unwrap().0[..],
        &pattern(3 * BS as usize)[..]
    );
}

#[tokio::test]
async fn an_unlinked_file_stays_readable_until_its_last_close() {
    let (fake, fs) = setup_rw(Duration::from_secs(60));
    let data = pattern(5 * BS as usize);
    fake.put("f", data.clone());
    let a = lookup(&fs, ROOT_INO, "f").await.unwrap();
    let (fh, _) = fs.open(a.ino, OpenMode::default()).await.unwrap();
    fs.unlink(ROOT_INO, OsStr::new("f")).await.unwrap();
    assert_eq!(
        lookup(&fs, ROOT_INO, "f").await,
        Err(libc::ENOENT),
        "the name is gone"
    );
    assert_eq!(
        &fs.read(fh, 4 * BS, 100).await.unwrap()[..],
        &data[4 * BS as usize..4 * BS as usize + 100]
    );
    assert!(
        fake.blob("f").is_some(),
        "the blob waits for the last close"
    );
    fs.release(fh).await;
    assert!(fake.blob("f").is_none());
    // A file being written and unlinked is never committed.
    let (_, w) = fs
        .create(
            ROOT_INO,
            OsStr::new("tmp"),
            false,
            false,
            &Creator::DEFAULTS,
        )
        .await
        .unwrap();
    fs.write(w, 0, b"scratch").await.unwrap();
    fs.unlink(ROOT_INO, OsStr::new("tmp")).await.unwrap();
    fs.flush(w).await.unwrap();
    fs.release(w).await;
    assert!(fake.blob("tmp").is_none());
}

#[tokio::test]
async fn a_program_reading_a_directory_in_order_finds_the_next_files_fetched_ahead() {
    let fake = Arc::new(FakeClient::new());
    let metrics: &'static crate::metrics::Metrics =
        Box::leak(Box::new(crate::metrics::Metrics::new()));
    let fs = Fs::counting_into(fake.clone(), config(Duration::from_secs(60)), metrics);
    let mut total = 0;
    for i in 0..30 {
        fake.put(&format!("d/f{i:02}"), pattern(100 + i));
        total += 100 + i as u64;
    }
    // Larger than a block: read as it is opened, never fetched ahead.
    fake.put("d/big", pattern(3 * BS as usize));
    total += 3 * BS;
    fake.set_delay(Op::GetBlob, Duration::from_millis(5));
    let d = lookup(&fs, ROOT_INO, "d").await.unwrap();
    // As `cp -r` or `tar c`: list the directory, then read each file in listing order.
    for (name, kind) in names(&fs, d.ino).await {
        if kind != Kind::File {
            continue;
        }
        let a = lookup(&fs, d.ino, &name).await.unwrap();
        let (fh, _) = fs.open(a.ino, OpenMode::default()).await.unwrap();
        let got = read_all(&fs, fh, 4096).await;
        assert_eq!(got, fake.blob(&format!("d/{name}")).unwrap().0, "{name}");
        fs.release(fh).await;
    }
    let s = metrics.snapshot();
    assert!(
        s.files_fetched_ahead >= 28,
        "{} files fetched ahead",
        s.files_fetched_ahead
    );
    assert_eq!(fake.bytes_read(), total, "every byte fetched once");
    let peak = fake.peak_in_flight(Op::GetBlob);
    assert!(peak >= 4, "at most {peak} Get Blob in flight");
    assert_eq!(fake.count(Op::GetBlobProperties), 0);
}

#[tokio::test]
async fn names_of_a_directory_whose_listing_expired_are_revalidated_by_one_listing() {
    let ttl = Duration::from_millis(200);
    let (fake, fs) = setup(ttl);
    for i in 0..20 {
        fake.put(&format!("d/f{i:02}"), "x");
    }
    let d = lookup(&fs, ROOT_INO, "d").await.unwrap();
    assert_eq!(names(&fs, d.ino).await.len(), 20 + 2);
    tokio::time::sleep(ttl + Duration::from_millis(20)).await;
    // As `rm -r` or `tar c` after the TTL: every name looked up again.
    let before = fake.count(Op::ListBlobs);
    for i in 0..20 {
        let a = lookup(&fs, d.ino, &format!("f{i:02}")).await.unwrap();
        assert_eq!(a.kind, Kind::File);
    }
    assert_eq!(fake.count(Op::ListBlobs) - before, 1);
    assert_eq!(fake.count(Op::GetBlobProperties), 0);
}

#[tokio::test]
async fn a_large_directory_whose_names_are_all_looked_up_again_is_listed_again_whole() {
    let ttl = Duration::from_millis(300);
    let (fake, fs) = setup(ttl);
    let n = super::dircache::SMALL_DIR + 1;
    for i in 0..n {
        fake.put(&format!("big/f{i:05}"), "");
    }
    let big = lookup(&fs, ROOT_INO, "big").await.unwrap();
    let look_up_all_again = async |from: u32| {
        let before = fake.count(Op::ListBlobs);
        for i in from..from + 40 {
            let a = lookup(&fs, big.ino, &format!("f{i:05}")).await.unwrap();
            assert_eq!(a.kind, Kind::File);
        }
        fake.count(Op::ListBlobs) - before
    };
    assert_eq!(names(&fs, big.ino).await.len() as u32, n + 2);
    tokio::time::sleep(ttl + Duration::from_millis(20)).await;
    // As an `ls -l` that outlasted the TTL: the first name alone, then the whole directory
    // (known to be large from its listing), which answers the rest.
    assert_eq!(look_up_all_again(0).await, 2);
    // Long after (as `rm -r` of it later): names one by one, the RELIST_AFTERth lists the
    // whole directory.
    tokio::time::sleep(2 * ttl + Duration::from_millis(20)).await;
    let relist = super::dircache::RELIST_AFTER as u64;
    assert_eq!(look_up_all_again(40).await, relist);
}

#[tokio::test]
async fn a_directory_whose_own_listing_is_fresh_is_found_without_a_request() {
    let ttl = Duration::from_millis(300);
    let (fake, fs) = setup(ttl);
    fake.put("d/f", "x");
    let d = lookup(&fs, ROOT_INO, "d").await.unwrap();
    tokio::time::sleep(ttl / 2).await;
    names(&fs, d.ino).await;
    // Past the TTL of d's own lookup, within its listing's.
    tokio::time::sleep(ttl / 2 + Duration::from_millis(20)).await;
    let before = fake.count(Op::ListBlobs);
    assert_eq!(lookup(&fs, ROOT_INO, "d").await.unwrap().ino, d.ino);
    assert_eq!(fake.count(Op::ListBlobs), before);
}

/// chmods `ino` to `mode` (checking the mode it then shows) and counts the Get Blob
/// Properties and Set Blob Metadata requests it cost.
async fn chmod_requests(fake: &FakeClient, fs: &Fs, ino: u64, mode: u16) -> (u64, u64) {
    let count = || {
        (
            fake.count(Op::GetBlobProperties),
            fake.count(Op::SetBlobMetadata),
        )
    };
    let before = count();
    let a = fs
        .set_attrs(ino, perm_mtime(Some(mode), None))
        .await
        .unwrap();
    assert_eq!(a.mode, Some(mode));
    let after = count();
    (after.0 - before.0, after.1 - before.1)
}

#[tokio::test]
async fn a_directory_marker_s_attributes_cost_one_write_when_its_version_is_known() {
    let (fake, fs) = setup_rw(Duration::from_secs(60));
    fake.put_with_metadata("other", "", &[("hdi_isfolder", "true"), ("owner", "tool")]);
    let d = fs
        .mkdir(ROOT_INO, OsStr::new("d"), &Creator::DEFAULTS)
        .await
        .unwrap();
    let o = lookup(&fs, ROOT_INO, "other").await.unwrap();
    // Made here, or seen in a lookup: each change is one conditional write, and the next
    // one goes onto the version it wrote.
    for ino in [d.ino, o.ino, d.ino, o.ino] {
        assert_eq!(chmod_requests(&fake, &fs, ino, 0o700).await, (0, 1));
    }
    // Metadata other tools wrote is kept.
    assert_eq!(fake.blob("other").unwrap().1["owner"], "tool");
    // Another writer changed the marker: its version is stale, the write is refused (412),
    // read again and made onto theirs, keeping what they set.
    fake.put_with_metadata("other", "", &[("hdi_isfolder", "true"), ("owner", "them")]);
    assert_eq!(chmod_requests(&fake, &fs, o.ino, 0o750).await, (1, 2));
    assert_eq!(fake.blob("other").unwrap().1["owner"], "them");
    assert_eq!(fake.blob("other").unwrap().1["mode"], "0750");
    // The marker was removed meanwhile: the directory (a prefix now) gets a marker anew.
    fake.put("d/f", "x");
    fake.remove("d");
    let before = fake.count(Op::PutBlob);
    assert_eq!(chmod_requests(&fake, &fs, d.ino, 0o711).await, (1, 1));
    assert_eq!(fake.count(Op::PutBlob), before + 1);
    let marker = fake.blob("d").unwrap().1;
    assert_eq!(
        (marker["hdi_isfolder"].as_str(), marker["mode"].as_str()),
        ("true", "0711")
    );
}

#[tokio::test]
async fn chmod_of_a_file_whose_version_is_known_is_one_request_and_keeps_other_metadata() {
    let (fake, fs) = setup_rw(Duration::from_secs(60));
    fake.put_with_metadata("listed", "x", &[("owner", "tool")]);
    // A file this mount committed, and one it listed: their metadata is known.
    let (c, fh) = fs
        .create(
            ROOT_INO,
            OsStr::new("new"),
            false,
            false,
            &Creator::DEFAULTS,
        )
        .await
        .unwrap();
    fs.write(fh, 0, b"data").await.unwrap();
    fs.flush(fh).await.unwrap();
    fs.release(fh).await;
    names(&fs, ROOT_INO).await;
    let l = lookup(&fs, ROOT_INO, "listed").await.unwrap();
    for ino in [c.ino, l.ino, l.ino] {
        assert_eq!(
            chmod_requests(&fake, &fs, ino, 0o640).await,
            (0, 1),
            "chmod without reading the metadata first"
        );
    }
    assert_eq!(fake.blob("new").unwrap().1["mode"], "0640");
    let meta = fake.blob("listed").unwrap().1;
    assert_eq!(
        (meta["owner"].as_str(), meta["mode"].as_str()),
        ("tool", "0640")
    );
    // Changed elsewhere since: If-Match fails, the metadata is read again, nothing is lost.
    fake.put_with_metadata("listed", "yy", &[("owner", "other")]);
    let a = fs
        .set_attrs(l.ino, perm_mtime(Some(0o600), None))
        .await
        .unwrap();
    assert_eq!((a.mode, a.size), (Some(0o600), 2));
    let (data, meta, _) = fake.blob("listed").unwrap();
    assert_eq!(&data[..], b"yy");
    assert_eq!(
        (meta["owner"].as_str(), meta["mode"].as_str()),
        ("other", "0600")
    );
}

mod posix;
mod write_back;
mod xattr;
