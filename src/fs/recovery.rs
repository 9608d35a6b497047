//! Local copies of files that could not be committed: a commit that failed for good (at the
//! last close) or did not finish by the end of the shutdown leaves the file's content in a
//! private directory, `blobmount-recovered-<UTC>` in the staging directory, named in the log.

use std::path::{Component, Path, PathBuf};

use super::upload::Staging;

/// A recovery directory for now: `DIR/blobmount-recovered-<UTC time>` (created when a file is
/// saved in it).
pub fn directory(staging_dir: &Path) -> PathBuf {
    let fmt = time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");
    let stamp = time::OffsetDateTime::now_utc()
        .format(&fmt)
        .unwrap_or_default();
    staging_dir.join(format!("blobmount-recovered-{stamp}"))
}

/// Writes a staging's whole content to `dir/NAME` (private: mode 0600, in 0700 directories;
/// a name already taken gets `.2`, `.3`… appended). Gives the file's path.
pub async fn save_locally(s: &mut Staging, name: &str, dir: &Path) -> Result<PathBuf, String> {
    use std::io::Write;
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    // The blob's path, when every part of it is a plain name; else one flat name.
    let relative = if Path::new(name)
        .components()
        .all(|c| matches!(c, Component::Normal(_)))
    {
        PathBuf::from(name)
    } else {
        PathBuf::from(name.replace('/', "_"))
    };
    let wanted = dir.join(relative);
    let parent = wanted.parent().unwrap_or(dir);
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(parent)
        .map_err(|e| format!("{}: {e}", parent.display()))?;
    let mut n = 1;
    let (mut file, path) = loop {
        let path = match n {
            1 => wanted.clone(),
            n => PathBuf::from(format!("{}.{n}", wanted.display())),
        };
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
        {
            Ok(f) => break (f, path),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && n < 100 => n += 1,
            Err(e) => return Err(format!("{}: {e}", path.display())),
        }
    };
    let size = s.size();
    let mut offset = 0;
    while offset < size {
        let n = (size - offset).min(4 << 20);
        let data = s.read(offset, n).await.map_err(|e| e.to_string())?;
        file.write_all(&data)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        offset += n;
    }
    file.sync_all()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(path)
}
