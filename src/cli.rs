//! The command line: `blobmount mount|unmount|sas|completions|man …`, and the mount(8) helper
//! form `blobmount SOURCE MOUNTPOINT -o OPTIONS`.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, CommandFactory, Parser, Subcommand};

use crate::logging;
use crate::mount::{self, daemon, unmount, Readiness};
use crate::options::resolve::resolve;
use crate::options::{config, helper, Settings};
use crate::sas::cli::SasCommand;
use crate::size::parse_duration;

#[derive(Parser, Debug)]
#[command(
    name = "blobmount",
    version,
    about = "Mount an Azure Blob Storage container as a directory, authenticated by a SAS",
    after_help = "As a mount(8) helper: blobmount SOURCE MOUNTPOINT -o OPTIONS \
                  (mount -t fuse.blobmount SOURCE MOUNTPOINT -o OPTIONS, or an fstab line); \
                  every option of `blobmount mount` is accepted as -o name=value."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Mount a container: blobmount mount 'https://ACCOUNT.blob.core.windows.net/CONTAINER?SAS' DIR
    Mount(Box<MountArgs>),
    /// Commit open files and unmount: signals the mount's daemon and waits until it has exited.
    Unmount(UnmountArgs),
    /// Finish, without mounting, what mounts of a container that were killed or lost power
    /// left uncommitted in the staging journal (a mount of it does this by itself at start).
    Recover(Box<RecoverArgs>),
    /// Show every blobmount mount: where, which container, its daemon, token time left, files
    /// being written.
    #[command(visible_alias = "list")]
    Status,
    /// Inspect or generate SAS tokens.
    Sas {
        #[command(subcommand)]
        cmd: SasCommand,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions { shell: clap_complete::Shell },
    /// Print the man page (or, with --dir, write the pages of every command there).
    Man {
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
}

#[derive(Args, Debug)]
struct MountArgs {
    /// The container: https://ACCOUNT.blob.core.windows.net/CONTAINER?sv=…&sig=… (or without
    /// the token, given by --sas-file, --sas-command or BLOBMOUNT_SAS; path style
    /// http://127.0.0.1:10000/ACCOUNT/CONTAINER for Azurite), or the NAME of a [mount.NAME] in
    /// the config file.
    source: String,
    /// Existing, empty directory to mount on (a named mount may give it in the config file).
    mountpoint: Option<PathBuf>,
    /// mount(8)-style options, as in fstab and rclone: -o allow_other,ro,cache_size=1G (every
    /// option below is accepted as name=value; the options given by name win).
    #[arg(short = 'o', value_name = "OPTIONS", action = clap::ArgAction::Append)]
    options: Vec<String>,
    #[command(flatten)]
    settings: Settings,
}

impl MountArgs {
    /// The options given by name, over those given with -o.
    fn all_settings(&self) -> Result<Settings, String> {
        let long: Vec<String> = self
            .options
            .iter()
            .flat_map(|list| helper::long_args(list))
            .collect();
        let o = Settings::from_long_args(&long, "-o options")?;
        Ok(self.settings.clone().over(o))
    }
}

#[derive(Args, Debug)]
struct RecoverArgs {
    /// The container, as for `blobmount mount` (a SAS URL, or the NAME of a [mount.NAME]).
    source: String,
    #[command(flatten)]
    settings: Settings,
}

#[derive(Args, Debug)]
struct UnmountArgs {
    /// The mountpoint (a path: with a `/`, e.g. ./data, or an existing directory), or the NAME
    /// of a [mount.NAME] in the config file.
    #[arg(required_unless_present = "all")]
    target: Option<String>,
    /// Unmount every blobmount mount (one after another; the exit code is the worst).
    #[arg(long, conflicts_with = "target")]
    all: bool,
    /// Config file for a NAME [default: /etc/blobmount/config.toml].
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// How long to wait for the daemon to commit and exit [default: its --shutdown-timeout and
    /// 30 s more].
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    timeout: Option<Duration>,
}

/// Mounts, in the foreground or through a daemon; gives the exit code.
fn run_mount(source: &str, mountpoint: Option<PathBuf>, mut settings: Settings) -> i32 {
    if settings.sas_file.is_none() && settings.sas_command.is_none() {
        settings.sas_file = std::env::var_os("BLOBMOUNT_SAS_FILE")
            .filter(|f| !f.is_empty())
            .map(PathBuf::from);
    }
    let resolved = match resolve(source, mountpoint, settings) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("blobmount: {}", e.message);
            return e.code;
        }
    };
    logging::init(resolved.log_level.as_deref(), !resolved.foreground);
    let mut opts = resolved.opts;
    opts.env_token = std::env::var("BLOBMOUNT_SAS")
        .ok()
        .filter(|t| !t.trim().is_empty());
    let mut readiness = Readiness {
        pipe: None,
        log_file: resolved.log_file,
        notice: None,
    };
    if !resolved.foreground {
        opts.make_paths_absolute();
        if let Some(f) = &mut readiness.log_file {
            *f = std::path::absolute(&*f).unwrap_or_else(|_| f.clone());
        }
        if readiness.log_file.is_none() && !logging::syslog_available() {
            // Syslog would swallow every message: a file, and the terminal says where.
            let missing = format!(
                "no syslog on this machine ({} is missing)",
                logging::SYSLOG_SOCKET
            );
            readiness.notice = Some(match mount::state::fallback_log(&opts.mountpoint) {
                Ok(path) => {
                    let notice = format!("{missing}: the log goes to {}", path.display());
                    readiness.log_file = Some(path);
                    notice
                }
                Err(e) => format!(
                    "{missing}, and no private state directory for a log file ({e}): the daemon's log is lost; give --log-file"
                ),
            });
        }
        // The parent waits here for the daemon's answer, and exits with it.
        match daemon::fork() {
            Ok(pipe) => readiness.pipe = Some(pipe),
            Err(e) => {
                eprintln!("blobmount: {e}");
                return 1;
            }
        }
    }
    match mount::run(opts, &mut readiness) {
        Ok(code) => code,
        Err(e) => {
            if !readiness.failed(&e) {
                eprintln!("blobmount: {}", e.message);
            }
            e.code
        }
    }
}

/// `blobmount recover`: the journals of the container SOURCE names; gives the exit code.
fn run_recover(source: &str, mut settings: Settings) -> i32 {
    if settings.sas_file.is_none() && settings.sas_command.is_none() {
        settings.sas_file = std::env::var_os("BLOBMOUNT_SAS_FILE")
            .filter(|f| !f.is_empty())
            .map(PathBuf::from);
    }
    // No mount point is used: any will do for a URL (a NAME's comes from the config file).
    let mountpoint = crate::options::resolve::is_url(source).then(|| PathBuf::from("."));
    let resolved = match resolve(source, mountpoint, settings) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("blobmount: {}", e.message);
            return e.code;
        }
    };
    logging::init(resolved.log_level.as_deref(), false);
    let mut opts = resolved.opts;
    opts.env_token = std::env::var("BLOBMOUNT_SAS")
        .ok()
        .filter(|t| !t.trim().is_empty());
    match mount::recover::run(opts) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("blobmount: {}", e.message);
            e.code
        }
    }
}

fn run_unmount(args: UnmountArgs) -> i32 {
    let Some(name) = args.target.as_deref() else {
        return unmount_all(args.timeout);
    };
    let target = PathBuf::from(name);
    // A directory of that name is meant before a config name (`blobmount unmount data` in
    // the directory holding `data`).
    let mountpoint = if name.contains('/') || target.is_dir() {
        target
    } else {
        let path = args
            .config
            .unwrap_or_else(|| PathBuf::from(config::DEFAULT_PATH));
        match config::load(&path).and_then(|c| {
            c.mounts
                .get(name)
                .and_then(|m| m.mountpoint.clone())
                .ok_or_else(|| format!("no mountpoint for [mount.{}] in {}", name, path.display()))
        }) {
            Ok(p) => p,
            Err(e) => {
                eprintln!("blobmount: {e}");
                return 2;
            }
        }
    };
    match unmount::run(&mountpoint, args.timeout) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("blobmount: {}", e.message);
            e.code
        }
    }
}

/// `unmount --all`: every blobmount mount, the last mounted first (a mount inside another
/// goes before it).
fn unmount_all(timeout: Option<Duration>) -> i32 {
    let mounts = mount::mountinfo::ours();
    if mounts.is_empty() {
        println!("no blobmount mounts");
        return 0;
    }
    let mut code = 0;
    for m in mounts.iter().rev() {
        match unmount::run(std::path::Path::new(&m.mount_point), timeout) {
            Ok(()) => println!("unmounted {}", m.mount_point),
            Err(e) => {
                eprintln!("blobmount: {}", e.message);
                code = code.max(e.code);
            }
        }
    }
    code
}

/// `blobmount status`: one line per mount.
fn run_status() -> i32 {
    mount::state::clean_stale();
    let mounts = mount::mountinfo::ours();
    if mounts.is_empty() {
        println!("no blobmount mounts");
        return 0;
    }
    let rows: Vec<[String; 4]> = mounts
        .iter()
        .map(|m| {
            let path = std::path::Path::new(&m.mount_point);
            let state = mount::state::StateFiles::new(path);
            let container = m
                .source
                .strip_prefix(mount::mountinfo::SOURCE_PREFIX)
                .unwrap_or(&m.source)
                .to_string();
            let (pid, status) = match state.daemon() {
                Some(pid) => (
                    pid.to_string(),
                    match state.status() {
                        Some((line, age)) if age > Duration::from_secs(30) => {
                            format!("{line} (as of {}s ago)", age.as_secs())
                        }
                        Some((line, _)) => line,
                        None => "mounted".to_string(),
                    },
                ),
                None => match std::fs::metadata(path) {
                    Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => (
                        "-".to_string(),
                        "its daemon is gone: `blobmount unmount` cleans it".to_string(),
                    ),
                    // Mounted by another user, or without a state file.
                    _ => (
                        "?".to_string(),
                        "mounted (no status: another user's?)".to_string(),
                    ),
                },
            };
            [m.mount_point.clone(), container, pid, status]
        })
        .collect();
    let header = [
        "MOUNTPOINT".to_string(),
        "CONTAINER".to_string(),
        "PID".to_string(),
        "STATUS".to_string(),
    ];
    let width = |i: usize| {
        rows.iter()
            .chain([&header])
            .map(|r| r[i].chars().count())
            .max()
            .unwrap_or(0)
    };
    let (w0, w1, w2) = (width(0), width(1), width(2));
    for r in [&header].into_iter().chain(&rows) {
        println!("{:w0$}  {:w1$}  {:>w2$}  {}", r[0], r[1], r[2], r[3]);
    }
    0
}

fn print_man(dir: Option<PathBuf>) -> std::io::Result<()> {
    let cmd = Cli::command();
    match dir {
        Some(dir) => crate::man::write_all(cmd, &dir),
        None => crate::man::render_main(cmd, &mut std::io::stdout()),
    }
}

/// Whether the command line is the mount(8) helper form: run as mount.fuse.blobmount, or a
/// first argument that is neither a command nor an option.
fn is_helper_form(args: &[String]) -> bool {
    let program = args.first().map(|a| a.rsplit('/').next().unwrap_or(a));
    if matches!(program, Some("mount.fuse.blobmount" | "mount.blobmount")) {
        return true;
    }
    let Some(first) = args.get(1) else {
        return false;
    };
    let commands: Vec<String> = Cli::command()
        .get_subcommands()
        .flat_map(|c| {
            std::iter::once(c.get_name().to_string())
                .chain(c.get_all_aliases().map(str::to_string))
                .collect::<Vec<_>>()
        })
        .chain(["help".to_string()])
        .collect();
    if first.starts_with('-') || commands.contains(first) || args.len() <= 2 {
        return false;
    }
    // `blobmount umount /mnt`, `blobmount mnt URL DIR`: a misspelt command, not a SOURCE
    // (mount(8) always passes -o, and a SOURCE is a URL or a config name).
    // Two edits from a long command (mnt, umount), one from a short one (sas, man): a config
    // name such as "temp" or "ssd" stays a SOURCE.
    let near = |limit: usize, long: bool| {
        let known: Vec<String> = commands
            .iter()
            .filter(|c| (c.len() >= 5) == long)
            .cloned()
            .collect();
        crate::options::nearest_within(first, &known, limit).is_some()
    };
    let misspelt = !first.contains([':', '/'])
        && !args.iter().any(|a| a.starts_with("-o"))
        && (near(2, true) || near(1, false));
    !misspelt
}

/// Entry point of the binary; returns the exit code.
pub fn main() -> i32 {
    limit_malloc_arenas();
    let args: Vec<String> = std::env::args().collect();
    if is_helper_form(&args) {
        return match helper::parse(&args[1..]) {
            Ok(h) => run_mount(&h.source, Some(PathBuf::from(h.mountpoint)), h.settings),
            Err(e) => {
                eprintln!("blobmount: {e}");
                2
            }
        };
    }
    let cli = match Cli::try_parse_from(&args) {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return code;
        }
    };
    match cli.command {
        Command::Mount(m) => match m.all_settings() {
            Ok(s) => run_mount(&m.source, m.mountpoint, s),
            Err(e) => {
                eprintln!("blobmount: {e}");
                2
            }
        },
        Command::Unmount(u) => run_unmount(u),
        Command::Recover(r) => run_recover(&r.source, r.settings.clone()),
        Command::Status => run_status(),
        Command::Sas { cmd } => match crate::sas::cli::run(cmd) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("blobmount: {e:#}");
                1
            }
        },
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "blobmount",
                &mut std::io::stdout(),
            );
            0
        }
        Command::Man { dir } => match print_man(dir) {
            Ok(()) => 0,
            // `blobmount man | head`
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => 0,
            Err(e) => {
                eprintln!("blobmount: cannot write the man pages: {e}");
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

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
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
            "--shutdown-timeout=5s",
            "--metrics-addr",
            "127.0.0.1:9180",
        ])
        .unwrap();
        let Command::Mount(m) = cli.command else {
            panic!("not mount")
        };
        let s = m.settings;
        assert_eq!(s.cache_size, Some(512 << 20));
        assert_eq!(s.block_size, Some(4 << 20));
        assert_eq!(s.metadata_ttl, Some(Duration::from_secs(2)));
        assert_eq!(s.file_mode, Some(0o600));
        assert_eq!(s.foreground, Some(true));
        assert_eq!(s.read_only, Some(true));
        assert_eq!(s.allow_other, Some(true));
        assert!(
            Cli::try_parse_from(["blobmount", "mount", "u", "/m", "--cache-size", "lots"]).is_err()
        );
        assert!(
            Cli::try_parse_from(["blobmount", "mount", "u", "/m", "--log-level", "loud"]).is_err()
        );
    }

    #[test]
    fn mount_takes_dash_o_and_dash_f_as_other_fuse_tools_do() {
        let parse = |a: &[&str]| {
            let cli = Cli::try_parse_from(args(a)).unwrap();
            let Command::Mount(m) = cli.command else {
                panic!("not mount")
            };
            m.all_settings()
        };
        let s = parse(&[
            "blobmount",
            "mount",
            "u",
            "/m",
            "-o",
            "allow_other,ro",
            "-f",
            "-o",
            "cache_size=1G,metadata-ttl=5s",
            "--cache-size=2G",
        ])
        .unwrap();
        assert_eq!(s.allow_other, Some(true));
        assert_eq!(s.read_only, Some(true));
        assert_eq!(s.foreground, Some(true));
        assert_eq!(s.metadata_ttl, Some(Duration::from_secs(5)));
        assert_eq!(s.cache_size, Some(2 << 30), "the option given by name wins");
        let e = parse(&[
            "blobmount",
            "mount",
            "u",
            "/m",
            "-o",
            "cache_sise=1G,allow_otter",
        ])
        .unwrap_err();
        assert!(
            e.contains("cache-sise: did you mean cache-size?")
                && e.contains("allow-otter: did you mean allow-other?"),
            "{e}"
        );
        let e = parse(&["blobmount", "mount", "u", "/m", "-o", "frobnicate"]).unwrap_err();
        assert_eq!(e, "unknown option in -o options: frobnicate");
    }

    #[test]
    fn helper_form_is_recognised() {
        assert!(is_helper_form(&args(&[
            "blobmount",
            "data",
            "/mnt/x",
            "-o",
            "ro"
        ])));
        assert!(is_helper_form(&args(&[
            "blobmount",
            "https://a/b/c",
            "/mnt/x"
        ])));
        assert!(is_helper_form(&args(&[
            "/sbin/mount.fuse.blobmount",
            "data",
            "/mnt"
        ])));
        assert!(!is_helper_form(&args(&[
            "blobmount",
            "mount",
            "data",
            "/mnt"
        ])));
        assert!(!is_helper_form(&args(&[
            "blobmount",
            "sas",
            "inspect",
            "x"
        ])));
        assert!(!is_helper_form(&args(&["blobmount", "--version"])));
        // Misspelt commands are left to clap, which suggests the right one.
        assert!(!is_helper_form(&args(&["blobmount", "umount", "/mnt"])));
        assert!(!is_helper_form(&args(&[
            "blobmount",
            "mnt",
            "https://a/b/c",
            "/mnt"
        ])));
        assert!(is_helper_form(&args(&[
            "blobmount",
            "mnt",
            "/mnt",
            "-o",
            "rw"
        ])));
        // Config names near a short command stay names; aliases are commands.
        assert!(is_helper_form(&args(&["blobmount", "temp", "/mnt"])));
        assert!(is_helper_form(&args(&["blobmount", "ssd", "/mnt"])));
        assert!(!is_helper_form(&args(&["blobmount", "list", "--help"])));
        let e = Cli::try_parse_from(["blobmount", "umount", "/mnt"]).unwrap_err();
        assert!(e.to_string().contains("unmount"), "{e}");
        assert!(!is_helper_form(&args(&["blobmount", "mout"])));
    }

    #[test]
    fn man_page_and_completions_come_from_the_definitions() {
        let mut man = Vec::new();
        crate::man::render_main(Cli::command(), &mut man).unwrap();
        let man = String::from_utf8(man).unwrap();
        for section in [".SH EXAMPLES", ".SH ENVIRONMENT", ".SH FILES", ".SH FSTAB"] {
            assert!(man.contains(section), "no {section} in blobmount(1)");
        }
        // The config page points at mount(1) for the options the file may hold.
        assert!(crate::man::CONFIG_PAGE.contains("blobmount\\-mount"));
        let dir = tempfile::tempdir().unwrap();
        crate::man::write_all(Cli::command(), dir.path()).unwrap();
        for page in [
            "blobmount.1",
            "blobmount-mount.1",
            "blobmount-status.1",
            "blobmount.toml.5",
        ] {
            assert!(dir.path().join(page).exists(), "no {page}");
        }
        let main = std::fs::read_to_string(dir.path().join("blobmount.1")).unwrap();
        assert!(main.contains(".SH EXAMPLES"));
        let mut bash = Vec::new();
        clap_complete::generate(
            clap_complete::Shell::Bash,
            &mut Cli::command(),
            "blobmount",
            &mut bash,
        );
        let bash = String::from_utf8(bash).unwrap();
        assert!(bash.contains("--shutdown-timeout") && bash.contains("unmount"));
        // --log-level completes its level names.
        assert!(bash.contains("error warn info debug trace"), "{bash}");
    }

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
