//! The command line: `blobmount mount …` and `blobmount sas …`.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::mount::{self, MountOptions};
use crate::sas::cli::SasCommand;
use crate::size::{parse_duration, parse_size};

#[derive(Parser, Debug)]
#[command(
    name = "blobmount",
    version,
    about = "Mount an Azure Blob Storage container as a directory, authenticated by a SAS"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Mount a container: blobmount mount 'https://ACCOUNT.blob.core.windows.net/CONTAINER?SAS' DIR
    Mount(Box<MountArgs>),
    /// Inspect or generate SAS tokens.
    Sas {
        #[command(subcommand)]
        cmd: SasCommand,
    },
}

#[derive(Args, Debug)]
struct MountArgs {
    /// Container URL with its SAS token: https://ACCOUNT.blob.core.windows.net/CONTAINER?sv=…&sig=…
    /// (or path style http://127.0.0.1:10000/ACCOUNT/CONTAINER?… for Azurite).
    sas_url: String,
    /// Existing, empty directory to mount on.
    mountpoint: PathBuf,
    /// Stay in the foreground (required in this version), until unmounted or SIGINT/SIGTERM.
    #[arg(long)]
    foreground: bool,
    /// Mount read-only (also the case when the SAS has no write permission).
    #[arg(long)]
    read_only: bool,
    /// Owner of files and directories [default: the user running blobmount].
    #[arg(long)]
    uid: Option<u32>,
    /// Group of files and directories [default: the group of the user running blobmount].
    #[arg(long)]
    gid: Option<u32>,
    /// Permission bits of files, in octal.
    #[arg(long, default_value = "0644", value_parser = parse_mode)]
    file_mode: u16,
    /// Permission bits of directories, in octal.
    #[arg(long, default_value = "0755", value_parser = parse_mode)]
    dir_mode: u16,
    /// Let other users access the mount (needs user_allow_other in /etc/fuse.conf for non-root).
    #[arg(long)]
    allow_other: bool,
    /// Mount even if the mountpoint is not empty (its files are hidden while mounted).
    #[arg(long)]
    allow_non_empty: bool,
    /// Memory for cached blocks, for the whole mount (e.g. 512M, 1G).
    #[arg(long, default_value = "256M", value_parser = parse_size)]
    cache_size: u64,
    /// Size of the blocks read from the service and cached (e.g. 4M).
    #[arg(long, default_value = "4M", value_parser = parse_size)]
    block_size: u64,
    /// How long attributes, listings and missing names are trusted (e.g. 1s, 500ms, 1m; 0 = never).
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    metadata_ttl: Duration,
    /// Memory for data written but not yet uploaded, for the whole mount: writers wait when it is
    /// full (e.g. 256M).
    #[arg(long, default_value = "256M", value_parser = parse_size)]
    write_buffer: u64,
    /// Directory for the local copies of files being written (unlinked files, gone on exit)
    /// [default: $TMPDIR or /var/tmp].
    #[arg(long)]
    staging_dir: Option<PathBuf>,
    /// File holding the SAS token (or a full SAS URL); read again when it changes and on SIGHUP.
    /// With it, SAS_URL may be the plain container URL.
    #[arg(long, conflicts_with = "sas_command")]
    sas_file: Option<PathBuf>,
    /// Command printing a SAS token (or a full SAS URL) on stdout, run with `sh -c` at mount and
    /// before each expiry; its stderr goes to the log.
    #[arg(long)]
    sas_command: Option<String>,
    /// Time limit of one run of --sas-command.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    sas_command_timeout: Duration,
    /// How long before the token's expiry to get a new one [default: max(5m, 10% of its
    /// lifetime), at most half of it].
    #[arg(long, value_parser = parse_duration)]
    refresh_before: Option<Duration>,
    /// How often to get a new token when it has no expiry (stored access policy).
    #[arg(long, default_value = "15m", value_parser = parse_duration)]
    refresh_interval: Duration,
    /// Log level: error, warn, info, debug or trace [default: info, or RUST_LOG].
    #[arg(long)]
    log_level: Option<String>,
}

fn parse_mode(s: &str) -> Result<u16, String> {
    let v = u16::from_str_radix(s.trim_start_matches("0o"), 8)
        .map_err(|_| format!("invalid mode {s:?}: expected octal such as 0644"))?;
    if v > 0o7777 {
        return Err(format!("invalid mode {s:?}: at most 07777"));
    }
    Ok(v)
}

/// Logs go to stderr. `--log-level` sets blobmount's own level and keeps libraries at warn
/// (their debug output is not ours to vouch for); RUST_LOG directives are added to it, or used
/// alone without `--log-level`.
fn init_logging(level: Option<&str>) -> Result<(), String> {
    use tracing_subscriber::EnvFilter;
    let filter = match level {
        Some(l) => {
            let l = l.to_ascii_lowercase();
            if !["error", "warn", "info", "debug", "trace"].contains(&l.as_str()) {
                return Err(format!(
                    "invalid --log-level {l:?}: use error, warn, info, debug or trace"
                ));
            }
            // RUST_LOG directives, when given, come on top (e.g. RUST_LOG=fuser=debug).
            let extra = std::env::var("RUST_LOG").unwrap_or_default();
            EnvFilter::new(format!("warn,blobmount={l},{extra}").trim_end_matches(','))
        }
        None => EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| EnvFilter::new("warn,blobmount=info")),
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .try_init();
    Ok(())
}

fn run_mount(args: MountArgs) -> i32 {
    if let Err(e) = init_logging(args.log_level.as_deref()) {
        eprintln!("blobmount: {e}");
        return 2;
    }
    if !args.foreground {
        eprintln!(
            "blobmount: background mode is not available yet: pass --foreground (and run it under systemd, tmux or nohup)"
        );
        return 2;
    }
    // SAFETY: getuid/getgid cannot fail and have no preconditions.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    let opts = MountOptions {
        sas_url: args.sas_url,
        mountpoint: args.mountpoint,
        read_only: args.read_only,
        uid: args.uid.unwrap_or(uid),
        gid: args.gid.unwrap_or(gid),
        file_mode: args.file_mode,
        dir_mode: args.dir_mode,
        allow_other: args.allow_other,
        allow_non_empty: args.allow_non_empty,
        cache_size: args.cache_size,
        block_size: args.block_size,
        metadata_ttl: args.metadata_ttl,
        write_buffer: args.write_buffer,
        sas_file: args.sas_file,
        sas_command: args.sas_command,
        sas_command_timeout: args.sas_command_timeout,
        refresh_before: args.refresh_before,
        refresh_interval: args.refresh_interval,
        env_token: std::env::var("BLOBMOUNT_SAS")
            .ok()
            .filter(|t| !t.trim().is_empty()),
        staging_dir: args
            .staging_dir
            .or_else(|| std::env::var_os("TMPDIR").map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from("/var/tmp")),
    };
    match mount::run(opts) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("blobmount: {}", e.message);
            e.code
        }
    }
}

/// Entry point of the binary; returns the exit code.
pub fn main() -> i32 {
    limit_malloc_arenas();
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return code;
        }
    };
    match cli.command {
        Command::Mount(args) => run_mount(*args),
        Command::Sas { cmd } => match crate::sas::cli::run(cmd) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("blobmount: {e:#}");
                1
            }
        },
    }
}

/// Cache blocks (1 MiB and more) are served by mmap, so their memory goes back to the system
/// when they are evicted and the daemon's memory follows the cache budget; smaller buffers,
/// such as the HTTP client's read buffers (up to ~400 KiB, reallocated all the time), stay on
/// the heap, where reusing them costs no page faults. A fixed threshold also stops glibc from
/// raising it (and heaping the blocks) after the first large free.
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only tunes the allocator; called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1024 * 1024);
        libc::mallopt(libc::M_ARENA_MAX, 4);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes() {
        assert_eq!(parse_mode("0644").unwrap(), 0o644);
        assert_eq!(parse_mode("755").unwrap(), 0o755);
        assert!(parse_mode("999").is_err());
        assert!(parse_mode("17777").is_err());
    }

    #[test]
    fn the_documented_command_line_parses() {
        let cli = Cli::try_parse_from([
            "blobmount",
            "mount",
            "https://a.blob.core.windows.net/c?sv=x",
            "/mnt",
            "--foreground",
            "--read-only",
            "--uid",
            "1",
            "--gid",
            "2",
            "--file-mode",
            "0600",
            "--dir-mode",
            "0700",
            "--allow-other",
            "--cache-size",
            "512M",
            "--block-size",
            "4MiB",
            "--metadata-ttl",
            "2s",
            "--log-level",
            "debug",
        ])
        .unwrap();
        let Command::Mount(m) = cli.command else {
            panic!("not mount")
        };
        assert_eq!(m.cache_size, 512 << 20);
        assert_eq!(m.block_size, 4 << 20);
        assert_eq!(m.metadata_ttl, Duration::from_secs(2));
        assert_eq!(m.file_mode, 0o600);
        assert!(
            Cli::try_parse_from(["blobmount", "mount", "u", "/m", "--cache-size", "lots"]).is_err()
        );
    }
}
