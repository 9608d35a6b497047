//! A reference model of what a mount must show, for random sequences of operations: create,
//! open, write at random offsets, truncate, fsync, close, rename (files and directories),
//! unlink, mkdir, rmdir, remount. A [`Driver`] applies each step to the filesystem under test
//! (the core in process, or a real mount); [`run`] applies it to the model too and compares
//! what the filesystem shows with the model after every step, and what the service holds at
//! every remount. Seeded: a failing seed replays exactly (with the same fault seed).
//!
//! Faults: a step that fails where the model says it succeeds must leave the filesystem as the
//! model was before the step or as it would be after it (for a directory rename: every file
//! in the old place or the new one); the model then follows what the filesystem shows. With
//! `faults_allowed == false`, every step must do exactly what the model says.

use std::collections::{BTreeMap, BTreeSet};

pub type Errno = i32;

/// What the filesystem shows at a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    Dir,
    File(Vec<u8>),
    /// Listed, but opening or reading it failed with this errno.
    Unreadable(&'static str, Errno),
}

/// The filesystem under test. Paths are relative to its root, `/`-separated.
pub trait Driver {
    type Handle;
    /// open(O_CREAT | O_WRONLY | O_TRUNC).
    fn create(&mut self, path: &str) -> Result<Self::Handle, Errno>;
    /// open(O_WRONLY), with O_TRUNC if `truncate`.
    fn open(&mut self, path: &str, truncate: bool) -> Result<Self::Handle, Errno>;
    fn write(&mut self, h: &Self::Handle, offset: u64, data: &[u8]) -> Result<(), Errno>;
    fn ftruncate(&mut self, h: &Self::Handle, size: u64) -> Result<(), Errno>;
    fn truncate(&mut self, path: &str, size: u64) -> Result<(), Errno>;
    fn fsync(&mut self, h: &Self::Handle) -> Result<(), Errno>;
    /// close(2): its result (the commit's).
    fn close(&mut self, h: Self::Handle) -> Result<(), Errno>;
    fn rename(&mut self, from: &str, to: &str) -> Result<(), Errno>;
    fn unlink(&mut self, path: &str) -> Result<(), Errno>;
    fn mkdir(&mut self, path: &str) -> Result<(), Errno>;
    fn rmdir(&mut self, path: &str) -> Result<(), Errno>;
    /// Unmounts and mounts again (no handle is open).
    fn remount(&mut self);
    /// Everything the filesystem shows, by path.
    fn observe(&mut self) -> BTreeMap<String, Seen>;
    /// The files the service holds (blob name to content), read around the filesystem.
    fn service_files(&mut self) -> BTreeMap<String, Vec<u8>>;
    /// The directory markers the service holds (their directory paths).
    fn service_markers(&mut self) -> BTreeSet<String>;
}

#[derive(Debug, Clone)]
struct FileM {
    content: Vec<u8>,
    /// What the service may hold for it (more than one after a commit whose outcome is not
    /// known); `None`: no blob.
    committed: BTreeSet<Option<Vec<u8>>>,
    /// Open write handles.
    writers: usize,
    /// A write to it failed: its content is not known until its last close.
    broken: bool,
    /// Unlinked (or replaced) while open: gone, never committed.
    unlinked: bool,
    /// Its name was taken, while it was open, by the copy a failed rename left: its commits
    /// meet that copy and go to conflict copies (`NAME.conflict-…`), failing its fsync and
    /// close.
    displaced: bool,
    /// A rename over it failed while it was open: the copy (this content) may have taken its
    /// name without the mount knowing; its next fsync or close then finds out.
    maybe_displaced: Option<Vec<u8>>,
}

#[derive(Debug, Clone, Default)]
struct Model {
    /// Directories (not the root), and whether a marker blob keeps them when empty.
    dirs: BTreeMap<String, bool>,
    /// File paths to file ids.
    names: BTreeMap<String, u64>,
    files: BTreeMap<u64, FileM>,
    /// Open handles: the file each writes to.
    handles: Vec<u64>,
    next_id: u64,
    /// Paths whose conflict copies (`PATH.conflict-…`) may appear (see [`FileM::displaced`]).
    conflict_prefixes: BTreeSet<String>,
}

/// One step.
#[derive(Debug, Clone)]
pub enum Step {
    Create(String),
    Open(String, bool),
    Write(usize, u64, Vec<u8>),
    Ftruncate(usize, u64),
    Truncate(String, u64),
    Fsync(usize),
    Close(usize),
    Rename(String, String),
    Unlink(String),
    Mkdir(String),
    Rmdir(String),
    Remount,
}

fn parent_of(path: &str) -> &str {
    path.rsplit_once('/').map_or("", |(p, _)| p)
}

fn under(path: &str, dir: &str) -> bool {
    path.len() > dir.len() && path.starts_with(dir) && path.as_bytes()[dir.len()] == b'/'
}

impl Model {
    fn is_dir(&self, path: &str) -> bool {
        path.is_empty() || self.visible_dirs().contains(path)
    }

    /// Directories that exist: those with a marker, and those with something under them.
    fn visible_dirs(&self) -> BTreeSet<String> {
        let mut out: BTreeSet<String> = self
            .dirs
            .iter()
            .filter(|(_, marker)| **marker)
            .map(|(d, _)| d.clone())
            .collect();
        let mut add_parents = |p: &str| {
            let mut p = parent_of(p).to_string();
            while !p.is_empty() {
                out.insert(p.clone());
                p = parent_of(&p).to_string();
            }
        };
        for n in self.names.keys() {
            add_parents(n);
        }
        for (d, marker) in &self.dirs {
            if *marker {
                add_parents(d);
            }
        }
        out
    }

    /// What the filesystem must show (contents of broken files are not known: `None`).
    fn expected(&self) -> BTreeMap<String, Option<Seen>> {
        let mut out: BTreeMap<String, Option<Seen>> = self
            .visible_dirs()
            .into_iter()
            .map(|d| (d, Some(Seen::Dir)))
            .collect();
        for (path, id) in &self.names {
            let f = &self.files[id];
            out.insert(
                path.clone(),
                (!f.broken).then(|| Seen::File(f.content.clone())),
            );
        }
        out
    }

    /// Whether `path` is a conflict copy the model allows: once a file was displaced (see
    /// [`FileM::displaced`]), its conflict copies may appear, and later renames move them.
    fn allowed_copy(&self, path: &str) -> bool {
        !self.conflict_prefixes.is_empty() && path.contains(".conflict-")
    }

    fn matches(&self, seen: &BTreeMap<String, Seen>) -> bool {
        let want = self.expected();
        let seen: BTreeMap<&String, &Seen> =
            seen.iter().filter(|(p, _)| !self.allowed_copy(p)).collect();
        want.len() == seen.len()
            && want.iter().all(|(p, w)| match (w, seen.get(p).copied()) {
                (Some(w), Some(s)) => w == s,
                (None, Some(Seen::File(_))) => true,
                _ => false,
            })
    }

    fn has_entries_under(&self, dir: &str) -> bool {
        self.names.keys().any(|n| under(n, dir)) || self.dirs.keys().any(|d| under(d, dir))
    }

    fn writing_under(&self, dir: &str) -> bool {
        self.names
            .iter()
            .any(|(n, id)| under(n, dir) && self.files[id].writers > 0)
    }

    fn file_at(&self, path: &str) -> Option<u64> {
        self.names.get(path).copied()
    }

    /// Applies `step` (assumed valid where the generator made it so); the expected result.
    fn apply(&mut self, step: &Step) -> Result<(), Errno> {
        match step {
            Step::Create(path) => {
                if self.is_dir(path) {
                    return Err(libc::EISDIR);
                }
                let id = match self.file_at(path) {
                    Some(id) => {
                        let f = self.files.get_mut(&id).unwrap();
                        f.content.clear();
                        f.writers += 1;
                        id
                    }
                    None => {
                        let id = self.next_id;
                        self.next_id += 1;
                        self.files.insert(
                            id,
                            FileM {
                                content: Vec::new(),
                                committed: [None].into(),
                                writers: 1,
                                broken: false,
                                unlinked: false,
                                displaced: false,
                                maybe_displaced: None,
                            },
                        );
                        self.names.insert(path.clone(), id);
                        id
                    }
                };
                self.handles.push(id);
                Ok(())
            }
            Step::Open(path, truncate) => {
                let id = self.file_at(path).ok_or(libc::ENOENT)?;
                let f = self.files.get_mut(&id).unwrap();
                if *truncate {
                    f.content.clear();
                }
                f.writers += 1;
                self.handles.push(id);
                Ok(())
            }
            Step::Write(h, offset, data) => {
                let f = self.files.get_mut(&self.handles[*h]).unwrap();
                let end = *offset as usize + data.len();
                if f.content.len() < end {
                    f.content.resize(end, 0);
                }
                f.content[*offset as usize..end].copy_from_slice(data);
                Ok(())
            }
            Step::Ftruncate(h, size) => {
                let f = self.files.get_mut(&self.handles[*h]).unwrap();
                f.content.resize(*size as usize, 0);
                Ok(())
            }
            Step::Truncate(path, size) => {
                let id = self.file_at(path).ok_or(libc::ENOENT)?;
                let f = self.files.get_mut(&id).unwrap();
                f.content.resize(*size as usize, 0);
                if f.writers == 0 {
                    f.committed = [Some(f.content.clone())].into();
                }
                Ok(())
            }
            Step::Fsync(h) => {
                let f = self.files.get_mut(&self.handles[*h]).unwrap();
                if !f.unlinked {
                    f.committed = [Some(f.content.clone())].into();
                }
                Ok(())
            }
            Step::Close(h) => {
                let id = self.handles.remove(*h);
                let f = self.files.get_mut(&id).unwrap();
                f.writers -= 1;
                if !f.unlinked {
                    f.committed = [Some(f.content.clone())].into();
                }
                if f.unlinked && f.writers == 0 {
                    self.files.remove(&id);
                }
                Ok(())
            }
            Step::Rename(from, to) => {
                if from == to {
                    return Ok(());
                }
                if let Some(id) = self.file_at(from) {
                    if self.is_dir(to) {
                        return Err(libc::EISDIR);
                    }
                    // An open file is committed before it moves.
                    let f = self.files.get_mut(&id).unwrap();
                    if f.writers > 0 {
                        f.committed = [Some(f.content.clone())].into();
                    }
                    if let Some(old) = self.names.insert(to.clone(), id) {
                        self.drop_name(old);
                    }
                    self.names.remove(from);
                    return Ok(());
                }
                if !self.is_dir(from) {
                    return Err(libc::ENOENT);
                }
                if self.file_at(to).is_some() {
                    return Err(libc::ENOTDIR);
                }
                if self.writing_under(from) {
                    return Err(libc::EBUSY);
                }
                if self.is_dir(to) && self.has_entries_under(to) {
                    return Err(libc::ENOTEMPTY);
                }
                self.dirs.remove(to);
                let move_path = |p: &str| format!("{to}{}", &p[from.len()..]);
                let names: Vec<(String, u64)> = self
                    .names
                    .iter()
                    .filter(|(n, _)| under(n, from))
                    .map(|(n, id)| (n.clone(), *id))
                    .collect();
                for (n, id) in names {
                    self.names.remove(&n);
                    self.names.insert(move_path(&n), id);
                }
                let dirs: Vec<(String, bool)> = self
                    .dirs
                    .iter()
                    .filter(|(d, _)| *d == from || under(d, from))
                    .map(|(d, m)| (d.clone(), *m))
                    .collect();
                for (d, m) in dirs {
                    self.dirs.remove(&d);
                    self.dirs.insert(move_path(&d), m);
                }
                let copies: Vec<String> = self
                    .conflict_prefixes
                    .iter()
                    .filter(|p| under(p, from))
                    .cloned()
                    .collect();
                for p in copies {
                    self.conflict_prefixes.remove(&p);
                    self.conflict_prefixes.insert(move_path(&p));
                }
                Ok(())
            }
            Step::Unlink(path) => {
                let id = self.names.remove(path).ok_or(libc::ENOENT)?;
                self.drop_name(id);
                Ok(())
            }
            Step::Mkdir(path) => {
                if self.is_dir(path) || self.file_at(path).is_some() {
                    return Err(libc::EEXIST);
                }
                self.dirs.insert(path.clone(), true);
                Ok(())
            }
            Step::Rmdir(path) => {
                if self.file_at(path).is_some() {
                    return Err(libc::ENOTDIR);
                }
                if !self.is_dir(path) {
                    return Err(libc::ENOENT);
                }
                if self.has_entries_under(path) {
                    return Err(libc::ENOTEMPTY);
                }
                self.dirs.remove(path);
                Ok(())
            }
            Step::Remount => Ok(()),
        }
    }

    /// If file `id` may have lost its name to a failed rename's copy: the model where its commit
    /// found that out (the name holds the copy, the file goes on nameless, its commits into
    /// conflict copies), after the fsync (`close: None`) or the close of handle `close`.
    fn displaced(&self, id: u64, close: Option<usize>) -> Option<Model> {
        let content = self.files.get(&id)?.maybe_displaced.clone()?;
        let path = self.names.iter().find(|(_, i)| **i == id)?.0.clone();
        let mut m = self.clone();
        let copy = m.add_closed(content);
        m.names.insert(path.clone(), copy);
        m.conflict_prefixes.insert(path);
        let f = m.files.get_mut(&id).unwrap();
        f.unlinked = true;
        f.displaced = true;
        f.maybe_displaced = None;
        if let Some(h) = close {
            m.handles.remove(h);
            let f = m.files.get_mut(&id).unwrap();
            f.writers -= 1;
            if f.writers == 0 {
                m.files.remove(&id);
            }
        }
        Some(m)
    }

    /// The models where a closed file that a failed rename may have replaced shows the copy
    /// (its name holds the copy: the rename's copy had gone through).
    fn settle_displaced(&self) -> Vec<Model> {
        let mut out = Vec::new();
        for (id, f) in &self.files {
            let (Some(content), 0) = (&f.maybe_displaced, f.writers) else {
                continue;
            };
            let Some(path) = self
                .names
                .iter()
                .find(|(_, i)| *i == id)
                .map(|(p, _)| p.clone())
            else {
                continue;
            };
            let mut m = self.clone();
            m.files.remove(id);
            let copy = m.add_closed(content.clone());
            m.names.insert(path, copy);
            out.push(m);
        }
        out
    }

    /// A new file (no name yet), closed, committed with `content`; its id.
    fn add_closed(&mut self, content: Vec<u8>) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.files.insert(
            id,
            FileM {
                content: content.clone(),
                committed: [Some(content)].into(),
                writers: 0,
                broken: false,
                unlinked: false,
                displaced: false,
                maybe_displaced: None,
            },
        );
        id
    }

    /// File `id` lost its name (unlink, replaced by a rename).
    fn drop_name(&mut self, id: u64) {
        let f = self.files.get_mut(&id).unwrap();
        if f.writers > 0 {
            f.unlinked = true;
        } else {
            self.files.remove(&id);
        }
    }

    /// The models a failed `step` may have left, besides the model before it.
    fn after_failure(&self, step: &Step, after_success: &Model) -> Vec<Model> {
        let mut out = vec![self.clone(), after_success.clone()];
        match step {
            // Nothing is sent but reads before the file is open: as before.
            Step::Create(_) | Step::Open(..) => out = vec![self.clone()],
            Step::Write(h, ..) | Step::Ftruncate(h, ..) => {
                // The file is broken: its content unknown until its last close.
                let mut m = self.clone();
                m.files.get_mut(&m.handles[*h]).unwrap().broken = true;
                out = vec![m];
            }
            Step::Fsync(h) => {
                let mut m = self.clone();
                let f = m.files.get_mut(&m.handles[*h]).unwrap();
                f.committed.insert(Some(f.content.clone()));
                out = vec![m];
                out.extend(self.displaced(self.handles[*h], None));
            }
            Step::Close(h) => {
                // Closed; the service may hold the old content or the new one, and the file
                // shows what the service holds once it was its last handle.
                let displaced = self.displaced(self.handles[*h], Some(*h));
                let mut m = self.clone();
                let id = m.handles.remove(*h);
                let f = m.files.get_mut(&id).unwrap();
                f.writers -= 1;
                let mut possible = f.committed.clone();
                possible.insert(Some(f.content.clone()));
                out.clear();
                if f.unlinked {
                    if f.writers == 0 {
                        m.files.remove(&id);
                    }
                    out.push(m);
                } else if f.writers > 0 {
                    f.committed = possible;
                    out.push(m);
                } else {
                    for p in possible {
                        let mut m = m.clone();
                        match p {
                            Some(c) => {
                                let f = m.files.get_mut(&id).unwrap();
                                f.content = c.clone();
                                f.committed = [Some(c)].into();
                                f.broken = false;
                            }
                            None => {
                                m.files.remove(&id);
                                m.names.retain(|_, i| *i != id);
                            }
                        }
                        out.push(m);
                    }
                }
                out.extend(displaced);
            }
            Step::Truncate(path, _)
                if self
                    .file_at(path)
                    .is_some_and(|id| self.files[&id].writers > 0) =>
            {
                // Open for writing: a local change, which failed (reading old bytes).
                let mut m = self.clone();
                let id = m.names[path];
                m.files.get_mut(&id).unwrap().broken = true;
                out = vec![m];
            }
            Step::Rename(from, to) if self.file_at(from).is_some() => {
                // When the service kept failing, the copy may be left at the destination
                // (nothing lost: the source is whole).
                let id = self.names[from];
                let f = &self.files[&id];
                let copied = if f.writers > 0 {
                    Some(f.content.clone())
                } else {
                    f.committed.iter().next().cloned().flatten()
                };
                if let Some(content) = copied {
                    let mut m = self.clone();
                    let new = m.add_closed(content.clone());
                    if let Some(old) = m.names.insert(to.clone(), new) {
                        if m.files[&old].writers > 0 {
                            // Still open: it goes on, its commits into conflict copies.
                            let f = m.files.get_mut(&old).unwrap();
                            f.unlinked = true;
                            f.displaced = true;
                            m.conflict_prefixes.insert(to.clone());
                        } else {
                            m.drop_name(old);
                        }
                    }
                    out.push(m);
                    // The mount may not know it yet: an open file it replaced looks the same
                    // until its next commit.
                    if let Some(old) = self.file_at(to).filter(|o| self.files[o].writers > 0) {
                        for c in out.iter_mut() {
                            if let Some(f) = c.files.get_mut(&old) {
                                if !f.displaced {
                                    f.maybe_displaced = Some(content.clone());
                                }
                            }
                        }
                    }
                }
                for m in out.iter_mut() {
                    for f in m.files.values_mut() {
                        if f.writers > 0 && !f.unlinked {
                            let c = Some(f.content.clone());
                            f.committed.insert(c);
                        }
                    }
                }
            }
            Step::Rename(_, _) | Step::Truncate(_, _) => {
                // The commit before the move (or of the truncate) may have gone through.
                for m in out.iter_mut() {
                    for f in m.files.values_mut() {
                        if f.writers > 0 && !f.unlinked {
                            let c = Some(f.content.clone());
                            f.committed.insert(c);
                        }
                    }
                }
            }
            _ => {}
        }
        out
    }

    /// After a directory rename that failed: whether `seen` holds every file of the source,
    /// each once, in the old place or the new; the model then follows it.
    fn follow_split(
        &self,
        from: &str,
        to: &str,
        seen: &BTreeMap<String, Seen>,
        markers: &BTreeSet<String>,
    ) -> Option<Model> {
        let mut m = self.clone();
        for (n, id) in self.names.iter().filter(|(n, _)| under(n, from)) {
            let moved = format!("{to}{}", &n[from.len()..]);
            let want = Seen::File(self.files[id].content.clone());
            match (seen.get(n) == Some(&want), seen.get(&moved) == Some(&want)) {
                (true, false) => {}
                (false, true) => {
                    m.names.remove(n);
                    m.names.insert(moved, *id);
                }
                (true, true) => {
                    // The service kept failing: a copy was left behind (nothing lost).
                    let copy = m.add_closed(self.files[id].content.clone());
                    m.names.insert(moved, copy);
                }
                (false, false) => return None,
            }
        }
        // Directories as they are seen now (markers moved or not).
        m.dirs
            .retain(|d, _| !(d == from || under(d, from) || d == to || under(d, to)));
        for (p, s) in seen {
            if *s == Seen::Dir && (p == from || under(p, from) || p == to || under(p, to)) {
                m.dirs.insert(p.clone(), markers.contains(p));
            }
        }
        m.matches(seen).then_some(m)
    }
}

/// Settings of one run.
pub struct Run {
    pub seed: u64,
    pub steps: usize,
    /// Largest write, bytes.
    pub max_write: usize,
    /// Whether steps may fail (injected faults that exhaust retries).
    pub faults_allowed: bool,
}

const FILE_NAMES: [&str; 3] = ["f1", "f2", "f3"];
const DIR_NAMES: [&str; 2] = ["d1", "d2"];

/// A random step that the model finds mostly valid (a few on purpose not: EEXIST, ENOTEMPTY).
fn generate(m: &Model, rng: &mut fastrand::Rng, max_write: usize) -> Step {
    let dirs: Vec<String> = std::iter::once(String::new())
        .chain(m.visible_dirs())
        .filter(|d| d.matches('/').count() < 2)
        .collect();
    let in_dir = |rng: &mut fastrand::Rng, names: &[&str]| {
        let d = &dirs[rng.usize(..dirs.len())];
        let n = names[rng.usize(..names.len())];
        if d.is_empty() {
            n.to_string()
        } else {
            format!("{d}/{n}")
        }
    };
    let files: Vec<&String> = m.names.keys().collect();
    let some_file = |rng: &mut fastrand::Rng| files[rng.usize(..files.len())].clone();
    loop {
        let step = match rng.u32(..100) {
            0..=7 if m.handles.len() < 3 => {
                let p = in_dir(rng, &FILE_NAMES);
                if m.is_dir(&p) {
                    continue;
                }
                Step::Create(p)
            }
            8..=12 if m.handles.len() < 3 && !files.is_empty() => {
                Step::Open(some_file(rng), rng.u8(..4) == 0)
            }
            13..=42 if !m.handles.is_empty() => {
                let h = rng.usize(..m.handles.len());
                let size = m.files[&m.handles[h]].content.len();
                let offset = rng.usize(..=size + max_write / 4) as u64;
                let len = rng.usize(1..=max_write);
                let data: Vec<u8> = (0..len).map(|_| rng.u8(..)).collect();
                Step::Write(h, offset, data)
            }
            43..=46 if !m.handles.is_empty() => {
                let h = rng.usize(..m.handles.len());
                let size = m.files[&m.handles[h]].content.len();
                Step::Ftruncate(h, rng.usize(..=size + max_write / 2) as u64)
            }
            47..=48 if !files.is_empty() => {
                let p = some_file(rng);
                let size = m.files[&m.names[&p]].content.len();
                Step::Truncate(p, rng.usize(..=size + 10) as u64)
            }
            49..=52 if !m.handles.is_empty() => Step::Fsync(rng.usize(..m.handles.len())),
            53..=64 if !m.handles.is_empty() => Step::Close(rng.usize(..m.handles.len())),
            65..=71 if !files.is_empty() => {
                let to = in_dir(rng, &FILE_NAMES);
                if m.is_dir(&to) {
                    continue;
                }
                Step::Rename(some_file(rng), to)
            }
            72..=74 if dirs.len() > 1 => {
                let from = dirs[rng.usize(1..dirs.len())].clone();
                let to = in_dir(rng, &DIR_NAMES);
                if under(&to, &from) || to == from || m.file_at(&to).is_some() {
                    continue;
                }
                Step::Rename(from, to)
            }
            75..=80 if !files.is_empty() => Step::Unlink(some_file(rng)),
            81..=88 => {
                let p = in_dir(rng, &DIR_NAMES);
                if m.file_at(&p).is_some() {
                    continue;
                }
                Step::Mkdir(p)
            }
            89..=95 if dirs.len() > 1 => Step::Rmdir(dirs[rng.usize(1..dirs.len())].clone()),
            96..=97 => Step::Remount,
            _ => continue,
        };
        return step;
    }
}

/// Runs `run.steps` random steps against `driver` and the model; panics with the seed, the
/// step and both states at the first difference. Returns how many steps failed (with
/// faults) and how many steps ran.
pub fn run<D: Driver>(driver: &mut D, run: &Run) -> (usize, usize) {
    let mut rng = fastrand::Rng::with_seed(run.seed);
    let mut model = Model::default();
    let mut handles: Vec<D::Handle> = Vec::new();
    let mut failed = 0;
    let mut history: Vec<String> = Vec::new();
    for i in 0..run.steps {
        let step = generate(&model, &mut rng, run.max_write);
        if let Step::Remount = step {
            // Every handle is closed first, as the model says.
            while !handles.is_empty() {
                let close = Step::Close(0);
                history.push(format!("{i}: {close:?} (before the remount)"));
                let got = driver.close(handles.remove(0));
                failed += check(driver, &mut model, &close, got, run, &history);
            }
            history.push(format!("{i}: Remount"));
            driver.remount();
            let seen = driver.observe();
            if !model.matches(&seen) {
                fail(
                    run.seed,
                    &history,
                    format!(
                        "after the remount:\n{}",
                        differences(&seen, &model.expected())
                    ),
                );
            }
            check_service(driver, &model, run.seed, &history);
            continue;
        }
        history.push(format!("{i}: {}", describe(&step)));
        let got = match &step {
            Step::Create(p) => driver.create(p).map(|h| handles.push(h)),
            Step::Open(p, t) => driver.open(p, *t).map(|h| handles.push(h)),
            Step::Write(h, off, data) => driver.write(&handles[*h], *off, data),
            Step::Ftruncate(h, size) => driver.ftruncate(&handles[*h], *size),
            Step::Truncate(p, size) => driver.truncate(p, *size),
            Step::Fsync(h) => driver.fsync(&handles[*h]),
            Step::Close(h) => driver.close(handles.remove(*h)),
            Step::Rename(a, b) => driver.rename(a, b),
            Step::Unlink(p) => driver.unlink(p),
            Step::Mkdir(p) => driver.mkdir(p),
            Step::Rmdir(p) => driver.rmdir(p),
            Step::Remount => unreachable!(),
        };
        let outcome = format!(" -> {got:?}");
        failed += check(driver, &mut model, &step, got, run, &history);
        if let Some(last) = history.last_mut() {
            last.push_str(&outcome);
        }
    }
    (failed, run.steps)
}

/// Applies `step` to the model and compares: the result, then what the driver shows.
/// Returns 1 if the step failed where the model expected success (a fault), else 0.
fn check<D: Driver>(
    driver: &mut D,
    model: &mut Model,
    step: &Step,
    got: Result<(), Errno>,
    run: &Run,
    history: &[String],
) -> usize {
    let seed = run.seed;
    let before = model.clone();
    let want = model.apply(step);
    let seen = driver.observe();
    match (&want, &got) {
        (Ok(()), Err(errno)) if run.faults_allowed => {
            let mut candidates = before.after_failure(step, model);
            if let Step::Rename(from, to) = step {
                if before.is_dir(from) {
                    // Every file in the old place or the new (all old: as before; all new:
                    // as after), and the directories as their markers now are.
                    let markers = driver.service_markers();
                    candidates = before
                        .follow_split(from, to, &seen, &markers)
                        .into_iter()
                        .collect();
                }
            }
            match candidates.into_iter().find(|m| m.matches(&seen)) {
                Some(m) => {
                    *model = m;
                    if std::env::var_os("MODEL_TRACE").is_some() {
                        eprintln!(
                            "{}: failed ({errno}); now {:?}",
                            describe(step),
                            model.expected().keys().collect::<Vec<_>>()
                        );
                    }
                    1
                }
                None => fail(
                    seed,
                    history,
                    format!(
                        "{} failed ({errno}), and the mount is neither as before nor as after it\n\
                         against before:\n{}\nagainst after:\n{}",
                        describe(step),
                        differences(&seen, &before.expected()),
                        differences(&seen, &model.expected())
                    ),
                ),
            }
        }
        // Refused either way; a fault may change the errno (it came first).
        (Err(_), Err(_)) if run.faults_allowed && model.matches(&seen) => usize::from(want != got),
        _ => {
            if want != got {
                fail(
                    seed,
                    history,
                    format!("{}: got {got:?}, the model says {want:?}", describe(step)),
                );
            }
            if !model.matches(&seen) {
                // A file a failed rename may have replaced shows the copy once it is closed.
                match model
                    .settle_displaced()
                    .into_iter()
                    .find(|m| m.matches(&seen))
                {
                    Some(m) => *model = m,
                    None => fail(
                        seed,
                        history,
                        format!(
                            "after {}:\n{}",
                            describe(step),
                            differences(&seen, &model.expected())
                        ),
                    ),
                }
            }
            0
        }
    }
}

/// Every file the model has (none is open: after a remount) is in the service as committed.
fn check_service<D: Driver>(driver: &mut D, model: &Model, seed: u64, history: &[String]) {
    let blobs = driver.service_files();
    for (path, id) in &model.names {
        let f = &model.files[id];
        let held = blobs.get(path).cloned();
        if f.committed.len() != 1 || f.committed.iter().next() != Some(&held) {
            fail(
                seed,
                history,
                format!(
                    "the service holds {path} as {:?}, the model says {:?}",
                    held.as_ref().map(|b| b.len()),
                    f.committed
                        .iter()
                        .map(|c| c.as_ref().map(|b| b.len()))
                        .collect::<Vec<_>>()
                ),
            );
        }
        if f.content != held.unwrap_or_default() {
            fail(
                seed,
                history,
                format!("the service holds other bytes for {path}"),
            );
        }
    }
    for name in blobs.keys() {
        if !model.names.contains_key(name) && !model.allowed_copy(name) {
            fail(
                seed,
                history,
                format!("the service holds an extra file {name:?}"),
            );
        }
    }
}

/// The paths where `seen` and `want` differ, briefly (lengths and the first differing byte).
fn differences(seen: &BTreeMap<String, Seen>, want: &BTreeMap<String, Option<Seen>>) -> String {
    let brief = |s: Option<&Seen>| match s {
        None => "absent".to_string(),
        Some(Seen::Dir) => "a directory".to_string(),
        Some(Seen::File(d)) => format!("a file of {} bytes", d.len()),
        Some(Seen::Unreadable(what, e)) => format!("unreadable ({what}: errno {e})"),
    };
    let mut out = Vec::new();
    let paths: BTreeSet<&String> = seen.keys().chain(want.keys()).collect();
    for p in paths {
        let s = seen.get(p);
        let w = want.get(p);
        let same = match (s, w) {
            (Some(s), Some(Some(w))) => s == w,
            (Some(Seen::File(_)), Some(None)) => true,
            (None, None) => true,
            _ => false,
        };
        if same {
            continue;
        }
        let at = match (s, w) {
            (Some(Seen::File(a)), Some(Some(Seen::File(b)))) => a
                .iter()
                .zip(b)
                .position(|(x, y)| x != y)
                .map(|i| format!(", first difference at byte {i}"))
                .unwrap_or_default(),
            _ => String::new(),
        };
        let w = match w {
            None => "absent".to_string(),
            Some(None) => "a file (content unknown)".to_string(),
            Some(Some(w)) => brief(Some(w)),
        };
        out.push(format!(
            "  {p}: the mount shows {}, the model {w}{at}",
            brief(s)
        ));
    }
    out.join("\n")
}

/// Stops the run with the seed, what differs and the last steps.
fn fail(seed: u64, history: &[String], what: String) -> ! {
    let tail = history.len().saturating_sub(30);
    panic!(
        "seed {seed}: {what}\nlast steps:\n{}",
        history[tail..].join("\n")
    );
}

fn describe(step: &Step) -> String {
    match step {
        Step::Write(h, off, data) => format!("Write(handle {h}, at {off}, {} bytes)", data.len()),
        other => format!("{other:?}"),
    }
}
