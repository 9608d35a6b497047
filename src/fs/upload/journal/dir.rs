//! The journal on disk: one mount's directory ([`JournalDir`], locked while the mount lives)
//! and the entry of each file being written in it ([`Entry`]: its record, rewritten whole,
//! and its blocks sent, appended).

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use super::{
    boot_id, check_owner, is_private_dir, read_record, Durable, Record, SentBlock, SentLine,
};

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

/// How much of a record write reaches the disk before it returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flush {
    /// Left to the kernel (the record promises nothing that a power cut could break).
    Nothing,
    /// The new text, before it takes the record's name (it replaces a promised record).
    Text,
    /// The text, then the directory: the new record is on disk when this returns.
    Everything,
}

/// Set once the file system refuses `RENAME_EXCHANGE`: plain renames from then on.
static NO_EXCHANGE: AtomicBool = AtomicBool::new(false);

/// Puts the file written at `tmp` in place of `to`, atomically (a reader sees one or the
/// other, whole). Where the file system can, the two are exchanged (`renameat2`
/// `RENAME_EXCHANGE`): `tmp` then holds the old text, and is the scratch file of the next
/// write. A record rewritten several times per file (create, write, close, utimes) then
/// creates and frees no inode each time: on ext4 a stream of freed inodes slows every create
/// that follows (its allocator skips recently deleted inodes), measured here as a `tar x`
/// with `--write-back` taking 16 s instead of 9 in an aged journal directory.
fn replace(tmp: &Path, to: &Path) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    if !NO_EXCHANGE.load(Ordering::Relaxed) {
        let c = |p: &Path| std::ffi::CString::new(p.as_os_str().as_bytes());
        let (from_c, to_c) = (c(tmp)?, c(to)?);
        // SAFETY: two NUL-terminated paths that live across the call; no memory is shared.
        let rc = unsafe {
            libc::renameat2(
                libc::AT_FDCWD,
                from_c.as_ptr(),
                libc::AT_FDCWD,
                to_c.as_ptr(),
                libc::RENAME_EXCHANGE,
            )
        };
        if rc == 0 {
            return Ok(());
        }
        let error = std::io::Error::last_os_error();
        match error.raw_os_error() {
            // No record yet (its first write): a plain rename.
            Some(libc::ENOENT) => {}
            Some(libc::EINVAL) | Some(libc::ENOSYS) | Some(libc::EOPNOTSUPP) => {
                NO_EXCHANGE.store(true, Ordering::Relaxed);
            }
            _ => return Err(error),
        }
    }
    std::fs::rename(tmp, to)
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
                // The container's directory was just removed by a mount stopping: again.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && n < 100 => {
                    private_dir(container_dir)?;
                    n += 1;
                }
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
            .filter(|p| match is_private_dir(p) {
                Ok(()) => true,
                Err(why) => {
                    tracing::warn!("journal directory not used: {why}");
                    false
                }
            })
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
        let stem = self.path.join(format!("{:016x}", record.upload_id));
        let entry = Entry {
            json: stem.with_extension("json"),
            sent: stem.with_extension("sent"),
            data: self.data_path(record.upload_id),
            frozen: self.frozen.clone(),
            state: Mutex::new(EntryState {
                record,
                warned: false,
                removed: false,
                flushes: 0,
            }),
        };
        entry.write(&mut entry.lock(), Flush::Nothing)?;
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
                let opened = self.open_entry(&json);
                (json, opened)
            })
            .collect()
    }

    /// One record found on disk, with its local copy.
    fn open_entry(&self, json: &Path) -> Opened {
        let data = json.with_extension("data");
        let local = |e: std::io::Error| format!("its local copy {}: {e}", data.display());
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&data)
            .map_err(local)?;
        check_owner(&file.metadata().map_err(local)?, &data).map_err(local)?;
        let record = read_record(json)?;
        Ok((
            file,
            Entry {
                json: json.to_path_buf(),
                sent: json.with_extension("sent"),
                data,
                frozen: self.frozen.clone(),
                state: Mutex::new(EntryState {
                    record,
                    warned: false,
                    removed: false,
                    flushes: 0,
                }),
            },
        ))
    }

    /// Removes what a mount that died between two steps can leave without a record: a local
    /// copy made just before its first record, or what outlived its record's removal. Only in
    /// a directory adopted from a mount that is gone (a running one is between those steps).
    pub fn remove_strays(&self) {
        let Ok(dir) = std::fs::read_dir(&self.path) else {
            return;
        };
        for p in dir.filter_map(|e| e.ok()).map(|e| e.path()) {
            let stray = p.extension().is_some_and(|x| x == "data" || x == "sent")
                && !p.with_extension("json").exists();
            if stray {
                let _ = std::fs::remove_file(&p);
            }
        }
    }

    /// Removes the directory if nothing but its lock and leftovers of record writes is left
    /// in it (and the container's directory above it, if that is empty then); true if it
    /// went.
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
        if std::fs::remove_dir(&self.path).is_err() {
            return false;
        }
        // The container's directory too, if no other mount's is in it (it fails otherwise).
        if let Some(container) = self.path.parent() {
            let _ = std::fs::remove_dir(container);
        }
        true
    }
}

/// The journal of one file being written: its record, kept in memory and on disk.
pub struct Entry {
    json: PathBuf,
    /// `UPLOAD.sent`: the blocks sent, one line each.
    sent: PathBuf,
    data: PathBuf,
    /// Its directory's [`JournalDir::freeze`].
    frozen: Arc<AtomicBool>,
    state: Mutex<EntryState>,
}

struct EntryState {
    record: Record,
    /// A failed record write was reported already (said once per file).
    warned: bool,
    /// Removed: an upload finishing later must not bring the record back.
    removed: bool,
    /// Record writes flushed to disk so far (tests check when a flush is made).
    flushes: u64,
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

    /// How many record writes were flushed to disk with their directory (promises made).
    pub fn flushes(&self) -> u64 {
        self.lock().flushes
    }

    /// Where the record lives (for messages).
    pub fn path(&self) -> &Path {
        &self.json
    }

    /// Changes the record and writes it (not flushed to disk, except when it takes back a
    /// flushed "finished": see below). A failure is logged once: the journal is a safety net,
    /// and the file goes on being written without it.
    pub fn update(&self, change: impl FnOnce(&mut Record)) {
        let mut st = self.lock();
        if st.removed {
            return;
        }
        let was_promised = st.record.durable == Durable::Finished && st.record.synced;
        change(&mut st.record);
        // A record flushed as finished is trusted after a power cut. Before the content changes
        // (a reopen for writing), its "unfinished" must be on disk too: otherwise the disk
        // could hold the old finished record over content partly changed since.
        // Any other rewrite of such a record has its text flushed before it takes the record's
        // name (a power cut must find the promised record or its successor, never an empty
        // or torn file); the name itself may stay the old one, equally true.
        let flush = if !was_promised {
            Flush::Nothing
        } else if st.record.durable == Durable::Unfinished {
            Flush::Everything
        } else {
            Flush::Text
        };
        if flush == Flush::Everything {
            st.record.synced = true;
        }
        if let Err(e) = self.write(&mut st, flush) {
            // The record on disk is an older state (perhaps "finished" while the content now
            // changes): no record is better than a wrong one.
            let _ = std::fs::remove_file(&self.json);
            self.warn(&mut st, &e);
        }
    }

    /// Block `index` was sent as `id`.
    pub fn sent(&self, index: u64, id: &str, len: u64, md5: &crate::blob::Md5Digest) {
        use base64::Engine;
        let block = SentBlock {
            id: id.to_string(),
            len,
            md5: base64::engine::general_purpose::STANDARD.encode(md5),
        };
        let mut st = self.lock();
        if st.removed {
            return;
        }
        let line = SentLine { index, block };
        let appended = serde_json::to_string(&line)
            .map_err(std::io::Error::other)
            .and_then(|mut text| {
                text.push('\n');
                let mut f = std::fs::OpenOptions::new()
                    .append(true)
                    .create(true)
                    .mode(0o600)
                    .open(&self.sent)?;
                f.write_all(text.as_bytes())
            });
        if let Err(e) = appended {
            // Not recorded: a resume sends this block again.
            self.warn(&mut st, &e);
        }
        st.record.sent.insert(index, line.block);
    }

    /// Forgets the blocks sent that `keep` does not keep (all after a commit: committed blocks
    /// are not the uncommitted ones a resume looks for).
    pub fn forget_sent(&self, keep: impl Fn(u64) -> bool) {
        let mut st = self.lock();
        if st.removed {
            return;
        }
        let before = st.record.sent.len();
        st.record.sent.retain(|i, _| keep(*i));
        if st.record.sent.len() == before {
            // Nothing forgotten (a small file's commit sent none): the file stays as it is.
            return;
        }
        if st.record.sent.is_empty() {
            match std::fs::remove_file(&self.sent) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => self.warn(&mut st, &e),
                _ => {}
            }
            return;
        }
        let mut text = String::new();
        for (index, block) in &st.record.sent {
            let line = SentLine {
                index: *index,
                block: block.clone(),
            };
            if let Ok(l) = serde_json::to_string(&line) {
                text.push_str(&l);
                text.push('\n');
            }
        }
        let tmp = self.sent.with_extension("sent.tmp");
        let written = std::fs::write(&tmp, text).and_then(|()| std::fs::rename(&tmp, &self.sent));
        if let Err(e) = written {
            // Blocks listed that are gone or changed are only sent again (their MD5 is checked).
            self.warn(&mut st, &e);
        }
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
        let mut st = self.lock();
        if sync {
            // Not promised until both are flushed: a failure here leaves no stale "synced".
            st.record.synced = false;
            drop(st);
            data.sync_data()?;
            st = self.lock();
        }
        if st.removed {
            return Ok(());
        }
        change(&mut st.record);
        st.record.durable = Durable::Finished;
        st.record.synced = sync;
        let flush = match sync {
            true => Flush::Everything,
            false => Flush::Nothing,
        };
        match self.write(&mut st, flush) {
            Ok(()) => Ok(()),
            Err(e) if sync => Err(e),
            Err(e) => {
                let _ = std::fs::remove_file(&self.json);
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
        let mut st = self.lock();
        st.removed = true;
        let _ = std::fs::remove_file(&self.json);
        let _ = std::fs::remove_file(self.json.with_extension("json.tmp"));
        let _ = std::fs::remove_file(&self.sent);
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
    /// or the new one. Flushed to disk as `flush` says.
    fn write(&self, st: &mut EntryState, flush: Flush) -> std::io::Result<()> {
        let text = serde_json::to_vec_pretty(&st.record).map_err(std::io::Error::other)?;
        let tmp = self.json.with_extension("json.tmp");
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(&text)?;
        if flush != Flush::Nothing {
            f.sync_all()?;
        }
        replace(&tmp, &self.json)?;
        if flush == Flush::Everything {
            if let Some(dir) = self.json.parent() {
                File::open(dir)?.sync_all()?;
            }
            st.flushes += 1;
        }
        Ok(())
    }
}
