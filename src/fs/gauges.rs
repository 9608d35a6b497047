//! The mount's current values for the metrics ([`crate::metrics::Gauges`]).

use super::Fs;
use crate::metrics::Gauges;

impl Fs {
    /// Cache and write buffer use, open files and the SAS lifetime, now. Cheap: a few short
    /// locks, no request.
    pub fn gauges(&self) -> Gauges {
        use std::sync::atomic::Ordering::Relaxed;
        let r = &self.resumed;
        let wb_pending = self.write_back().map_or((0, 0), |w| w.pending());
        Gauges {
            resume_pending_files: r.pending(),
            resume_committed_files: r.committed.load(Relaxed),
            resume_saved_beside_files: r.saved_beside.load(Relaxed),
            resume_left_files: r.left.load(Relaxed),
            resume_blocks_kept: r.blocks_kept.load(Relaxed),
            resume_blocks_sent: r.blocks_sent.load(Relaxed),
            write_blocks_reused: self
                .staging
                .reuse
                .as_ref()
                .map_or(0, |u| u.blocks_reused.load(Relaxed)),
            write_bytes_reused: self
                .staging
                .reuse
                .as_ref()
                .map_or(0, |u| u.bytes_reused.load(Relaxed)),
            write_back_pending_files: wb_pending.0,
            write_back_pending_bytes: wb_pending.1,
            write_back_committed_files: self.write_back().map_or(0, |w| w.committed.load(Relaxed)),
            write_back_failed_files: self.write_back().map_or(0, |w| w.failed.load(Relaxed)),
            cache_bytes: self.cache().used(),
            cache_budget_bytes: self.cache().budget(),
            dirty_bytes: self.staging.budget.in_use(),
            write_buffer_bytes: self.staging.budget.total(),
            open_files: self.handles.open_count() as u64,
            files_open_for_writing: self.open_files.len() as u64,
            token_seconds_left: self
                .cfg
                .credential
                .as_ref()
                .and_then(|c| c.seconds_left(time::OffsetDateTime::now_utc())),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::fs::posix::Creator;
    use std::ffi::OsStr;
    use std::sync::Arc;
    use std::time::Duration;

    use super::super::{FsConfig, OpenMode, ROOT_INO};
    use super::*;
    use crate::blob::fake::FakeClient;
    use crate::metrics::Metrics;
    use crate::token::Credential;

    const BS: u64 = 1024;

    fn mount(credential: Option<Arc<Credential>>) -> (Arc<FakeClient>, Arc<Fs>, &'static Metrics) {
        let fake = Arc::new(FakeClient::new());
        let metrics: &'static Metrics = Box::leak(Box::new(Metrics::new()));
        let cfg = FsConfig {
            uid: 1000,
            gid: 1000,
            file_mode: 0o644,
            dir_mode: 0o755,
            metadata_ttl: Duration::from_secs(60),
            block_size: BS,
            cache_size: 64 * BS,
            read_only: false,
            prefetch_files: crate::fs::PREFETCH_FILES,
            write_buffer: 8 * BS,
            staging_dir: std::env::temp_dir(),
            journal: None,
            keep_owners: true,
            credential,
            write_back: None,
        };
        let fs = Fs::counting_into(fake.clone(), cfg, metrics);
        (fake, fs, metrics)
    }

    #[tokio::test]
    async fn reads_count_cache_hits_and_misses_with_the_bytes_served() {
        let (fake, fs, m) = mount(None);
        fake.put("f", vec![7u8; 3 * BS as usize + 100]);
        let ino = fs.lookup(ROOT_INO, OsStr::new("f")).await.unwrap().ino;
        let (fh, _) = fs.open(ino, OpenMode::default()).await.unwrap();
        fs.read(fh, 0, BS as u32).await.unwrap();
        let s = m.snapshot();
        assert_eq!((s.cache_hits, s.cache_misses), (0, 1));
        assert_eq!((s.cache_hit_bytes, s.cache_miss_bytes), (0, BS));
        fs.read(fh, 0, BS as u32).await.unwrap();
        let s = m.snapshot();
        assert_eq!((s.cache_hits, s.cache_hit_bytes), (1, BS));
        // Two blocks: 24 bytes of block 0 (cached), 76 of block 1.
        fs.read(fh, BS - 24, 100).await.unwrap();
        let s = m.snapshot();
        assert_eq!(s.cache_hits + s.cache_misses, 4);
        assert_eq!(s.cache_hit_bytes + s.cache_miss_bytes, 2 * BS + 100);
        assert!(s.cache_hit_bytes >= BS + 24);
        // Past the end: nothing needed, nothing counted.
        fs.read(fh, 10 * BS, 100).await.unwrap();
        assert_eq!(m.snapshot().cache_hits + m.snapshot().cache_misses, 4);
        let g = fs.gauges();
        assert!(
            g.cache_bytes >= BS && g.cache_budget_bytes == 64 * BS,
            "{g:?}"
        );
        assert_eq!(g.open_files, 1);
        fs.release(fh).await;
        assert_eq!(fs.gauges().open_files, 0);
    }

    #[tokio::test]
    async fn gauges_show_dirty_bytes_writers_and_token_lifetime() {
        let se = time::OffsetDateTime::now_utc() + Duration::from_secs(2 * 3600);
        let se = se
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap();
        let se = &se[..19]; // whole seconds
        let cred = Arc::new(Credential::new(format!(
            "sv=2023-11-03&se={se}Z&sp=racwdl&sr=c&sig=x"
        )));
        let (fake, fs, _) = mount(Some(cred));
        let g = fs.gauges();
        assert_eq!((g.dirty_bytes, g.write_buffer_bytes), (0, 8 * BS));
        let left = g.token_seconds_left.unwrap();
        assert!((2 * 3600 - 5..=2 * 3600).contains(&left), "{left}");

        let (_, fh) = fs
            .create(
                ROOT_INO,
                OsStr::new("new"),
                false,
                false,
                &Creator::DEFAULTS,
            )
            .await
            .unwrap();
        fs.write(fh, 0, b"hello").await.unwrap();
        let g = fs.gauges();
        assert_eq!(g.files_open_for_writing, 1);
        assert_eq!(
            g.dirty_bytes, BS,
            "the block being written holds its full size"
        );
        fs.flush(fh).await.unwrap();
        fs.release(fh).await;
        let g = fs.gauges();
        assert_eq!((g.dirty_bytes, g.files_open_for_writing), (0, 0));
        assert_eq!(&fake.blob("new").unwrap().0[..], b"hello");
        assert_eq!(mount(None).1.gauges().token_seconds_left, None);
    }
}
