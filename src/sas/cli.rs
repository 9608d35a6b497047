//! `blobmount sas inspect` and `blobmount sas generate`.

use std::fmt;
use std::io::Write as _;

use anyhow::{anyhow, bail, Context as _};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::dates::parse_sas_date;
use super::inspect::{inspect_human, inspect_json, UrlTarget};
use super::{sign_service_sas, SasError, SasToken, ServiceSasParams, DEFAULT_VERSION};

/// `blobmount sas ...`
#[derive(Debug, clap::Subcommand)]
pub enum SasCommand {
    /// Explain a SAS token or SAS URL: kind, resource, permissions, validity. The
    /// signature is never printed.
    Inspect {
        /// The token (`sv=...&sig=...`, with or without a leading `?`) or a URL carrying one.
        #[arg(value_name = "TOKEN_OR_URL")]
        token: String,
        /// Print one JSON object instead, for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Make a service SAS for a container (or, with --blob, one blob), signed with the
    /// account key. Prints the token, or with --endpoint the full URL.
    Generate(Box<GenerateArgs>),
}

/// Arguments of `blobmount sas generate`.
#[derive(clap::Args)]
pub struct GenerateArgs {
    /// Storage account name.
    #[arg(long, value_name = "NAME")]
    pub account: String,
    /// Account key (base64). Prefer the AZURE_STORAGE_KEY environment variable, which
    /// other users cannot see in the process list.
    #[arg(
        long,
        value_name = "BASE64",
        env = "AZURE_STORAGE_KEY",
        hide_env_values = true
    )]
    pub key: String,
    /// Container name.
    #[arg(long, value_name = "NAME")]
    pub container: String,
    /// Blob name (e.g. `dir/file.txt`): makes a blob SAS (sr=b) instead of a container SAS.
    #[arg(long, value_name = "NAME")]
    pub blob: Option<String>,
    /// Permission letters, any order, e.g. `rl` (read, list) or `racwdl`. With --identifier,
    /// may be left to the stored access policy.
    #[arg(long, value_name = "LETTERS", required_unless_present = "identifier")]
    pub permissions: Option<String>,
    /// When the SAS expires: an RFC 3339 time (2026-01-31T12:00:00Z) or a duration from
    /// now (90m, 2h, 7d). With --identifier, may be left to the stored access policy.
    #[arg(
        long,
        value_name = "TIME_OR_DURATION",
        required_unless_present = "identifier"
    )]
    pub expiry: Option<String>,
    /// When the SAS starts to be valid (RFC 3339); default: when it is issued.
    #[arg(long, value_name = "RFC3339")]
    pub start: Option<String>,
    /// Allowed client IP address or range (`a.b.c.d` or `a.b.c.d-e.f.g.h`).
    #[arg(long, value_name = "IP_OR_RANGE")]
    pub ip: Option<String>,
    /// Allowed protocols: `https` or `https,http`.
    #[arg(long, value_name = "https|https,http")]
    pub protocol: Option<String>,
    /// Stored access policy on the container (si).
    #[arg(long, value_name = "POLICY_ID")]
    pub identifier: Option<String>,
    /// Service version to sign with (sv).
    #[arg(long, value_name = "YYYY-MM-DD", default_value = DEFAULT_VERSION)]
    pub version: String,
    /// Cache-Control of responses made with this SAS (rscc).
    #[arg(long, value_name = "V")]
    pub cache_control: Option<String>,
    /// Content-Disposition of responses (rscd).
    #[arg(long, value_name = "V")]
    pub content_disposition: Option<String>,
    /// Content-Encoding of responses (rsce).
    #[arg(long, value_name = "V")]
    pub content_encoding: Option<String>,
    /// Content-Language of responses (rscl).
    #[arg(long, value_name = "V")]
    pub content_language: Option<String>,
    /// Content-Type of responses (rsct).
    #[arg(long, value_name = "V")]
    pub content_type: Option<String>,
    /// Account URL (`https://acct.blob.core.windows.net` or path-style
    /// `http://127.0.0.1:10000/devstoreaccount1`): print `URL/CONTAINER[/BLOB]?TOKEN`.
    #[arg(long, value_name = "ACCOUNT_URL")]
    pub endpoint: Option<String>,
}

impl fmt::Debug for GenerateArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GenerateArgs")
            .field("account", &self.account)
            .field("key", &"<redacted>")
            .field("container", &self.container)
            .field("blob", &self.blob)
            .field("permissions", &self.permissions)
            .field("expiry", &self.expiry)
            .field("start", &self.start)
            .field("version", &self.version)
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

/// Runs a `sas` subcommand, printing to stdout.
pub fn run(cmd: SasCommand) -> anyhow::Result<()> {
    let now = OffsetDateTime::now_utc();
    let text = match cmd {
        SasCommand::Inspect { token, json } => inspect_output(&token, json, now)?,
        SasCommand::Generate(args) => {
            let text = generate_output(&args, now)?;
            if let Some(w) = args.expiry.as_deref().and_then(|e| expired_warning(e, now)) {
                eprintln!("blobmount: warning: {w}");
            }
            text
        }
    };
    let mut out = std::io::stdout().lock();
    writeln!(out, "{text}").context("writing to stdout")?;
    Ok(())
}

/// Said when `generate` signs a token whose expiry has passed already (Azure refuses it).
fn expired_warning(expiry: &str, now: OffsetDateTime) -> Option<String> {
    let at = parse_expiry(expiry, now).ok()?;
    (at <= now).then(|| {
        format!(
            "the token expired already (--expiry {expiry:?} is {}, before now): Azure will refuse it",
            at.format(&Rfc3339).unwrap_or_default()
        )
    })
}

/// What `inspect` prints (without the final newline).
pub fn inspect_output(input: &str, json: bool, now: OffsetDateTime) -> Result<String, SasError> {
    let token = SasToken::parse(input)?;
    let target = UrlTarget::from_input(input);
    Ok(if json {
        let v = inspect_json(&token, target.as_ref(), now);
        serde_json::to_string_pretty(&v).expect("a JSON value always serialises")
    } else {
        inspect_human(&token, target.as_ref(), now)
            .trim_end()
            .to_string()
    })
}

/// Parses `--expiry`: a date Azure accepts (RFC 3339 among them) or a duration from `now`.
fn parse_expiry(s: &str, now: OffsetDateTime) -> anyhow::Result<OffsetDateTime> {
    if let Some(t) = parse_when(s) {
        return Ok(t);
    }
    let d = crate::size::parse_duration(s).map_err(|_| {
        anyhow!("--expiry {s:?} is neither a time (RFC 3339, e.g. 2026-01-31T12:00:00Z) nor a duration (e.g. 90m, 2h)")
    })?;
    let d = time::Duration::try_from(d).map_err(|_| anyhow!("--expiry {s:?} is too far away"))?;
    now.checked_add(d)
        .ok_or_else(|| anyhow!("--expiry {s:?} is too far away"))
}

fn parse_when(s: &str) -> Option<OffsetDateTime> {
    parse_sas_date(s).or_else(|| OffsetDateTime::parse(s, &Rfc3339).ok())
}

/// What `generate` prints (without the final newline): the token, or the full URL.
pub fn generate_output(a: &GenerateArgs, now: OffsetDateTime) -> anyhow::Result<String> {
    let expiry = a
        .expiry
        .as_deref()
        .map(|e| parse_expiry(e, now))
        .transpose()?;
    let start = match &a.start {
        None => None,
        Some(s) => Some(parse_when(s).ok_or_else(|| {
            anyhow!("--start {s:?} is not a time (RFC 3339, e.g. 2026-01-31T12:00:00Z)")
        })?),
    };
    let p = ServiceSasParams {
        account: a.account.clone(),
        container: a.container.clone(),
        blob: a.blob.clone(),
        permissions: a.permissions.clone().unwrap_or_default(),
        start,
        expiry,
        ip: a.ip.clone(),
        protocol: a.protocol.clone(),
        identifier: a.identifier.clone(),
        version: a.version.clone(),
        cache_control: a.cache_control.clone(),
        content_disposition: a.content_disposition.clone(),
        content_encoding: a.content_encoding.clone(),
        content_language: a.content_language.clone(),
        content_type: a.content_type.clone(),
        ..Default::default()
    };
    let token = sign_service_sas(&p, &a.key)?;
    match &a.endpoint {
        None => Ok(token),
        Some(e) => resource_url(e, &a.container, a.blob.as_deref(), &token),
    }
}

/// `ACCOUNT_URL/CONTAINER[/BLOB]?TOKEN`, blob path segments percent-encoded.
pub fn resource_url(
    account_url: &str,
    container: &str,
    blob: Option<&str>,
    token: &str,
) -> anyhow::Result<String> {
    let mut url = url::Url::parse(account_url)
        .map_err(|e| anyhow!("--endpoint {account_url:?} is not a URL ({e})"))?;
    if url.query().is_some() {
        bail!("--endpoint must be the account URL, without a query");
    }
    {
        let mut segments = url
            .path_segments_mut()
            .map_err(|_| anyhow!("--endpoint {account_url:?} cannot have a path"))?;
        segments.pop_if_empty().push(container);
        if let Some(b) = blob {
            segments.extend(b.split('/'));
        }
    }
    url.set_query(Some(token));
    Ok(url.to_string())
}

#[cfg(test)]
#[path = "cli_tests.rs"]
mod tests;
