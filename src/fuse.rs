//! The thin adapter from fuser's callbacks to the filesystem core ([`crate::fs::Fs`]).
//!
//! Every callback that may touch the network is spawned onto the tokio runtime and replies
//! when its work is done, so the FUSE threads never wait on the service and one slow request
//! never holds up another.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, InitFlags,
    KernelConfig, LockOwner, OpenAccMode, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate,
    ReplyData, ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs,
    ReplyWrite, ReplyXattr, Request, TimeOrNow, WriteFlags,
};

use crate::fs::posix::{Creator, Special};
use crate::fs::xattr::{self, SetMode};
use crate::fs::SetAttrs;
use crate::fs::{Attr, EntryInfo, Fs, FsConfig, FsError, Kind, OpenMode, PageCache};
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

/// Kernel attributes for an inode: what its metadata keeps, else the mount's defaults.
pub fn file_attr(cfg: &FsConfig, a: &Attr) -> FileAttr {
    let (kind, perm, nlink, rdev) = match a.kind {
        Kind::File => (FileType::RegularFile, a.mode.unwrap_or(cfg.file_mode), 1, 0),
        Kind::Dir => (FileType::Directory, a.mode.unwrap_or(cfg.dir_mode), 2, 0),
        Kind::Symlink => (FileType::Symlink, 0o777, 1, 0),
        Kind::Special(s) => (
            special_type(s),
            a.mode.unwrap_or(cfg.file_mode),
            1,
            s.rdev(),
        ),
    };
    FileAttr {
        ino: INodeNo(a.ino),
        size: a.size,
        blocks: a.size.div_ceil(512),
        atime: a.atime.unwrap_or(a.mtime),
        mtime: a.mtime,
        ctime: a.ctime,
        crtime: a.mtime,
        kind,
        perm,
        nlink,
        uid: a.uid.filter(|_| cfg.keep_owners).unwrap_or(cfg.uid),
        gid: a.gid.filter(|_| cfg.keep_owners).unwrap_or(cfg.gid),
        rdev,
        // Programs size their I/O by st_blksize: invite large reads.
        blksize: BLKSIZE,
        flags: 0,
    }
}

fn special_type(s: Special) -> FileType {
    match s {
        Special::Fifo => FileType::NamedPipe,
        Special::Socket => FileType::Socket,
        Special::Char(_) => FileType::CharDevice,
        Special::Block(_) => FileType::BlockDevice,
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
                    let none = Attr::of(0, &EntryInfo::file(0, SystemTime::UNIX_EPOCH, None));
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
                    Kind::Special(s) => special_type(s),
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
        atime: Option<TimeOrNow>,
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
            // Who may change what (chown to another user, chmod of someone else's file) the
            // kernel has checked against the attributes shown (`default_permissions`).
            let result = async {
                if let Some(size) = size {
                    fs.set_size(ino.0, size).await?;
                }
                let at = |t: TimeOrNow| match t {
                    TimeOrNow::SpecificTime(t) => t,
                    TimeOrNow::Now => SystemTime::now(),
                };
                // A personal mount keeps no owners: chgrp (all its user may do) is accepted,
                // not kept.
                let set = SetAttrs {
                    perm: mode.map(|m| (m & 0o7777) as u16),
                    uid: uid.filter(|_| cfg.keep_owners),
                    gid: gid.filter(|_| cfg.keep_owners),
                    atime: atime.map(at),
                    mtime: mtime.map(at),
                };
                fs.set_attrs(ino.0, set).await
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
        mode: u32,
        _umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let (fs, ttl, name, pid) = (self.fs.clone(), self.ttl, name.to_owned(), req.pid());
        let who = creator(self.fs.config(), req, mode);
        self.rt.spawn(async move {
            let exclusive = flags & libc::O_EXCL != 0;
            let truncate = flags & libc::O_TRUNC != 0;
            match fs.create(parent.0, &name, exclusive, truncate, &who).await {
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
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        reply: ReplyEntry,
    ) {
        let (fs, ttl, name) = (self.fs.clone(), self.ttl, name.to_owned());
        let who = creator(self.fs.config(), req, mode);
        self.rt.spawn(async move {
            match fs.mkdir(parent.0, &name, &who).await {
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

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        rdev: u32,
        reply: ReplyEntry,
    ) {
        // A regular file made by mknod (S_IFREG, or no type) is an empty file, created as
        // open+close would.
        let special = Special::from_mode(mode, rdev);
        if special.is_none() && mode & libc::S_IFMT != 0 && mode & libc::S_IFMT != libc::S_IFREG {
            return reply.error(Errno::EINVAL);
        }
        let (fs, ttl, name) = (self.fs.clone(), self.ttl, name.to_owned());
        let who = creator(self.fs.config(), req, mode);
        self.rt.spawn(async move {
            let made = match special {
                Some(s) => fs.mknod(parent.0, &name, s, &who).await,
                None => fs.create_empty(parent.0, &name, &who).await,
            };
            match made {
                Ok(a) => reply.entry(&ttl, &file_attr(fs.config(), &a), Generation(0)),
                Err(e) => reply.error(errno(e)),
            }
        });
    }

    fn symlink(
        &self,
        req: &Request,
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
        let who = creator(self.fs.config(), req, 0o777);
        self.rt.spawn(async move {
            match fs.symlink(parent.0, &name, &target, &who).await {
                Ok(a) => reply.entry(&ttl, &file_attr(fs.config(), &a), Generation(0)),
                Err(e) => reply.error(errno(e)),
            }
        });
    }

    // Extended attributes: `user.*` in blob metadata (see fs/xattr.rs). Names of other
    // namespaces find nothing, answered here at once: `ls -l` asks for security.selinux and
    // system.posix_acl_access of every file, and a task for each cost `ls -l` of 10,000
    // cached entries 0.8-1.7 s (20,000 requests, three futex calls each).
    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        if !xattr::is_kept(name.as_bytes()) {
            reply.error(errno(FsError::NoAttribute));
            return;
        }
        let (fs, name) = (self.fs.clone(), name.as_bytes().to_vec());
        self.rt.spawn(async move {
            match fs.getxattr(ino.0, &name).await {
                Ok(v) => xattr_reply(reply, size, &v),
                Err(e) => reply.error(errno(e)),
            }
        });
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        let fs = self.fs.clone();
        self.rt.spawn(async move {
            match fs.listxattr(ino.0).await {
                Ok(v) => xattr_reply(reply, size, &v),
                Err(e) => reply.error(errno(e)),
            }
        });
    }

    fn setxattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        name: &OsStr,
        value: &[u8],
        flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        let mode = match SetMode::from_flags(flags) {
            Ok(m) => m,
            Err(e) => return reply.error(errno(e)),
        };
        let (fs, name, value) = (self.fs.clone(), name.as_bytes().to_vec(), value.to_vec());
        self.rt.spawn(async move {
            match fs.setxattr(ino.0, &name, &value, mode).await {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(errno(e)),
            }
        });
    }

    fn removexattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let (fs, name) = (self.fs.clone(), name.as_bytes().to_vec());
        self.rt.spawn(async move {
            match fs.removexattr(ino.0, &name).await {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(errno(e)),
            }
        });
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

/// getxattr/listxattr's answer: the size asked for with size 0, ERANGE if `size` is short.
fn xattr_reply(reply: ReplyXattr, size: u32, value: &[u8]) {
    if size == 0 {
        reply.size(value.len() as u32);
    } else if value.len() > size as usize {
        reply.error(Errno::ERANGE);
    } else {
        reply.data(value);
    }
}

/// Who is creating an entry with permission bits `mode` (the kernel applied the umask). A
/// personal mount records no owners (see [`FsConfig::keep_owners`]).
fn creator(cfg: &FsConfig, req: &Request, mode: u32) -> Creator {
    Creator {
        uid: Some(req.uid()).filter(|_| cfg.keep_owners),
        gid: Some(req.gid()).filter(|_| cfg.keep_owners),
        perm: Some((mode & 0o7777) as u16),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::posix::Special;

    fn config(keep_owners: bool) -> FsConfig {
        FsConfig {
            uid: 1000,
            gid: 100,
            file_mode: 0o644,
            dir_mode: 0o755,
            metadata_ttl: Duration::from_secs(1),
            block_size: 1 << 20,
            cache_size: 1 << 24,
            read_only: false,
            prefetch_files: 0,
            write_buffer: 1 << 24,
            staging_dir: std::env::temp_dir(),
            journal: None,
            keep_owners,
            credential: None,
            write_back: None,
        }
    }

    #[test]
    fn stored_owners_show_on_a_shared_mount_and_a_personal_one_shows_its_user() {
        let info = EntryInfo {
            kind: Kind::Special(Special::Char(0x0103)),
            uid: Some(7),
            gid: Some(8),
            mode: Some(0o600),
            ..EntryInfo::file(0, SystemTime::UNIX_EPOCH, None)
        };
        let a = Attr::of(5, &info);
        let shared = file_attr(&config(true), &a);
        assert_eq!((shared.uid, shared.gid, shared.perm), (7, 8, 0o600));
        assert_eq!((shared.kind, shared.rdev), (FileType::CharDevice, 0x0103));
        let personal = file_attr(&config(false), &a);
        assert_eq!(
            (personal.uid, personal.gid, personal.perm),
            (1000, 100, 0o600)
        );
        let plain = file_attr(
            &config(true),
            &Attr::of(6, &EntryInfo::file(1, SystemTime::UNIX_EPOCH, None)),
        );
        assert_eq!((plain.uid, plain.gid, plain.perm), (1000, 100, 0o644));
    }
}
