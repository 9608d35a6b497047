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
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use super::grid::{Grid, MAX_BLOCK_SIZE};

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
    /// Blocks whose bytes are all in the local copy.
    pub local: Vec<u64>,
    /// Blocks sent (Put Block) and not committed since, by index.
    pub sent: BTreeMap<u64, SentBlock>,
    pub durable: Durable,
    /// Whether the local copy and this record were flushed to disk when `durable` was set.
    pub synced: bool,
    /// The boot (`/proc/sys/kernel/random/boot_id`) that wrote the record.
    pub boot_id: String,
    /// Commits sent whose answer never came: one of them may have landed.
    pub attempts: Vec<Attempt>,
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
        }
    }

    /// Checks what a record must hold before anything is done with it; the message says what
    /// is wrong. `data_len` is the length of its local copy.
    pub fn check(&self, data_len: u64) -> Result<(), String> {
        if self.block_size == 0 || self.block_size > MAX_BLOCK_SIZE {
            return Err(format!("block size {} is not valid", self.block_size));
        }
        if self.blob.is_empty() {
            return Err("it names no blob".into());
        }
        if data_len != self.size && self.durable != Durable::Unfinished {
            return Err(format!(
                "its local copy has {data_len} bytes, not the {} recorded",
                self.size
            ));
        }
        let count = Grid::new(self.block_size).count(self.size.max(data_len));
        if let Some(i) = self
            .local
            .iter()
            .chain(self.sent.keys())
            .find(|i| **i >= count)
        {
            return Err(format!("block {i} lies past the end of the file"));
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
        self.durable == Durable::Finished && (self.synced || self.boot_id == boot_id)
    }
}

/// Reads and checks a record file: refused (with the reason) when it is not a journal record,
/// comes from another format version, or does not hold together.
pub fn read_record(path: &Path, data_len: u64) -> Result<Record, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read it: {e}"))?;
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
    let record: Record =
        serde_json::from_value(value).map_err(|e| format!("it is damaged: {e}"))?;
    record.check(data_len)?;
    Ok(record)
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

/// Creates `dir` and its missing parents, private (0700).
fn private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// Takes the exclusive lock of a journal directory without waiting: `Ok(None)` when another
/// process holds it (a mount running, or another recovery).
fn try_lock(dir: &Path) -> std::io::Result<Option<File>> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(dir.join("lock"))?;
    // SAFETY: flock on a descriptor this function owns; no memory is involved.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc == 0 {
        return Ok(Some(file));
    }
    let e = std::io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
        Ok(None)
    } else {
        Err(e)
    }
}

/// A journal entry found on disk: its local copy and entry, or why it is refused.
pub type Opened = Result<(File, Entry), String>;

/// One mount's journal directory, locked while it lives.
pub struct JournalDir {
    path: PathBuf,
    boot_id: String,
    /// Set at the end of a shutdown: from then on nothing is removed (what is left is for the
    /// next start, whatever this process drops on its way out).
    frozen: Arc<AtomicBool>,
    /// Held for the flock: a directory whose lock is free was left by a mount that is gone.
    _lock: File,
}

impl std::fmt::Debug for JournalDir {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JournalDir")
            .field("path", &self.path)
            .finish()
    }
}

impl JournalDir {
    /// A new directory for this mount under `container_dir`, created private and locked.
    pub fn create(container_dir: &Path) -> std::io::Result<JournalDir> {
        private_dir(container_dir)?;
        let fmt = time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");
        let stamp = time::OffsetDateTime::now_utc()
            .format(&fmt)
            .unwrap_or_default();
        let mut n = 0u32;
        loop {
            let name = match n {
                0 => format!("{stamp}-{}", std::process::id()),
                n => format!("{stamp}-{}-{n}", std::process::id()),
            };
            let path = container_dir.join(&name);
            if path.exists() {
                n += 1;
                continue;
            }
            // Made and locked under a hidden name, then renamed: whoever looks for journals
            // to adopt never sees it unlocked.
            let hidden = container_dir.join(format!(".{name}"));
            match std::fs::DirBuilder::new().mode(0o700).create(&hidden) {
                Ok(()) => {
                    let lock = try_lock(&hidden)?.ok_or_else(|| {
                        std::io::Error::other("a new journal directory is locked by someone else")
                    })?;
                    std::fs::rename(&hidden, &path)?;
                    return Ok(JournalDir {
                        path,
                        boot_id: boot_id(),
                        frozen: Default::default(),
                        _lock: lock,
                    });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && n < 100 => n += 1,
                Err(e) => return Err(e),
            }
        }
    }

    /// Adopts a directory left by a mount that is gone, if nobody holds it (`Ok(None)`
    /// otherwise).
    pub fn adopt(path: &Path) -> std::io::Result<Option<JournalDir>> {
        let lock = match try_lock(path) {
            // Finished and removed by another process meanwhile.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            other => other?,
        };
        Ok(lock.map(|lock| JournalDir {
            path: path.to_path_buf(),
            boot_id: boot_id(),
            frozen: Default::default(),
            _lock: lock,
        }))
    }

    /// The directories under `container_dir` other than `except`, oldest first.
    pub fn others(container_dir: &Path, except: Option<&Path>) -> Vec<PathBuf> {
        let Ok(entries) = std::fs::read_dir(container_dir) else {
            return Vec::new();
        };
        let mut out: Vec<PathBuf> = entries
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
            .map(|e| e.path())
            .filter(|p| Some(p.as_path()) != except)
            .collect();
        out.sort();
        out
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn boot_id(&self) -> &str {
        &self.boot_id
    }

    /// From now on this process removes nothing from this directory: what is left in it is
    /// for the next start.
    pub fn freeze(&self) {
        self.frozen.store(true, Ordering::SeqCst);
    }

    /// A new local copy for upload `upload_id`: created empty and private.
    pub fn new_data_file(&self, upload_id: u64) -> std::io::Result<File> {
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(self.data_path(upload_id))
    }

    /// Removes the local copy of an upload that got no record.
    pub fn remove_data_file(&self, upload_id: u64) {
        let _ = std::fs::remove_file(self.data_path(upload_id));
    }

    fn data_path(&self, upload_id: u64) -> PathBuf {
        self.path.join(format!("{upload_id:016x}.data"))
    }

    /// The entry of the local copy made by [`JournalDir::new_data_file`] for
    /// `record.upload_id`, its record written.
    pub fn entry(&self, record: Record) -> std::io::Result<Entry> {
        let entry = Entry {
            json: self.path.join(format!("{:016x}.json", record.upload_id)),
            data: self.data_path(record.upload_id),
            frozen: self.frozen.clone(),
            state: Mutex::new(EntryState {
                record,
                warned: false,
            }),
        };
        entry.write(&mut entry.lock(), false)?;
        Ok(entry)
    }

    /// The records left in this directory: each record file with its local copy (opened for
    /// reading and writing) and record, or why it is refused.
    pub fn entries(&self) -> Vec<(PathBuf, Opened)> {
        let Ok(dir) = std::fs::read_dir(&self.path) else {
            return Vec::new();
        };
        let mut jsons: Vec<PathBuf> = dir
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        jsons.sort();
        jsons
            .into_iter()
            .map(|json| {
                let data = json.with_extension("data");
                let opened = std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(&data)
                    .map_err(|e| format!("its local copy {}: {e}", data.display()))
                    .and_then(|file| {
                        let len = file
                            .metadata()
                            .map_err(|e| format!("its local copy {}: {e}", data.display()))?
                            .len();
                        let record = read_record(&json, len)?;
                        Ok((
                            file,
                            Entry {
                                json: json.clone(),
                                data,
                                frozen: self.frozen.clone(),
                                state: Mutex::new(EntryState {
                                    record,
                                    warned: false,
                                }),
                            },
                        ))
                    });
                (json, opened)
            })
            .collect()
    }

    /// Removes the directory if nothing but its lock and leftovers of record writes is left
    /// in it; true if it went.
    pub fn remove_if_empty(&self) -> bool {
        let Ok(dir) = std::fs::read_dir(&self.path) else {
            return false;
        };
        let names: Vec<PathBuf> = dir.filter_map(|e| e.ok()).map(|e| e.path()).collect();
        let leftover = |p: &PathBuf| {
            p.file_name().is_some_and(|n| n == "lock") || p.extension().is_some_and(|x| x == "tmp")
        };
        if !names.iter().all(leftover) {
            return false;
        }
        for p in &names {
            let _ = std::fs::remove_file(p);
        }
        std::fs::remove_dir(&self.path).is_ok()
    }
}

/// The journal of one file being written: its record, kept in memory and on disk.
pub struct Entry {
    json: PathBuf,
    data: PathBuf,
    /// Its directory's [`JournalDir::freeze`].
    frozen: Arc<AtomicBool>,
    state: Mutex<EntryState>,
}

struct EntryState {
    record: Record,
    /// A failed record write was reported already (said once per file).
    warned: bool,
}

impl std::fmt::Debug for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Entry").field("json", &self.json).finish()
    }
}

impl Entry {
    fn lock(&self) -> std::sync::MutexGuard<'_, EntryState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The record as it stands.
    pub fn record(&self) -> Record {
        self.lock().record.clone()
    }

    /// Where the record lives (for messages).
    pub fn path(&self) -> &Path {
        &self.json
    }

    /// Changes the record and writes it (not flushed to disk). A failure is logged once: the
    /// journal is a safety net, and the file goes on being written without it.
    pub fn update(&self, change: impl FnOnce(&mut Record)) {
        let mut st = self.lock();
        change(&mut st.record);
        if let Err(e) = self.write(&mut st, false) {
            self.warn(&mut st, &e);
        }
    }

    /// Block `index` was sent as `id`.
    pub fn sent(&self, index: u64, id: &str, len: u64, md5: &crate::blob::Md5Digest) {
        use base64::Engine;
        let md5 = base64::engine::general_purpose::STANDARD.encode(md5);
        self.update(|r| {
            r.sent.insert(
                index,
                SentBlock {
                    id: id.to_string(),
                    len,
                    md5,
                },
            );
        });
    }

    /// The program closed or fsynced the file: the record says so, written with `change`. With
    /// `sync`, the local copy and the record are flushed to disk first (a promise made to the
    /// program rests on them); an error then is returned.
    pub fn finished(
        &self,
        data: &File,
        sync: bool,
        change: impl FnOnce(&mut Record),
    ) -> std::io::Result<()> {
        if sync {
            data.sync_data()?;
        }
        let mut st = self.lock();
        change(&mut st.record);
        st.record.durable = Durable::Finished;
        st.record.synced = sync;
        match self.write(&mut st, sync) {
            Ok(()) => Ok(()),
            Err(e) if sync => Err(e),
            Err(e) => {
                self.warn(&mut st, &e);
                Ok(())
            }
        }
    }

    /// Removes the record, then the local copy: nothing is left to finish (unless the
    /// directory is frozen).
    pub fn remove(&self) {
        if self.frozen.load(Ordering::SeqCst) {
            return;
        }
        let _ = std::fs::remove_file(&self.json);
        let _ = std::fs::remove_file(&self.data);
    }

    fn warn(&self, st: &mut EntryState, e: &std::io::Error) {
        if !st.warned {
            st.warned = true;
            tracing::warn!(
                blob = st.record.blob,
                "cannot write the journal record {}: {e} (a restart could not resume this file)",
                self.json.display()
            );
        }
    }

    /// Writes the record beside its file, then renames it over: a reader sees the old record
    /// or the new one. With `sync`, flushed to disk (the file, then the directory).
    fn write(&self, st: &mut EntryState, sync: bool) -> std::io::Result<()> {
        let text = serde_json::to_vec_pretty(&st.record).map_err(std::io::Error::other)?;
        let tmp = self.json.with_extension("json.tmp");
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(&text)?;
        if sync {
            f.sync_all()?;
        }
        std::fs::rename(&tmp, &self.json)?;
        if sync {
            if let Some(dir) = self.json.parent() {
                File::open(dir)?.sync_all()?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> Record {
        Record {
            format: FORMAT.into(),
            version: VERSION,
            blob: "dir/a b.bin".into(),
            expect: Some("\"0x8D1\"".into()),
            base: Some(BaseRecord {
                etag: "\"0x8D1\"".into(),
                len: 10,
            }),
            size: 300,
            block_size: 100,
            metadata: BTreeMap::from([("mode".into(), "644".into())]),
            upload_id: 0xfeed,
            next_seq: 2,
            committed_ids: vec![],
            local: vec![0, 2],
            sent: BTreeMap::from([(
                0,
                SentBlock {
                    id: "aWQx".into(),
                    len: 100,
                    md5: "AAAA".into(),
                },
            )]),
            durable: Durable::Unfinished,
            synced: false,
            boot_id: "b".into(),
            attempts: vec![Attempt::Blocks(vec!["aWQx".into()])],
        }
    }

    #[test]
    fn a_record_reads_back_as_written_and_keeps_no_more_than_it_says() {
        let dir = tempfile::tempdir().unwrap();
        let j = JournalDir::create(dir.path()).unwrap();
        let mut data = j.new_data_file(record().upload_id).unwrap();
        let entry = j.entry(record()).unwrap();
        data.write_all(&[7u8; 300]).unwrap();
        entry.sent(2, "aWQy", 100, &[1; 16]);
        entry.finished(&data, true, |r| r.size = 300).unwrap();
        let found = j.entries();
        assert_eq!(found.len(), 1);
        let (_, got) = &found[0];
        let (_, e) = got.as_ref().unwrap();
        let r = e.record();
        assert_eq!(r.durable, Durable::Finished);
        assert!(r.synced && r.is_finished("other boot"));
        assert_eq!(r.sent.len(), 2);
        assert_eq!(r.attempts.len(), 1);
        // Private: the directory and both files.
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(j.path()), 0o700);
        assert_eq!(mode(e.path()), 0o600);
        e.remove();
        assert!(j.entries().is_empty());
        assert!(j.remove_if_empty());
    }

    #[test]
    fn an_unsynced_record_is_finished_only_in_the_boot_that_wrote_it() {
        let mut r = record();
        r.durable = Durable::Finished;
        assert!(r.is_finished("b"));
        assert!(!r.is_finished("after a reboot"));
        r.durable = Durable::Unfinished;
        r.synced = true;
        assert!(!r.is_finished("b"));
    }

    #[test]
    fn other_versions_and_damaged_records_are_refused_with_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.json");
        let write = |v: &serde_json::Value| std::fs::write(&p, v.to_string()).unwrap();
        let good = serde_json::to_value(record()).unwrap();
        write(&good);
        assert!(read_record(&p, 300).is_ok());

        let mut old = good.clone();
        old["version"] = 0.into();
        write(&old);
        let e = read_record(&p, 300).unwrap_err();
        assert!(e.contains("format 0") && e.contains("format 1"), "{e}");

        let mut other = good.clone();
        other["format"] = "something else".into();
        write(&other);
        assert!(read_record(&p, 300)
            .unwrap_err()
            .contains("not a blobmount"));

        let mut damaged = good.clone();
        damaged["sent"] = "nonsense".into();
        write(&damaged);
        assert!(read_record(&p, 300).unwrap_err().contains("damaged"));

        let mut past = good.clone();
        past["local"] = serde_json::json!([0, 9]);
        write(&past);
        assert!(read_record(&p, 300).unwrap_err().contains("past the end"));

        std::fs::write(&p, b"{\"format\": \"blobmount-staging-jour").unwrap();
        assert!(read_record(&p, 300)
            .unwrap_err()
            .contains("not a journal record"));
    }

    #[test]
    fn a_directory_held_by_a_mount_is_not_adopted() {
        let dir = tempfile::tempdir().unwrap();
        let held = JournalDir::create(dir.path()).unwrap();
        assert!(JournalDir::adopt(held.path()).unwrap().is_none());
        let path = held.path().to_path_buf();
        drop(held);
        let adopted = JournalDir::adopt(&path)
            .unwrap()
            .expect("free once its mount is gone");
        assert_eq!(JournalDir::others(dir.path(), None), vec![path.clone()]);
        assert!(JournalDir::others(dir.path(), Some(&path)).is_empty());
        assert!(adopted.remove_if_empty());
    }

    #[test]
    fn container_directories_have_safe_names_and_no_token() {
        let (c, token) = crate::blob::ContainerUrl::parse(
            "http://127.0.0.1:10000/devstoreaccount1/my-box?sv=1&sig=SECRET",
        )
        .unwrap();
        assert!(token.is_some());
        let d = container_dir(Path::new("/s"), &c);
        assert_eq!(
            d,
            Path::new("/s/journal/127.0.0.1_10000_devstoreaccount1_my-box")
        );
    }
}
