//! `blobmount recover`: finishes, without mounting, what mounts of a container that are gone
//! left in their staging journals (see [`crate::fs::resume`]), then says what it did.

use std::sync::Arc;

use super::{check_token, MountError, MountOptions};
use crate::blob::rest::RestClient;
use crate::blob::retry::RetryPolicy;
use crate::fs::resume::{resume_all, ResumeProgress};
use crate::fs::upload::{journal, Grid, StagingArea, WriteBudget};
use crate::token::Credential;

/// Runs the recovery; the exit code is 0 when nothing was left in place, 1 otherwise.
pub fn run(opts: MountOptions) -> Result<i32, MountError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| MountError::failed(format!("cannot start the I/O runtime: {e}")))?;
    let token_source = opts.token_source();
    let (target, _) = check_token(&opts, &rt, token_source.as_ref())?;
    let dir = journal::container_dir(&opts.staging_dir, &target.container);
    if !dir.exists() {
        println!(
            "nothing to recover: no staging journal of {} in {}",
            target.container.display(),
            opts.staging_dir.display()
        );
        return Ok(0);
    }
    if !target.writable {
        return Err(MountError::failed(
            "the SAS token has no write permissions: files cannot be committed with it",
        ));
    }
    let credential = Arc::new(Credential::new(target.token.query()));
    let client = RestClient::with_read_timeout(
        target.container.clone(),
        credential,
        RetryPolicy::default(),
        opts.request_timeout,
    )
    .map_err(MountError::failed)?;
    let area = StagingArea {
        client: Arc::new(client),
        budget: WriteBudget::new(opts.write_buffer),
        dir: opts.staging_dir.clone(),
        grid: Grid::new(opts.block_size),
        journal: None,
        reuse: None,
    };
    let progress = ResumeProgress::default();
    rt.block_on(resume_all(&area, &dir, None, &progress));
    println!("{}", progress.summary());
    Ok(
        if progress.left.load(std::sync::atomic::Ordering::Relaxed) == 0 {
            0
        } else {
            1
        },
    )
}
