//! Extended attributes: the `user.*` namespace, kept as blob metadata.
//!
//! Azure metadata names are C# identifiers compared without regard to case, and values are
//! HTTP header text, so neither can hold an attribute as it is. An attribute `user.NAME` is
//! the metadata entry `xattr_<NAME in lowercase hex>`, its value in base64 (`-` for an empty
//! value, which a header cannot carry): any bytes round-trip, and other metadata (other
//! tools', blobmount's own `mode`, `mtime`...) is never taken for an attribute.
//!
//! Azure keeps at most 8 KiB of metadata per blob (names and values): an attribute that
//! cannot fit even alone is refused with E2BIG, one that does not fit beside the others with
//! ENOSPC. Other namespaces (`security.*`, `system.*`, `trusted.*`) are not kept: reads find
//! nothing (ENODATA), writes are refused (ENOTSUP), as on a filesystem without them.

use std::collections::HashMap;

use base64::Engine;

use super::error::FsError;
use super::Fs;

/// What Azure allows per blob: names and values of all metadata together.
pub const METADATA_LIMIT: usize = 8 * 1024;
/// Room left for blobmount's own metadata (mode, owner, times, markers) and other tools'.
const RESERVED: usize = 512;
const PREFIX: &str = "xattr_";
const NAMESPACE: &str = "user.";

/// Whether attribute `name` can be kept (a `user.*` one): reads of any other find nothing,
/// without looking at the file (the FUSE layer answers them at once, see `src/fuse.rs`).
pub fn is_kept(name: &[u8]) -> bool {
    key_of(name).is_some()
}

/// The metadata key of attribute `name` (`user.` included), if it is a `user.*` one.
fn key_of(name: &[u8]) -> Option<String> {
    let rest = name.strip_prefix(NAMESPACE.as_bytes())?;
    if rest.is_empty() {
        return None;
    }
    let mut key = String::with_capacity(PREFIX.len() + 2 * rest.len());
    key.push_str(PREFIX);
    for b in rest {
        key.push_str(&format!("{b:02x}"));
    }
    Some(key)
}

/// Whether a metadata key holds an extended attribute.
pub fn is_attribute_key(key: &str) -> bool {
    name_of(key).is_some()
}

/// The attribute name a metadata key stands for, if it stands for one.
fn name_of(key: &str) -> Option<Vec<u8>> {
    let hex = key
        .get(..PREFIX.len())?
        .eq_ignore_ascii_case(PREFIX)
        .then(|| &key[PREFIX.len()..])?;
    if hex.is_empty() || hex.len() % 2 != 0 {
        return None;
    }
    let mut name = NAMESPACE.as_bytes().to_vec();
    for i in (0..hex.len()).step_by(2) {
        name.push(u8::from_str_radix(hex.get(i..i + 2)?, 16).ok()?);
    }
    Some(name)
}

fn encode(value: &[u8]) -> String {
    if value.is_empty() {
        "-".to_string()
    } else {
        base64::engine::general_purpose::STANDARD.encode(value)
    }
}

fn decode(text: &str) -> Option<Vec<u8>> {
    if text == "-" {
        return Some(Vec::new());
    }
    base64::engine::general_purpose::STANDARD.decode(text).ok()
}

fn metadata_size(m: &HashMap<String, String>) -> usize {
    m.iter().map(|(k, v)| k.len() + v.len()).sum()
}

/// setxattr's flags: what must hold of the name before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetMode {
    /// Create or replace.
    Any,
    /// XATTR_CREATE: EEXIST if it exists.
    Create,
    /// XATTR_REPLACE: ENODATA if it does not.
    Replace,
}

impl SetMode {
    /// From setxattr(2)'s flags.
    pub fn from_flags(flags: i32) -> Result<SetMode, FsError> {
        match flags {
            0 => Ok(SetMode::Any),
            libc::XATTR_CREATE => Ok(SetMode::Create),
            libc::XATTR_REPLACE => Ok(SetMode::Replace),
            _ => Err(FsError::Invalid),
        }
    }
}

impl Fs {
    /// getxattr(2): the value of attribute `name`.
    pub async fn getxattr(&self, ino: u64, name: &[u8]) -> Result<Vec<u8>, FsError> {
        let Some(key) = key_of(name) else {
            return Err(FsError::NoAttribute);
        };
        let m = self.read_metadata(ino).await?;
        m.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(&key))
            .and_then(|(_, v)| decode(v))
            .ok_or(FsError::NoAttribute)
    }

    /// listxattr(2): the names of the attributes, each followed by a NUL.
    pub async fn listxattr(&self, ino: u64) -> Result<Vec<u8>, FsError> {
        let m = self.read_metadata(ino).await?;
        let mut names: Vec<Vec<u8>> = m.keys().filter_map(|k| name_of(k)).collect();
        names.sort();
        let mut out = Vec::new();
        for n in names {
            out.extend_from_slice(&n);
            out.push(0);
        }
        Ok(out)
    }

    /// setxattr(2).
    pub async fn setxattr(
        &self,
        ino: u64,
        name: &[u8],
        value: &[u8],
        mode: SetMode,
    ) -> Result<(), FsError> {
        let Some(key) = key_of(name) else {
            return Err(FsError::NotSupported);
        };
        let encoded = encode(value);
        if key.len() + encoded.len() > METADATA_LIMIT - RESERVED {
            return Err(FsError::TooBig);
        }
        self.edit_metadata(ino, &|m| {
            let old = m.keys().find(|k| k.eq_ignore_ascii_case(&key)).cloned();
            match (mode, &old) {
                (SetMode::Create, Some(_)) => return Err(FsError::Exists),
                (SetMode::Replace, None) => return Err(FsError::NoAttribute),
                _ => {}
            }
            if let Some(k) = old {
                m.remove(&k);
            }
            m.insert(key.clone(), encoded.clone());
            // The reserve stays free for a later chmod, chown, touch or marker.
            if metadata_size(m) > METADATA_LIMIT - RESERVED {
                return Err(FsError::NoSpace);
            }
            Ok(())
        })
        .await
        .map(drop)
    }

    /// removexattr(2).
    pub async fn removexattr(&self, ino: u64, name: &[u8]) -> Result<(), FsError> {
        let Some(key) = key_of(name) else {
            return Err(FsError::NoAttribute);
        };
        self.edit_metadata(ino, &|m| {
            let old = m.keys().find(|k| k.eq_ignore_ascii_case(&key)).cloned();
            m.remove(&old.ok_or(FsError::NoAttribute)?);
            Ok(())
        })
        .await
        .map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_name_and_value_round_trip_and_other_metadata_is_no_attribute() {
        for name in [
            &b"user.a"[..],
            b"user.Mixed.Case",
            b"user.\xff\x00 /=",
            b"user.\xc3\xbc",
        ] {
            let key = key_of(name).unwrap();
            assert!(key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'));
            assert_eq!(key, key.to_ascii_lowercase(), "case cannot collide");
            assert_eq!(name_of(&key).as_deref(), Some(name));
        }
        for value in [&b""[..], b"x", b"\x00\xff binary \n", &[7u8; 300]] {
            assert_eq!(decode(&encode(value)).as_deref(), Some(value));
        }
        assert_eq!(key_of(b"user."), None);
        assert_eq!(key_of(b"security.selinux"), None);
        for k in ["mode", "xattr_", "xattr_0", "xattr_zz", "hdi_isfolder"] {
            assert_eq!(name_of(k), None, "{k}");
        }
    }
}
