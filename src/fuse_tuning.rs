//! The kernel interface's settings: FUSE reader threads, cloned `/dev/fuse` descriptors, the
//! largest read request, the kernel's background queue, readdirplus. The defaults are what the
//! study in docs/PERFORMANCE.md chose; the environment variable `BLOBMOUNT_FUSE_TUNING`
//! overrides them, for measurements only (`scripts/bench.sh` with `BENCH_FUSE_STUDY=1`), e.g.
//! `threads=1,clone_fd=0,max_read=128K,max_background=12,readdirplus=auto`.

use crate::size::parse_size;

/// The environment variable read by [`Tuning::from_env`].
pub const ENV: &str = "BLOBMOUNT_FUSE_TUNING";

/// How readdir answers the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readdirplus {
    /// Every batch carries attributes (`ls -l` then needs no lookup per entry).
    Always,
    /// The kernel's heuristic: attributes only while lookups follow the listing.
    Auto,
    /// Names only: every entry is looked up.
    Off,
}

/// Kernel-interface settings of one mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tuning {
    /// Threads reading requests from `/dev/fuse` (each hands them to tokio).
    pub threads: usize,
    /// Each thread reads its own clone of the descriptor (FUSE_DEV_IOC_CLONE).
    pub clone_fd: bool,
    /// Largest read (and readahead) the kernel sends in one request, in bytes.
    pub max_read: u32,
    /// Requests the kernel keeps in flight in the background (readahead, async reads).
    pub max_background: u16,
    pub readdirplus: Readdirplus,
}

impl Default for Tuning {
    fn default() -> Self {
        Tuning {
            threads: 4,
            clone_fd: false,
            max_read: 1 << 20,
            max_background: 64,
            readdirplus: Readdirplus::Always,
        }
    }
}

impl Tuning {
    /// The defaults, with what `BLOBMOUNT_FUSE_TUNING` sets, if it is set.
    pub fn from_env() -> Result<Tuning, String> {
        match std::env::var(ENV) {
            Ok(v) => Tuning::parse(&v),
            Err(_) => Ok(Tuning::default()),
        }
    }

    /// Parses `key=value` pairs separated by commas over the defaults.
    pub fn parse(text: &str) -> Result<Tuning, String> {
        let mut t = Tuning::default();
        for pair in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (key, value) = pair
                .split_once('=')
                .ok_or_else(|| format!("{ENV}: {pair:?} is not key=value"))?;
            let bad = |what: &str| format!("{ENV}: {key}={value:?}: {what}");
            match key {
                "threads" => {
                    t.threads = value
                        .parse()
                        .ok()
                        .filter(|n| (1..=64).contains(n))
                        .ok_or_else(|| bad("expected 1 to 64"))?
                }
                "clone_fd" => t.clone_fd = parse_bool(value).ok_or_else(|| bad("expected 0 or 1"))?,
                "max_read" => {
                    let n = parse_size(value).map_err(|e| bad(&e))?;
                    t.max_read = u32::try_from(n)
                        .ok()
                        .filter(|n| (4096..=(1 << 20)).contains(n))
                        .ok_or_else(|| bad("expected 4K to 1M"))?
                }
                "max_background" => {
                    t.max_background = value
                        .parse()
                        .ok()
                        .filter(|n| *n >= 1)
                        .ok_or_else(|| bad("expected 1 to 65535"))?
                }
                "readdirplus" => {
                    t.readdirplus = match value {
                        "always" => Readdirplus::Always,
                        "auto" => Readdirplus::Auto,
                        "off" => Readdirplus::Off,
                        _ => return Err(bad("expected always, auto or off")),
                    }
                }
                _ => {
                    return Err(format!(
                        "{ENV}: unknown key {key:?} (threads, clone_fd, max_read, max_background, readdirplus)"
                    ))
                }
            }
        }
        Ok(t)
    }
}

fn parse_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "true" | "yes" | "on" => Some(true),
        "0" | "false" | "no" | "off" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_parse_over_the_defaults_and_bad_ones_say_why() {
        assert_eq!(Tuning::parse("").unwrap(), Tuning::default());
        let t =
            Tuning::parse("threads=1, clone_fd=1,max_read=128K,max_background=12,readdirplus=auto")
                .unwrap();
        assert_eq!(
            t,
            Tuning {
                threads: 1,
                clone_fd: true,
                max_read: 128 << 10,
                max_background: 12,
                readdirplus: Readdirplus::Auto,
            }
        );
        for (bad, says) in [
            ("threads=0", "expected 1 to 64"),
            ("max_read=2M", "expected 4K to 1M"),
            ("clone_fd=maybe", "expected 0 or 1"),
            ("readdir=auto", "unknown key"),
            ("threads", "not key=value"),
        ] {
            let e = Tuning::parse(bad).unwrap_err();
            assert!(e.contains(says) && e.starts_with(ENV), "{bad}: {e}");
        }
    }
}
