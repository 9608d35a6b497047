//! `blobmount mount`: the checks before mounting, the FUSE session, and the way out (SIGTERM,
//! SIGINT or an unmount: stop taking changes, commit open files, unmount, exit).

pub mod checks;
pub mod daemon;
pub mod kernel;
pub mod mountinfo;
mod notify;
pub mod recover;
mod shutdown;
pub mod state;
pub mod unmount;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use fuser::{Config, MountOption, SessionACL};
use time::OffsetDateTime;

use crate::blob::rest::RestClient;
use crate::blob::retry::RetryPolicy;
use crate::blob::ContainerUrl;
use crate::fs::upload::journal::JournalDir;
use crate::fs::{Fs, FsConfig};
use crate::fuse::BlobFuse;
use crate::fuse_tuning::Tuning;
use crate::token::refresh::{self, RefreshConfig};
use crate::token::source;
use crate::token::Credential;
pub use checks::{check_container, check_mountpoint, check_target, Target};
use shutdown::{Shutdown, Signals};

/// Everything `mount` needs, resolved from the command line, the config file and defaults.
#[derive(Debug, Clone)]
pub struct MountOptions {
    pub sas_url: String,
    pub mountpoint: PathBuf,
    /// The `[mount.NAME]` this mount comes from, if any.
    pub name: Option<String>,
    pub read_only: bool,
    pub uid: u32,
    pub gid: u32,
    pub file_mode: u16,
    pub dir_mode: u16,
    pub allow_other: bool,
    pub allow_root: bool,
    pub allow_non_empty: bool,
    pub noexec: bool,
    pub cache_size: u64,
    pub block_size: u64,
    pub metadata_ttl: Duration,
    /// Small files fetched ahead of a program reading a directory in order (0: none).
    pub prefetch_files: usize,
    pub write_buffer: u64,
    /// `--write-back`: close returns before the commit (None: once committed).
    pub write_back: Option<crate::fs::write_back::WriteBackConfig>,
    pub staging_dir: PathBuf,
    pub sas_file: Option<PathBuf>,
    pub sas_command: Option<String>,
    pub sas_command_timeout: Duration,
    pub refresh_before: Option<Duration>,
    pub refresh_interval: Duration,
    /// No answer for this long: the request is given up and retried.
    pub request_timeout: Duration,
    pub shutdown_timeout: Duration,
    pub metrics_addr: Option<SocketAddr>,
    /// `BLOBMOUNT_SAS`, if set.
    pub env_token: Option<String>,
}

impl MountOptions {
    /// Where new tokens come from, if anywhere.
    fn token_source(&self) -> Option<source::TokenSource> {
        match (&self.sas_file, &self.sas_command) {
            (Some(path), _) => Some(source::TokenSource::File(path.clone())),
            (None, Some(command)) => Some(source::TokenSource::Command {
                command: command.clone(),
                timeout: self.sas_command_timeout,
            }),
            (None, None) => None,
        }
    }

    /// Makes every path absolute, for a daemon that will run in `/`.
    pub fn make_paths_absolute(&mut self) {
        for p in [
            Some(&mut self.mountpoint),
            Some(&mut self.staging_dir),
            self.sas_file.as_mut(),
        ]
        .into_iter()
        .flatten()
        {
            if let Ok(abs) = std::path::absolute(&*p) {
                *p = abs;
            }
        }
    }
}

/// A failed check or mount: one line for the user, and the exit code.
#[derive(Debug)]
pub struct MountError {
    pub message: String,
    pub code: i32,
}

impl MountError {
    pub fn usage(message: impl Into<String>) -> Self {
        MountError {
            message: message.into(),
            code: 2,
        }
    }

    pub fn failed(message: impl Into<String>) -> Self {
        MountError {
            message: message.into(),
            code: 1,
        }
    }
}

/// Who is told that the mount is up: systemd (Type=notify), and the `blobmount mount` waiting
/// for its daemon.
#[derive(Default)]
pub struct Readiness {
    /// Set in a daemon: the pipe to the waiting command; the log moves to `log_file` or syslog.
    pub pipe: Option<daemon::ReadyPipe>,
    pub log_file: Option<PathBuf>,
    /// What the waiting command prints once the mount is ready (where the log went).
    pub notice: Option<String>,
}

impl Readiness {
    fn ready(&mut self, status: &str) {
        if let Some(pipe) = &mut self.pipe {
            if let Err(e) = crate::logging::detach(self.log_file.as_deref()) {
                tracing::warn!("cannot log to the log file: {e}");
            }
            daemon::detach_stdio();
            pipe.ready(self.notice.as_deref());
        } else {
            notify::ready(status);
        }
    }

    /// Reports a failure before the mount was ready; true when it went to the waiting command
    /// (which prints it), false when the caller should print it.
    pub fn failed(&mut self, e: &MountError) -> bool {
        match &mut self.pipe {
            Some(pipe) => {
                pipe.failed(e.code, &e.message);
                true
            }
            None => false,
        }
    }
}

/// Runs a mount: checks, mounts, says it is ready, serves until unmounted or signalled, then
/// commits what is open. Errors before the mount is ready are `Err`; after, the exit code
/// (0: everything was committed).
pub fn run(opts: MountOptions, readiness: &mut Readiness) -> Result<i32, MountError> {
    checks::check_sizes(&opts)?;
    let tuning = Tuning::from_env().map_err(MountError::usage)?;
    if let Some(path) = &readiness.log_file {
        crate::logging::check_log_file(path).map_err(|e| {
            MountError::failed(format!("cannot write the log file {}: {e}", path.display()))
        })?;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .thread_name("blobmount-io")
        .build()
        .map_err(|e| MountError::failed(format!("cannot start the I/O runtime: {e}")))?;
    let token_source = opts.token_source();
    let checked = check_everything(&opts, &rt, token_source.as_ref())?;
    let fs = new_fs(&opts, &checked)?;
    let journals = journal_dir(&opts, &checked);
    let Checked {
        target,
        mountpoint,
        credential,
        read_only,
    } = checked;
    serve_metrics(&opts, &rt, &fs)?;
    rt.spawn(fs.clone().relieve_write_pressure());
    rt.spawn(fs.clone().run_write_back());
    keep_token_fresh(&opts, &rt, token_source, &credential, &target.container);
    // Signal handlers go in before the mount appears: a SIGTERM right after mounting must
    // unmount, not kill the process and leave a dead mount behind.
    let signals = rt
        .block_on(async { Signals::new() })
        .map_err(|e| MountError::failed(format!("cannot install signal handlers: {e}")))?;
    let adapter = BlobFuse::new(fs.clone(), rt.handle().clone(), tuning);
    let config = fuse_config(&opts, &target.container, read_only, &tuning);
    checks::check_dev_fuse()?;
    let (session, unmounter) = kernel::mount(adapter, &mountpoint, &config, tuning.max_read)
        .map_err(|e| {
            let hint = if e.raw_os_error() == Some(libc::ENOENT)
                || e.kind() == std::io::ErrorKind::NotFound
            {
                " (is fuse3 installed? it provides fusermount3)"
            } else {
                ""
            };
            MountError::failed(format!(
                "cannot mount on {}: {e}{hint}",
                mountpoint.display()
            ))
        })?;
    let shutdown = Arc::new(Shutdown::new(
        fs.clone(),
        mountpoint.clone(),
        opts.shutdown_timeout,
    ));
    state::clean_stale();
    shutdown.files.serving(opts.shutdown_timeout);
    readiness.ready(&notify::status_line(&fs, &credential));
    // After the daemon's log has moved to its file or syslog: the first line there.
    tracing::info!(
        "mounted {} on {} ({})",
        target.container.display(),
        mountpoint.display(),
        if read_only { "read-only" } else { "read-write" }
    );
    if !read_only {
        // In the background: the mount serves meanwhile.
        rt.spawn(fs.clone().resume_left_behind(journals));
    }
    rt.spawn(notify::keep_status(
        fs.clone(),
        credential.clone(),
        shutdown.files.clone(),
    ));
    rt.spawn(shutdown::on_signals(
        signals,
        shutdown.clone(),
        unmounter,
        credential,
    ));
    let result = session.run();
    if let Err(e) = &result {
        tracing::error!("the FUSE session ended with an error: {e}");
        // A session that failed may leave its mount behind, dead: detach it.
        if mountinfo::mount_at(&mountpoint).is_some_and(|m| m.is_ours()) {
            checks::lazy_unmount(&mountpoint);
        }
    }
    // Unmounted from outside (umount, fusermount3 -u): commit what is left. Unless a signal
    // started the shutdown: its task finishes it and exits the process.
    if !shutdown.begin() {
        loop {
            std::thread::park();
        }
    }
    tracing::info!("{} was unmounted", mountpoint.display());
    let report = rt.block_on(shutdown.commit());
    let code = shutdown.finish(&report);
    rt.shutdown_background();
    Ok(if result.is_err() { code.max(1) } else { code })
}

/// What the checks before mounting established.
struct Checked {
    target: Target,
    mountpoint: PathBuf,
    credential: Arc<Credential>,
    /// Read-only by request, or because the SAS cannot write.
    read_only: bool,
}

/// The container and its first token (in the URL, else `BLOBMOUNT_SAS`, else from the file or
/// command), checked; and the token of the URL, if it had one.
pub(crate) fn check_token(
    opts: &MountOptions,
    rt: &tokio::runtime::Runtime,
    token_source: Option<&source::TokenSource>,
) -> Result<(Target, Option<String>), MountError> {
    let (_, url_token) = ContainerUrl::parse(&opts.sas_url).map_err(MountError::usage)?;
    // The first token: in the URL, else BLOBMOUNT_SAS, else from the file or command.
    let first: Option<String> = match (&url_token, &opts.env_token, token_source) {
        (Some(_), _, _) => None,
        (None, Some(env), _) => Some(env.clone()),
        (None, None, Some(src)) => Some(
            rt.block_on(src.fetch())
                .map_err(|e| MountError::failed(format!("no SAS token: {e}")))?,
        ),
        (None, None, None) => None,
    };
    if let Some(path) = &opts.sas_file {
        checks::check_sas_file_mode(path);
    }
    let target = check_target(&opts.sas_url, first.as_deref(), OffsetDateTime::now_utc())?;
    Ok((target, url_token))
}

/// Every check before mounting, each refusal one line: the token (from the URL,
/// `BLOBMOUNT_SAS`, or the file or command), the mount point, the container (one request), the
/// staging directory.
fn check_everything(
    opts: &MountOptions,
    rt: &tokio::runtime::Runtime,
    token_source: Option<&source::TokenSource>,
) -> Result<Checked, MountError> {
    let (target, url_token) = check_token(opts, rt, token_source)?;
    let mountpoint = check_mountpoint(&opts.mountpoint, opts.allow_non_empty)?;
    let credential = Arc::new(Credential::new(target.token.query()));
    let check_client = RestClient::new(
        target.container.clone(),
        credential.clone(),
        RetryPolicy::short(),
    )
    .map_err(MountError::failed)?;
    rt.block_on(check_container(&target, &check_client))?;
    // Said once every check has passed: a refusal stays one line.
    if url_token.is_some() {
        tracing::warn!(
            "the SAS is on the command line, where every user can see it (ps): prefer --sas-file or BLOBMOUNT_SAS"
        );
    }
    let read_only = opts.read_only || !target.writable;
    if !target.writable && !opts.read_only {
        tracing::info!("the SAS token has no write permissions: mounting read-only");
    }
    if !read_only {
        std::fs::create_dir_all(&opts.staging_dir).map_err(|e| {
            MountError::failed(format!(
                "cannot use staging directory {}: {e}",
                opts.staging_dir.display()
            ))
        })?;
    }
    Ok(Checked {
        target,
        mountpoint,
        credential,
        read_only,
    })
}

/// Where this container's journals are kept under the staging directory.
fn journal_dir(opts: &MountOptions, checked: &Checked) -> PathBuf {
    crate::fs::upload::journal::container_dir(&opts.staging_dir, &checked.target.container)
}

/// The filesystem core of this mount, on the REST client it serves from.
fn new_fs(opts: &MountOptions, checked: &Checked) -> Result<Arc<Fs>, MountError> {
    let client = RestClient::with_read_timeout(
        checked.target.container.clone(),
        checked.credential.clone(),
        RetryPolicy::default(),
        opts.request_timeout,
    )
    .map_err(MountError::failed)?;
    // A writable mount keeps a journal of the files it writes, so that a restart finishes
    // what it had not committed (see fs::upload::journal).
    let journal = if checked.read_only {
        None
    } else {
        let dir = journal_dir(opts, checked);
        let j = JournalDir::create(&dir).map_err(|e| {
            MountError::failed(format!(
                "cannot use the staging journal in {}: {e}",
                dir.display()
            ))
        })?;
        Some(Arc::new(j))
    };
    Ok(Fs::new(
        Arc::new(client),
        FsConfig {
            uid: opts.uid,
            gid: opts.gid,
            file_mode: opts.file_mode,
            dir_mode: opts.dir_mode,
            metadata_ttl: opts.metadata_ttl,
            block_size: opts.block_size,
            cache_size: opts.cache_size,
            read_only: checked.read_only,
            prefetch_files: opts.prefetch_files,
            write_buffer: opts.write_buffer,
            staging_dir: opts.staging_dir.clone(),
            journal,
            // SAFETY: geteuid cannot fail.
            keep_owners: opts.allow_other || opts.allow_root || unsafe { libc::geteuid() } == 0,
            credential: Some(checked.credential.clone()),
            write_back: opts.write_back,
        },
    ))
}

/// With `--metrics-addr`: the metrics endpoint (refused at once if the address is taken).
fn serve_metrics(
    opts: &MountOptions,
    rt: &tokio::runtime::Runtime,
    fs: &Arc<Fs>,
) -> Result<(), MountError> {
    let Some(addr) = opts.metrics_addr else {
        return Ok(());
    };
    let listener = rt
        .block_on(tokio::net::TcpListener::bind(addr))
        .map_err(|e| {
            MountError::failed(format!(
                "cannot serve metrics on --metrics-addr {addr}: {e}"
            ))
        })?;
    let f = fs.clone();
    rt.spawn(crate::metrics::serve(
        listener,
        Arc::new(move || f.gauges()),
    ));
    tracing::info!("metrics at http://{addr}/metrics");
    Ok(())
}

/// Renews the token from its source before it expires; without a source, warns as expiry
/// nears.
fn keep_token_fresh(
    opts: &MountOptions,
    rt: &tokio::runtime::Runtime,
    token_source: Option<source::TokenSource>,
    credential: &Arc<Credential>,
    container: &ContainerUrl,
) {
    let refresh_cfg = RefreshConfig {
        before: opts.refresh_before,
        interval: opts.refresh_interval,
    };
    match token_source {
        Some(src) => {
            credential.set_refreshable(true);
            rt.spawn(refresh::run(
                credential.clone(),
                src,
                container.clone(),
                false,
                refresh_cfg,
            ));
        }
        None => {
            rt.spawn(refresh::warn_expiry(credential.clone(), refresh_cfg));
        }
    }
}

/// The kernel mount options.
fn fuse_config(
    opts: &MountOptions,
    container: &ContainerUrl,
    read_only: bool,
    tuning: &Tuning,
) -> Config {
    let mut config = Config::default();
    config.mount_options = vec![
        MountOption::FSName(format!(
            "blobmount:{}/{}",
            container.account, container.container
        )),
        MountOption::Subtype("blobmount".into()),
        if read_only {
            MountOption::RO
        } else {
            MountOption::RW
        },
        // Blob metadata is writable by anyone holding the SAS: a mode with setuid bits, or a
        // device, must never grant anything on this machine.
        MountOption::NoDev,
        MountOption::NoSuid,
        if opts.noexec {
            MountOption::NoExec
        } else {
            MountOption::Exec
        },
        MountOption::DefaultPermissions,
        MountOption::CUSTOM(format!("max_read={}", tuning.max_read)),
    ];
    config.acl = if opts.allow_other {
        SessionACL::All
    } else if opts.allow_root {
        SessionACL::RootAndOwner
    } else {
        SessionACL::Owner
    };
    config.n_threads = Some(tuning.threads);
    config.clone_fd = tuning.clone_fd;
    config
}
