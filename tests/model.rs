//! The reference-model test (tests/common/model.rs): thousands of random steps against the
//! filesystem core in process (the in-memory fake service, with and without random faults
//! that exhaust the retries), and hundreds through a real mount of Azurite (with and without
//! random faults at the proxy, which the client's retries must absorb: every step then does
//! exactly what the model says). Seeds are printed on failure; `MODEL_SEED=N` replays one.

mod common;

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::os::unix::fs::FileExt;
use std::os::unix::io::IntoRawFd;
use std::sync::Arc;
use std::time::Duration;

use blobmount::blob::fake::{FakeClient, RandomFaults};
use blobmount::fs::posix::Creator;
use blobmount::fs::{Fs, FsConfig, Kind, OpenMode, ROOT_INO};
use common::model::{self, Driver, Errno, Run, Seen};
use common::*;

/// Seeds to run: `MODEL_SEED` if set, else `n` seeds from `base`.
fn seeds(base: u64, n: u64) -> Vec<u64> {
    if std::env::var_os("MODEL_TRACE").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter("blobmount=debug")
            .with_writer(std::io::stderr)
            .try_init();
    }
    match std::env::var("MODEL_SEED") {
        Ok(s) => vec![s.parse().expect("MODEL_SEED is a number")],
        Err(_) => (base..base + n).collect(),
    }
}

// --- The core in process ------------------------------------------------------------------

struct CoreDriver {
    rt: tokio::runtime::Runtime,
    fake: Arc<FakeClient>,
    cfg: FsConfig,
    fs: Arc<Fs>,
    faults: Option<RandomFaults>,
    _staging: tempfile::TempDir,
}

/// An open file of the core: its handle and inode.
struct CoreHandle {
    fh: u64,
    ino: u64,
}

impl CoreDriver {
    fn new(ttl: Duration, faults: Option<RandomFaults>) -> CoreDriver {
        let staging = tempfile::tempdir().unwrap();
        let cfg = FsConfig {
            uid: 0,
            gid: 0,
            file_mode: 0o644,
            dir_mode: 0o755,
            metadata_ttl: ttl,
            block_size: 1024,
            cache_size: 64 * 1024,
            read_only: false,
            prefetch_files: blobmount::fs::PREFETCH_FILES,
            write_buffer: 16 * 1024,
            staging_dir: staging.path().to_path_buf(),
            journal: None,
            keep_owners: true,
            credential: None,
            write_back: None,
        };
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let fake = Arc::new(FakeClient::new());
        let fs = {
            let _guard = rt.enter();
            Fs::new(fake.clone(), cfg.clone())
        };
        fake.set_random_faults(faults);
        CoreDriver {
            rt,
            fake,
            cfg,
            fs,
            faults,
            _staging: staging,
        }
    }

    /// The inode of `path`'s parent and its last name.
    fn parent(&self, path: &str) -> Result<(u64, String), Errno> {
        let (dir, name) = path.rsplit_once('/').unwrap_or(("", path));
        let mut ino = ROOT_INO;
        for part in dir.split('/').filter(|p| !p.is_empty()) {
            ino = self.rt.block_on(self.fs.lookup(ino, OsStr::new(part)))?.ino;
        }
        Ok((ino, name.to_string()))
    }

    fn ino(&self, path: &str) -> Result<u64, Errno> {
        let (parent, name) = self.parent(path)?;
        Ok(self
            .rt
            .block_on(self.fs.lookup(parent, OsStr::new(&name)))?
            .ino)
    }

    /// Reads, observes and checks without faults: they are about the steps.
    fn quiet<T>(&mut self, f: impl FnOnce(&mut Self) -> T) -> T {
        self.fake.set_random_faults(None);
        let out = f(self);
        // A new seed each time keeps the sequence of faults varied and reproducible.
        self.faults = self.faults.map(|mut r| {
            r.seed = r.seed.wrapping_mul(6364136223846793005).wrapping_add(1);
            r
        });
        self.fake.set_random_faults(self.faults);
        out
    }

    fn walk(&self, ino: u64, path: &str, out: &mut BTreeMap<String, Seen>) {
        let fh = self.rt.block_on(self.fs.opendir(ino)).unwrap();
        let mut entries = Vec::new();
        self.fs
            .readdir(fh, 0, true, |child, _, name, attr| {
                if name != "." && name != ".." {
                    entries.push((child, name.to_string(), attr.kind, attr.size));
                }
                false
            })
            .unwrap();
        self.fs.releasedir(fh);
        for (child, name, kind, size) in entries {
            let p = if path.is_empty() {
                name
            } else {
                format!("{path}/{name}")
            };
            match kind {
                Kind::Dir => {
                    out.insert(p.clone(), Seen::Dir);
                    self.walk(child, &p, out);
                }
                _ => {
                    out.insert(p, self.read_all(child, size));
                }
            }
        }
    }
}

impl CoreDriver {
    fn read_all(&self, ino: u64, size: u64) -> Seen {
        let fh = match self.rt.block_on(self.fs.open(ino, OpenMode::default())) {
            Ok((fh, _)) => fh,
            Err(e) => return Seen::Unreadable("open", e.into()),
        };
        let mut data = Vec::new();
        let seen = loop {
            match self
                .rt
                .block_on(self.fs.read(fh, data.len() as u64, 64 * 1024))
            {
                Ok(b) if b.is_empty() => break Seen::File(std::mem::take(&mut data)),
                Ok(b) => data.extend_from_slice(&b),
                Err(e) => break Seen::Unreadable("read", e.into()),
            }
        };
        self.rt.block_on(self.fs.release(fh));
        match seen {
            Seen::File(d) if d.len() as u64 != size => Seen::Unreadable("size differs", 0),
            other => other,
        }
    }
}

impl Driver for CoreDriver {
    type Handle = CoreHandle;

    fn create(&mut self, path: &str) -> Result<CoreHandle, Errno> {
        let (parent, name) = self.parent(path)?;
        let (attr, fh) = self.rt.block_on(self.fs.create(
            parent,
            OsStr::new(&name),
            false,
            true,
            &Creator::DEFAULTS,
        ))?;
        Ok(CoreHandle { fh, ino: attr.ino })
    }

    fn open(&mut self, path: &str, truncate: bool) -> Result<CoreHandle, Errno> {
        let ino = self.ino(path)?;
        let mode = OpenMode {
            write: true,
            truncate,
        };
        let (fh, _) = self.rt.block_on(self.fs.open(ino, mode))?;
        Ok(CoreHandle { fh, ino })
    }

    fn write(&mut self, h: &CoreHandle, offset: u64, data: &[u8]) -> Result<(), Errno> {
        self.rt
            .block_on(self.fs.write(h.fh, offset, data))
            .map(|_| ())
            .map_err(Errno::from)
    }

    fn ftruncate(&mut self, h: &CoreHandle, size: u64) -> Result<(), Errno> {
        self.rt
            .block_on(self.fs.set_size(h.ino, size))
            .map(|_| ())
            .map_err(Errno::from)
    }

    fn truncate(&mut self, path: &str, size: u64) -> Result<(), Errno> {
        let ino = self.ino(path)?;
        self.rt
            .block_on(self.fs.set_size(ino, size))
            .map(|_| ())
            .map_err(Errno::from)
    }

    fn fsync(&mut self, h: &CoreHandle) -> Result<(), Errno> {
        self.rt.block_on(self.fs.fsync(h.fh)).map_err(Errno::from)
    }

    fn close(&mut self, h: CoreHandle) -> Result<(), Errno> {
        let r = self.rt.block_on(self.fs.flush(h.fh)).map_err(Errno::from);
        self.rt.block_on(self.fs.release(h.fh));
        r
    }

    fn rename(&mut self, from: &str, to: &str) -> Result<(), Errno> {
        let (p1, n1) = self.parent(from)?;
        let (p2, n2) = self.parent(to)?;
        self.rt
            .block_on(
                self.fs
                    .rename(p1, OsStr::new(&n1), p2, OsStr::new(&n2), false),
            )
            .map_err(Errno::from)
    }

    fn unlink(&mut self, path: &str) -> Result<(), Errno> {
        let (parent, name) = self.parent(path)?;
        self.rt
            .block_on(self.fs.unlink(parent, OsStr::new(&name)))
            .map_err(Errno::from)
    }

    fn mkdir(&mut self, path: &str) -> Result<(), Errno> {
        let (parent, name) = self.parent(path)?;
        self.rt
            .block_on(self.fs.mkdir(parent, OsStr::new(&name), &Creator::DEFAULTS))
            .map(|_| ())
            .map_err(Errno::from)
    }

    fn rmdir(&mut self, path: &str) -> Result<(), Errno> {
        let (parent, name) = self.parent(path)?;
        self.rt
            .block_on(self.fs.rmdir(parent, OsStr::new(&name)))
            .map_err(Errno::from)
    }

    fn remount(&mut self) {
        let _guard = self.rt.enter();
        self.fs = Fs::new(self.fake.clone(), self.cfg.clone());
    }

    fn observe(&mut self) -> BTreeMap<String, Seen> {
        self.quiet(|d| {
            let mut out = BTreeMap::new();
            d.walk(ROOT_INO, "", &mut out);
            out
        })
    }

    fn service_markers(&mut self) -> std::collections::BTreeSet<String> {
        self.fake
            .names()
            .into_iter()
            .filter(|n| {
                self.fake.blob(n).is_some_and(|(_, meta, _)| {
                    meta.get("hdi_isfolder").is_some_and(|v| v == "true")
                })
            })
            .collect()
    }

    fn service_files(&mut self) -> BTreeMap<String, Vec<u8>> {
        self.fake
            .names()
            .into_iter()
            .filter_map(|n| {
                let (data, meta, _) = self.fake.blob(&n)?;
                let marker = meta.get("hdi_isfolder").is_some_and(|v| v == "true");
                (!marker).then(|| (n, data.to_vec()))
            })
            .collect()
    }
}

#[test]
fn the_core_follows_the_model_for_thousands_of_steps() {
    let mut steps = 0;
    for seed in seeds(1, 12) {
        // Long-lived caches: what this mount shows must follow its own changes.
        let mut d = CoreDriver::new(Duration::from_secs(60), None);
        let run = Run {
            seed,
            steps: 400,
            max_write: 2600,
            faults_allowed: false,
        };
        steps += model::run(&mut d, &run).1;
    }
    eprintln!("{steps} steps without faults");
}

#[test]
fn the_core_under_faults_is_always_as_before_or_after_each_step() {
    let (mut steps, mut failed) = (0, 0);
    for seed in seeds(100, 12) {
        let faults = RandomFaults { seed, rate: 0.03 };
        // Without caches: a failed directory rename can leave a directory that exists only
        // as a prefix, which vanishes with its last file only once cached listings expire.
        let mut d = CoreDriver::new(Duration::ZERO, Some(faults));
        let run = Run {
            seed,
            steps: 400,
            max_write: 2600,
            faults_allowed: true,
        };
        let (f, n) = model::run(&mut d, &run);
        failed += f;
        steps += n;
    }
    eprintln!("{steps} steps with faults, {failed} of them failed");
    assert!(failed > 0, "no step failed: the faults did not bite");
}

// --- A real mount -------------------------------------------------------------------------

struct MountDriver<'a> {
    fx: &'a Fixture,
    mount: Option<Mount>,
    args: Vec<&'static str>,
}

impl MountDriver<'_> {
    fn root(&self) -> std::path::PathBuf {
        self.mount.as_ref().unwrap().path().to_path_buf()
    }

    fn path(&self, p: &str) -> std::path::PathBuf {
        self.root().join(p)
    }

    fn walk(&self, dir: &std::path::Path, rel: &str, out: &mut BTreeMap<String, Seen>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("read_dir {}: {e}", dir.display()))
            .map(|e| e.unwrap())
            .collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let name = e.file_name().to_string_lossy().into_owned();
            let p = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            if e.file_type().unwrap().is_dir() {
                out.insert(p.clone(), Seen::Dir);
                self.walk(&e.path(), &p, out);
            } else {
                let seen = match std::fs::read(e.path()) {
                    Ok(data) => Seen::File(data),
                    Err(err) => Seen::Unreadable("read", errno(err)),
                };
                out.insert(p, seen);
            }
        }
    }
}

fn errno(e: std::io::Error) -> Errno {
    e.raw_os_error().unwrap_or(libc::EIO)
}

impl Driver for MountDriver<'_> {
    type Handle = std::fs::File;

    fn create(&mut self, path: &str) -> Result<std::fs::File, Errno> {
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(self.path(path))
            .map_err(errno)
    }

    fn open(&mut self, path: &str, truncate: bool) -> Result<std::fs::File, Errno> {
        std::fs::OpenOptions::new()
            .write(true)
            .truncate(truncate)
            .open(self.path(path))
            .map_err(errno)
    }

    fn write(&mut self, h: &std::fs::File, offset: u64, data: &[u8]) -> Result<(), Errno> {
        h.write_all_at(data, offset).map_err(errno)
    }

    fn ftruncate(&mut self, h: &std::fs::File, size: u64) -> Result<(), Errno> {
        h.set_len(size).map_err(errno)
    }

    fn truncate(&mut self, path: &str, size: u64) -> Result<(), Errno> {
        let c = std::ffi::CString::new(self.path(path).to_string_lossy().as_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        match unsafe { libc::truncate(c.as_ptr(), size as libc::off_t) } {
            0 => Ok(()),
            _ => Err(errno(std::io::Error::last_os_error())),
        }
    }

    fn fsync(&mut self, h: &std::fs::File) -> Result<(), Errno> {
        h.sync_all().map_err(errno)
    }

    fn close(&mut self, h: std::fs::File) -> Result<(), Errno> {
        let fd = h.into_raw_fd();
        // SAFETY: we own the descriptor; close's result is the commit's.
        match unsafe { libc::close(fd) } {
            0 => Ok(()),
            _ => Err(errno(std::io::Error::last_os_error())),
        }
    }

    fn rename(&mut self, from: &str, to: &str) -> Result<(), Errno> {
        std::fs::rename(self.path(from), self.path(to)).map_err(errno)
    }

    fn unlink(&mut self, path: &str) -> Result<(), Errno> {
        std::fs::remove_file(self.path(path)).map_err(errno)
    }

    fn mkdir(&mut self, path: &str) -> Result<(), Errno> {
        std::fs::create_dir(self.path(path)).map_err(errno)
    }

    fn rmdir(&mut self, path: &str) -> Result<(), Errno> {
        std::fs::remove_dir(self.path(path)).map_err(errno)
    }

    fn remount(&mut self) {
        let status = self.mount.take().unwrap().unmount();
        assert!(status.success(), "the mount exited with {status}");
        self.mount = Some(self.fx.mount(&self.args));
    }

    fn observe(&mut self) -> BTreeMap<String, Seen> {
        let mut out = BTreeMap::new();
        let root = self.root();
        self.walk(&root, "", &mut out);
        out
    }

    fn service_markers(&mut self) -> std::collections::BTreeSet<String> {
        self.fx
            .names("")
            .into_iter()
            .filter(|n| {
                self.fx
                    .rest
                    .blob_properties(&self.fx.container, n)
                    .is_some_and(|p| p.metadata.get("hdi_isfolder").is_some_and(|v| v == "true"))
            })
            .collect()
    }

    fn service_files(&mut self) -> BTreeMap<String, Vec<u8>> {
        self.fx
            .names("")
            .into_iter()
            .filter_map(|n| {
                let props = self.fx.rest.blob_properties(&self.fx.container, &n)?;
                let marker = props
                    .metadata
                    .get("hdi_isfolder")
                    .is_some_and(|v| v == "true");
                if marker {
                    return None;
                }
                Some((n.clone(), self.fx.blob(&n)?))
            })
            .collect()
    }
}

fn through_a_mount(seed_base: u64, faults: bool) {
    let fx = Fixture::writable("model");
    let args = vec!["--block-size", "64K", "--request-timeout", "2s"];
    if faults {
        // Lost answers, resets and 500s on every kind of request: the client retries each.
        fx.proxy.random_faults(
            |_| true,
            seed_base,
            0.08,
            vec![
                Fault::LoseAnswer,
                Fault::Reset,
                Fault::internal_error(),
                Fault::TruncateBody { after: 100 },
            ],
        );
    }
    let mut d = MountDriver {
        fx: &fx,
        mount: Some(fx.mount(&args)),
        args,
    };
    let mut steps = 0;
    for seed in seeds(seed_base, 2) {
        let run = Run {
            seed,
            steps: 150,
            max_write: 150 * 1024,
            faults_allowed: false,
        };
        let ran =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| model::run(&mut d, &run)));
        match ran {
            Ok((_, n)) => steps += n,
            Err(panic) => {
                // The mount's side of the story, for the failing seed.
                if let Some(m) = d.mount.as_ref() {
                    let log = m.log();
                    let lines: Vec<&str> = log.lines().collect();
                    let tail = lines.len().saturating_sub(150);
                    eprintln!(
                        "--- the mount's log (last lines) ---\n{}",
                        lines[tail..].join("\n")
                    );
                }
                std::panic::resume_unwind(panic);
            }
        }
        // The next seed starts from an empty container.
        for n in fx.names("") {
            fx.rest.delete_blob(&fx.container, &n);
        }
        d.remount();
    }
    let injected = fx.proxy.injected();
    eprintln!("{steps} steps through the mount, {injected} faults injected");
    assert!(!faults || injected > 0, "no fault was injected");
    let log = d.mount.as_ref().unwrap().log();
    for sig in signature_forms(&fx.url()) {
        assert!(!log.contains(&sig), "the signature is in the log");
    }
}

#[test]
fn a_mount_follows_the_model() {
    through_a_mount(1000, false);
}

#[test]
fn a_mount_follows_the_model_through_lost_answers_resets_and_500s() {
    through_a_mount(2000, true);
}
