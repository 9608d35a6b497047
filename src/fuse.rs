//! The thin adapter from fuser's callbacks to the filesystem core ([`crate::fs::Fs`]).
//!
//! Every callback that may touch the network is spawned onto the tokio runtime and replies
//! when its work is done, so the FUSE threads never wait on the service and one slow request
//! never holds up another.

use std::ffi::OsStr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, InitFlags,
    KernelConfig, LockOwner, OpenAccMode, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate,
    ReplyData, ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs,
    ReplyWrite, ReplyXattr, Request, TimeOrNow, WriteFlags,
};

use crate::fs::{Attr, Fs, FsConfig, FsError, Kind, OpenMode, PageCache};
use crate::fuse_tuning::{Readdirplus, Tuning};

/// The block size shown by stat (st_blksize): programs size their reads and writes by it.
const BLKSIZE: u32 = 1 << 20;

pub struct BlobFuse {
    fs: Arc<Fs>,
    rt: tokio::runtime::Handle,
    ttl: Duration,
    tuning: Tuning,
}

impl BlobFuse {
    pub fn new(fs: Arc<Fs>, rt: tokio::runtime::Handle, tuning: Tuning) -> Self {
        let ttl = fs.config().metadata_ttl;
        BlobFuse {
            fs,
            rt,
            ttl,
            tuning,
        }
    }
}

/// Kernel attributes for an inode.
pub fn file_attr(cfg: &FsConfig, a: &Attr) -> FileAttr {
    let (kind, perm, nlink) = match a.kind {
        Kind::File => (FileType::RegularFile, a.mode.unwrap_or(cfg.file_mode), 1),
        Kind::Dir => (FileType::Directory, a.mode.unwrap_or(cfg.dir_mode), 2),
        Kind::Symlink => (FileType::Symlink, 0o777, 1),
    };
    FileAttr {
        ino: INodeNo(a.ino),
        size: a.size,
        blocks: a.size.div_ceil(512),
        atime: a.mtime,
        mtime: a.mtime,
        ctime: a.mtime,
        crtime: a.mtime,
        kind,
        perm,
        nlink,
        uid: cfg.uid,
        gid: cfg.gid,
        rdev: 0,
        // Programs size their I/O by st_blksize: invite large reads.
        blksize: BLKSIZE,
        flags: 0,
    }
}

/// The kernel's answer for a failed operation; the error is logged here, once.
fn errno(e: FsError) -> Errno {
    e.log();
    Errno::from_i32(e.to_errno())
}

impl Filesystem for BlobFuse {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        // readdirplus always (not "auto"): `ls -l` gets every attribute with the listing.
        let readdirplus = match self.tuning.readdirplus {
            Readdirplus::Always => InitFlags::FUSE_DO_READDIRPLUS,
            Readdirplus::Auto => InitFlags::FUSE_DO_READDIRPLUS | InitFlags::FUSE_READDIRPLUS_AUTO,
            Readdirplus::Off => InitFlags::empty(),
        };
        let wanted = readdirplus
            | InitFlags::FUSE_PARALLEL_DIROPS
            | InitFlags::FUSE_AUTO_INVAL_DATA
            | InitFlags::FUSE_ASYNC_READ
            | InitFlags::FUSE_MAX_PAGES;
        if let Err(unsupported) = config.add_capabilities(wanted) {
            tracing::debug!("kernel lacks FUSE capabilities {unsupported:?}");
            let _ = config.add_capabilities(wanted - unsupported);
        }
        if let Err(max) = config.set_max_readahead(self.tuning.max_read) {
            let _ = config.set_max_readahead(max);
        }
        let _ = config.set_max_background(self.tuning.max_background);
        Ok(())
    }

    fn destroy(&mut self) {
        tracing::debug!("block cache: {}", self.fs.cache().stats.summary());
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let (fs, ttl, name) = (self.fs.clone(), self.ttl, name.to_owned());
        self.rt.spawn(async move {
            match fs.lookup(parent.0, &name).await {
                Ok(a) => reply.entry(&ttl, &file_attr(fs.config(), &a), Generation(0)),
                // Inode 0 is a negative entry the kernel caches for the TTL: repeated probes
                // of a missing name do not even reach us.
                Err(e) if e.is_not_found() && !ttl.is_zero() => {
                    let none = Attr {
                        ino: 0,
                        kind: Kind::File,
                        size: 0,
                        mtime: SystemTime::UNIX_EPOCH,
                        mode: None,
                    };
                    reply.entry(&ttl, &file_attr(fs.config(), &none), Generation(0))
                }
                Err(e) => reply.error(errno(e)),
            }
        });
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.fs.forget(ino.0, nlookup);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        let (fs, ttl) = (self.fs.clone(), self.ttl);
        self.rt.spawn(async move {
            match fs.getattr(ino.0).await {
                Ok(a) => reply.attr(&ttl, &file_attr(fs.config(), &a)),
                Err(e) => reply.error(errno(e)),
            }
        });
    }

    fn open(&self, req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let pid = req.pid();
        let mode = OpenMode {
            write: flags.acc_mode() != OpenAccMode::O_RDONLY,
            truncate: flags.0 & libc::O_TRUNC != 0,
        };
        let fs = self.fs.clone();
        self.rt.spawn(async move {
            match fs.open(ino.0, mode).await {
                Ok((fh, cache)) => {
                    if mode.write {
                        fs.note_process(fh, pid);
                    }
                    let f = match cache {
                        PageCache::Drop => FopenFlags::empty(),
                        PageCache::Keep => FopenFlags::FOPEN_KEEP_CACHE,
                        // Kept for the other open files; this one reads around the pages.
                        PageCache::Bypass => {
                            FopenFlags::FOPEN_KEEP_CACHE | FopenFlags::FOPEN_DIRECT_IO
                        }
                    };
                    reply.opened(FileHandle(fh), f)
                }
                Err(e) => reply.error(errno(e)),
            }
        });
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let fs = self.fs.clone();
        self.rt.spawn(async move {
            match fs.read(fh.0, offset, size).await {
                Ok(data) => reply.data(&data),
                Err(e) => reply.error(errno(e)),
            }
        });
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        let fs = self.fs.clone();
        self.rt.spawn(async move {
            fs.release(fh.0).await;
            reply.ok();
        });
    }

    fn flush(
        &self,
        req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        let (fs, pid) = (self.fs.clone(), req.pid());
        self.rt.spawn(async move {
            match fs.flush_by(fh.0, pid).await {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(errno(e)),
            }
        });
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let fs = self.fs.clone();
        self.rt.spawn(async move {
            match fs.opendir(ino.0).await {
                Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::empty()),
                Err(e) => reply.error(errno(e)),
            }
        });
    }

    fn readdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let result = self
            .fs
            .readdir(fh.0, offset, false, |ino, next, name, attr| {
                let kind = match attr.kind {
                    Kind::File => FileType::RegularFile,
                    Kind::Dir => FileType::Directory,
                    Kind::Symlink => FileType::Symlink,
                };
                reply.add(INodeNo(ino), next, kind, name)
            });
        match result {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn readdirplus(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        let cfg = self.fs.config();
        let result = self
            .fs
            .readdir(fh.0, offset, true, |ino, next, name, attr| {
                reply.add(
                    INodeNo(ino),
                    next,
                    name,
                    &self.ttl,
                    &file_attr(cfg, attr),
                    Generation(0),
                )
            });
        match result {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        self.fs.releasedir(fh.0);
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        // Blob storage has no meaningful capacity: report plenty, so df and cp behave.
        const BLOCKS: u64 = 1 << 40; // 4 PiB of 4 KiB blocks
        const FILES: u64 = 1 << 32;
        reply.statfs(BLOCKS, BLOCKS, BLOCKS, FILES, FILES, 4096, 255, 4096);
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let (fs, ttl) = (self.fs.clone(), self.ttl);
        self.rt.spawn(async move {
            let cfg = fs.config();
            if cfg.read_only {
                return reply.error(Errno::EROFS);
            }
            // Only the mount's owner can own files here.
            if uid.is_some_and(|u| u != cfg.uid) || gid.is_some_and(|g| g != cfg.gid) {
                return reply.error(Errno::EPERM);
            }
            let result = async {
                if let Some(size) = size {
                    fs.set_size(ino.0, size).await?;
                }
                let mtime = mtime.map(|t| match t {
                    TimeOrNow::SpecificTime(t) => t,
                    TimeOrNow::Now => SystemTime::now(),
                });
                fs.set_attrs(ino.0, mode.map(|m| (m & 0o7777) as u16), mtime)
                    .await
            }
            .await;
            match result {
                Ok(a) => reply.attr(&ttl, &file_attr(fs.config(), &a)),
                Err(e) => reply.error(errno(e)),
            }
        });
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        _mode: u32,
        _umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let (fs, ttl, name, pid) = (self.fs.clone(), self.ttl, name.to_owned(), req.pid());
        self.rt.spawn(async move {
            let exclusive = flags & libc::O_EXCL != 0;
            let truncate = flags & libc::O_TRUNC != 0;
            match fs.create(parent.0, &name, exclusive, truncate).await {
                Ok((a, fh)) => {
                    fs.note_process(fh, pid);
                    reply.created(
                        &ttl,
                        &file_attr(fs.config(), &a),
                        Generation(0),
                        FileHandle(fh),
                        FopenFlags::empty(),
                    )
                }
                Err(e) => reply.error(errno(e)),
            }
        });
    }

    fn write(
        &self,
        req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _wf: WriteFlags,
        _flags: OpenFlags,
        _lo: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let (fs, data, pid) = (self.fs.clone(), data.to_vec(), req.pid());
        self.rt.spawn(async move {
            fs.note_process(fh.0, pid);
            match fs.write(fh.0, offset, &data).await {
                Ok(n) => reply.written(n),
                Err(e) => reply.error(errno(e)),
            }
        });
    }

    fn fsync(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        let fs = self.fs.clone();
        self.rt.spawn(async move {
            match fs.fsync(fh.0).await {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(errno(e)),
            }
        });
    }

    fn mkdir(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        _m: u32,
        _u: u32,
        reply: ReplyEntry,
    ) {
        let (fs, ttl, name) = (self.fs.clone(), self.ttl, name.to_owned());
        self.rt.spawn(async move {
            match fs.mkdir(parent.0, &name).await {
                Ok(a) => reply.entry(&ttl, &file_attr(fs.config(), &a), Generation(0)),
                Err(e) => reply.error(errno(e)),
            }
        });
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let (fs, name) = (self.fs.clone(), name.to_owned());
        self.rt.spawn(async move {
            match fs.rmdir(parent.0, &name).await {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(errno(e)),
            }
        });
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let (fs, name) = (self.fs.clone(), name.to_owned());
        self.rt.spawn(async move {
            match fs.unlink(parent.0, &name).await {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(errno(e)),
            }
        });
    }

    // Not supported yet: refused (EROFS on a read-only mount, ENOSYS-like EPERM otherwise).

    fn mknod(
        &self,
        _req: &Request,
        _p: INodeNo,
        _n: &OsStr,
        _m: u32,
        _u: u32,
        _r: u32,
        reply: ReplyEntry,
    ) {
        reply.error(self.refused());
    }

    fn symlink(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        let (fs, ttl, name, target) = (
            self.fs.clone(),
            self.ttl,
            name.to_owned(),
            target.to_owned(),
        );
        self.rt.spawn(async move {
            match fs.symlink(parent.0, &name, &target).await {
                Ok(a) => reply.entry(&ttl, &file_attr(fs.config(), &a), Generation(0)),
                Err(e) => reply.error(errno(e)),
            }
        });
    }

    // Extended attributes are not kept (yet): answered here, at no cost, as a filesystem
    // without them answers (fuser's defaults would log a warning for each kind).
    fn getxattr(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _name: &OsStr,
        _size: u32,
        reply: ReplyXattr,
    ) {
        reply.error(Errno::ENODATA);
    }

    fn listxattr(&self, _req: &Request, _ino: INodeNo, size: u32, reply: ReplyXattr) {
        if size == 0 {
            reply.size(0);
        } else {
            reply.data(&[]);
        }
    }

    fn setxattr(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _name: &OsStr,
        _value: &[u8],
        _flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        reply.error(Errno::ENOTSUP);
    }

    fn removexattr(&self, _req: &Request, _ino: INodeNo, _name: &OsStr, reply: ReplyEmpty) {
        reply.error(Errno::ENODATA);
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        let fs = self.fs.clone();
        self.rt.spawn(async move {
            match fs.readlink(ino.0).await {
                Ok(data) => reply.data(&data),
                Err(e) => reply.error(errno(e)),
            }
        });
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        new_parent: INodeNo,
        new_name: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        if flags.intersects(RenameFlags::RENAME_EXCHANGE | RenameFlags::RENAME_WHITEOUT) {
            return reply.error(Errno::EINVAL);
        }
        let noreplace = flags.contains(RenameFlags::RENAME_NOREPLACE);
        let (fs, name, new_name) = (self.fs.clone(), name.to_owned(), new_name.to_owned());
        self.rt.spawn(async move {
            match fs
                .rename(parent.0, &name, new_parent.0, &new_name, noreplace)
                .await
            {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(errno(e)),
            }
        });
    }

    fn link(&self, _req: &Request, _i: INodeNo, _np: INodeNo, _nn: &OsStr, reply: ReplyEntry) {
        reply.error(self.refused());
    }
}

impl BlobFuse {
    fn refused(&self) -> Errno {
        if self.fs.config().read_only {
            Errno::EROFS
        } else {
            Errno::EPERM
        }
    }
}
