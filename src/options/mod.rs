//! Mount settings, from three places, highest first: the command line (or `-o` options in the
//! mount(8) helper form), the `[mount.NAME]` table of the config file, the config file's top
//! level; then the built-in defaults.
//!
//! One definition serves all three: [`Settings`] is the clap definition of the options, every
//! field optional, and `-o name=value` or a config key `name = value` is parsed as
//! `--name=value` by the same definition, so every long option is accepted everywhere, with the
//! same syntax and the same error messages.

pub mod config;
pub mod helper;
pub mod resolve;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, CommandFactory, Parser};

use crate::size::{parse_duration, parse_size};

/// Every mount option. `None` means "not given here": a lower layer or the default decides.
#[derive(Args, Debug, Default, Clone, PartialEq)]
pub struct Settings {
    /// TOML file with defaults for every option and named mounts ([mount.NAME])
    /// [default when SOURCE is a name: /etc/blobmount/config.toml].
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Stay in the foreground until unmounted, logging to stderr (systemd Type=notify units do
    /// this). Without it, `mount` returns once the filesystem is mounted, and the daemon logs to
    /// --log-file or syslog. Also -f.
    #[arg(short = 'f', long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_name = "BOOL")]
    pub foreground: Option<bool>,
    /// Mount read-only (also the case when the SAS has no write permission). -o ro / -o rw.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_name = "BOOL")]
    pub read_only: Option<bool>,
    /// Owner of files and directories that record none in their metadata (chown and files
    /// created by other users do) [default: the user running blobmount].
    #[arg(long)]
    pub uid: Option<u32>,
    /// Group of files and directories that record none in their metadata [default: the
    /// group of the user running blobmount].
    #[arg(long)]
    pub gid: Option<u32>,
    /// Permission bits taken away from files (0666) and directories (0777), in octal, as for
    /// vfat; --file-mode and --dir-mode win over it.
    #[arg(long, value_parser = parse_mode)]
    pub umask: Option<u16>,
    /// Permission bits of files, in octal [default: 0644].
    #[arg(long, value_parser = parse_mode)]
    pub file_mode: Option<u16>,
    /// Permission bits of directories, in octal [default: 0755].
    #[arg(long, value_parser = parse_mode)]
    pub dir_mode: Option<u16>,
    /// Let other users access the mount (needs user_allow_other in /etc/fuse.conf for non-root).
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_name = "BOOL")]
    pub allow_other: Option<bool>,
    /// Let root access the mount too (besides the user who mounted it).
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_name = "BOOL")]
    pub allow_root: Option<bool>,
    /// Mount even if the mountpoint is not empty (its files are hidden while mounted).
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_name = "BOOL")]
    pub allow_non_empty: Option<bool>,
    /// Do not allow running programs from the mount. -o noexec / -o exec.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_name = "BOOL")]
    pub noexec: Option<bool>,
    /// Memory for cached blocks, for the whole mount (e.g. 512M, 1G) [default: 256M].
    #[arg(long, value_parser = parse_size, value_name = "SIZE")]
    pub cache_size: Option<u64>,
    /// Size of the blocks read from the service and cached (e.g. 4M) [default: 4M].
    #[arg(long, value_parser = parse_size, value_name = "SIZE")]
    pub block_size: Option<u64>,
    /// How long attributes, listings and missing names are trusted (e.g. 1s, 500ms, 1m; 0 =
    /// never) [default: 1s].
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub metadata_ttl: Option<Duration>,
    /// How many small files of a directory to fetch ahead of a program reading them one after
    /// another in listing order (cp -r, tar c, grep -r); 0 turns it off [default: 8].
    #[arg(long, value_name = "N")]
    pub prefetch_files: Option<usize>,
    /// Memory for data written but not yet uploaded, for the whole mount: writers wait when it
    /// is full (e.g. 256M) [default: 256M].
    #[arg(long, value_parser = parse_size, value_name = "SIZE")]
    pub write_buffer: Option<u64>,
    /// Close returns once the file and its journal record are on local disk; the commit
    /// follows in the background within DELAY (fsync still commits before returning). A
    /// failure after close can no longer be reported to the program: see docs/SEMANTICS.md
    /// [default: off; DELAY 5s].
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "5s", value_parser = parse_duration, value_name = "DELAY")]
    pub write_back: Option<Duration>,
    /// With --write-back: local disk for closed files not committed yet; writers wait beyond
    /// it while the oldest are committed (e.g. 2G) [default: 1G].
    #[arg(long, value_parser = parse_size, value_name = "SIZE")]
    pub write_back_limit: Option<u64>,
    /// Directory for the local copies of files being written and their journal, from which a
    /// restart finishes what was not committed [default: $STATE_DIRECTORY, /var/lib/blobmount
    /// for root, else $XDG_STATE_HOME/blobmount or ~/.local/state/blobmount].
    #[arg(long, value_name = "DIR")]
    pub staging_dir: Option<PathBuf>,
    /// File holding the SAS token (or a full SAS URL); read again when it changes and on
    /// SIGHUP. With it, SOURCE may be the plain container URL. Also $BLOBMOUNT_SAS_FILE.
    #[arg(long, conflicts_with = "sas_command", value_name = "FILE")]
    pub sas_file: Option<PathBuf>,
    /// Command printing a SAS token (or a full SAS URL) on stdout, run with `sh -c` at mount
    /// and before each expiry; its stderr goes to the log.
    #[arg(long, value_name = "COMMAND")]
    pub sas_command: Option<String>,
    /// Time limit of one run of --sas-command [default: 30s].
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub sas_command_timeout: Option<Duration>,
    /// How long before the token's expiry to get a new one [default: max(5m, 10% of its
    /// lifetime), at most half of it].
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub refresh_before: Option<Duration>,
    /// How often to get a new token when it has no expiry (stored access policy) [default: 15m].
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub refresh_interval: Option<Duration>,
    /// How long one request may wait for the service's answer before it is given up and
    /// retried (a stalled connection) [default: 30s].
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub request_timeout: Option<Duration>,
    /// On SIGTERM, SIGINT or unmount: how long to wait for open files to be committed before
    /// exiting anyway (and saying which were not) [default: 60s].
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub shutdown_timeout: Option<Duration>,
    /// Serve metrics in Prometheus text format at http://ADDR/metrics (e.g. 127.0.0.1:9180).
    #[arg(long, value_name = "ADDR")]
    pub metrics_addr: Option<SocketAddr>,
    /// Log level: error, warn, info, debug or trace [default: info, or RUST_LOG].
    #[arg(long, value_parser = log_levels(), ignore_case = true, value_name = "LEVEL")]
    pub log_level: Option<String>,
    /// Once detached (without --foreground), log to this file instead of syslog.
    #[arg(long, value_name = "FILE")]
    pub log_file: Option<PathBuf>,
}

macro_rules! over {
    ($upper:ident, $lower:ident; $($field:ident),* $(,)?) => {
        Settings { $($field: $upper.$field.or($lower.$field)),* }
    };
}

impl Settings {
    /// These settings, with the gaps filled from `lower`.
    pub fn over(self, lower: Settings) -> Settings {
        // A layer's umask decides its own modes first: `-o umask=077` wins over a file_mode
        // from the config file, as a umask given on its own line would.
        let (upper, mut lower) = (self.umask_applied(), lower.umask_applied());
        // A token source given here replaces the lower layer's, whichever kind it is.
        if upper.sas_file.is_some() || upper.sas_command.is_some() {
            lower.sas_file = None;
            lower.sas_command = None;
        }
        over!(upper, lower;
            config, foreground, read_only, uid, gid, umask, file_mode, dir_mode, allow_other,
            allow_root, allow_non_empty, noexec, cache_size, block_size, metadata_ttl,
            prefetch_files, write_buffer, write_back, write_back_limit, staging_dir, sas_file, sas_command, sas_command_timeout,
            refresh_before, refresh_interval, request_timeout, shutdown_timeout, metrics_addr,
            log_level, log_file)
    }

    /// The modes the umask leaves, where this layer gives none itself.
    fn umask_applied(mut self) -> Settings {
        if let Some(umask) = self.umask {
            self.file_mode.get_or_insert(0o666 & !umask);
            self.dir_mode.get_or_insert(0o777 & !umask);
        }
        self
    }

    /// Parses `--name=value` style arguments (from `-o` or a config file) into settings;
    /// `origin` says where they came from in the one-line error.
    pub fn from_long_args(args: &[String], origin: &str) -> Result<Settings, String> {
        let unknown: Vec<&str> = args
            .iter()
            .map(|a| a.trim_start_matches("--").split('=').next().unwrap_or(""))
            .filter(|name| !is_option(name))
            .collect();
        if !unknown.is_empty() {
            let names = option_names();
            let hints: Vec<String> = unknown
                .iter()
                .filter_map(|u| nearest(u, &names).map(|n| format!("{u}: did you mean {n}?")))
                .collect();
            return Err(format!(
                "unknown option{} in {origin}: {}{}",
                if unknown.len() > 1 { "s" } else { "" },
                unknown.join(", "),
                if hints.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", hints.join("; "))
                }
            ));
        }
        Layer::try_parse_from(args)
            .map(|l| l.settings)
            .map_err(|e| format!("{origin}: {}", one_line(&e)))
    }
}

/// Clap's definition of the settings alone, for parsing `-o` and config layers.
#[derive(Parser, Debug)]
#[command(no_binary_name = true, disable_help_flag = true)]
struct Layer {
    #[command(flatten)]
    settings: Settings,
}

/// The long names of the options (`cache-size`, …).
pub fn option_names() -> Vec<String> {
    Layer::command()
        .get_arguments()
        .filter_map(|a| a.get_long().map(str::to_string))
        .collect()
}

/// The known name closest to `name`, if it is close enough to be a typo (at most a third of
/// its letters wrong, and no more than 3).
pub fn nearest<'a>(name: &str, known: &'a [String]) -> Option<&'a str> {
    nearest_within(name, known, (name.chars().count() / 3).clamp(1, 3))
}

/// The known name closest to `name` within `limit` edits, if any.
pub fn nearest_within<'a>(name: &str, known: &'a [String], limit: usize) -> Option<&'a str> {
    known
        .iter()
        .map(|k| (edit_distance(name, k), k))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k.as_str())
}

/// Levenshtein distance between two short names.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diag = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let next = (row[j + 1] + 1)
                .min(row[j] + 1)
                .min(diag + usize::from(ca != *cb));
            diag = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
}

fn is_option(name: &str) -> bool {
    option_names().iter().any(|n| n == name)
}

/// The first line of a clap error, without its "error: " prefix and usage hints.
pub fn one_line(e: &clap::Error) -> String {
    let text = e.render().to_string();
    let first = text.lines().next().unwrap_or("invalid arguments").trim();
    first.strip_prefix("error: ").unwrap_or(first).to_string()
}

/// An octal mode such as 0644.
pub fn parse_mode(s: &str) -> Result<u16, String> {
    let v = u16::from_str_radix(s.trim_start_matches("0o"), 8)
        .map_err(|_| format!("invalid mode {s:?}: expected octal such as 0644"))?;
    if v > 0o7777 {
        return Err(format!("invalid mode {s:?}: at most 07777"));
    }
    Ok(v)
}

/// The log levels, as possible values: `--help` lists them and shell completions offer them.
fn log_levels() -> impl clap::builder::TypedValueParser<Value = String> {
    use clap::builder::TypedValueParser;
    clap::builder::PossibleValuesParser::new(["error", "warn", "info", "debug", "trace"])
        .map(|l| l.to_ascii_lowercase())
}

#[cfg(test)]
mod tests;
