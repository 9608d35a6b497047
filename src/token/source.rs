//! Where SAS tokens come from, and what a token must be for this mount.
//!
//! A source gives text: a bare token (`sv=…&sig=…`, with or without `?`) or a full SAS URL. A
//! URL must name the mounted account and container. A token must parse, be valid now, be for
//! a container (or an account SAS over blob containers and objects) and carry the permissions
//! the mount needs. Messages never contain the signature.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use time::OffsetDateTime;
use tokio::io::{AsyncBufReadExt, AsyncReadExt};

use crate::blob::ContainerUrl;
use crate::sas::{SasKind, SasToken, SignedResource};

/// Where new tokens come from.
#[derive(Debug, Clone)]
pub enum TokenSource {
    /// `--sas-file PATH`: a token or SAS URL, read again when it changes and on SIGHUP.
    File(PathBuf),
    /// `--sas-command CMD`: run with `sh -c`; its stdout is a token or SAS URL, its stderr goes
    /// to the log; killed after `timeout`.
    Command { command: String, timeout: Duration },
}

impl TokenSource {
    /// Gets the text of a new token. Errors are one line, without secrets.
    pub async fn fetch(&self) -> Result<String, String> {
        match self {
            TokenSource::File(path) => tokio::fs::read_to_string(path)
                .await
                .map_err(|e| format!("cannot read the SAS file {}: {e}", path.display())),
            TokenSource::Command { command, timeout } => run_command(command, *timeout).await,
        }
    }

    pub fn describe(&self) -> String {
        match self {
            TokenSource::File(path) => format!("the SAS file {}", path.display()),
            TokenSource::Command { .. } => "the SAS command".to_string(),
        }
    }
}

async fn run_command(command: &str, timeout: Duration) -> Result<String, String> {
    let mut child = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        // Its own process group: on a time-out the whole group goes, children included.
        .process_group(0)
        .spawn()
        .map_err(|e| format!("cannot run the SAS command: {e}"))?;
    let pgid = child.id();
    let mut stdout = child.stdout.take().expect("piped");
    let stderr = child.stderr.take().expect("piped");
    // Its stderr goes to the log, line by line (it is the command's own diagnostics), with
    // anything that looks like a signature blanked.
    let mut log_stderr = tokio::spawn(async move {
        let mut lines = tokio::io::BufReader::new(stderr).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            tracing::info!("SAS command: {}", scrub_signatures(&line));
        }
    });
    let work = async {
        let mut out = String::new();
        stdout
            .read_to_string(&mut out)
            .await
            .map_err(|e| format!("cannot read the SAS command's output: {e}"))?;
        let status = child
            .wait()
            .await
            .map_err(|e| format!("the SAS command failed: {e}"))?;
        if !status.success() {
            return Err(format!("the SAS command failed ({status})"));
        }
        Ok(out)
    };
    match tokio::time::timeout(timeout, work).await {
        Ok(r) => {
            // A helper left running in the background may hold stderr open: do not wait on it.
            if tokio::time::timeout(Duration::from_secs(1), &mut log_stderr)
                .await
                .is_err()
            {
                log_stderr.abort();
            }
            r
        }
        Err(_) => {
            if let Some(pgid) = pgid {
                // SAFETY: kill(2) on the command's own process group; no memory involved.
                unsafe { libc::kill(-(pgid as i32), libc::SIGKILL) };
            }
            log_stderr.abort();
            Err(format!(
                "the SAS command did not finish within {}s: killed",
                timeout.as_secs()
            ))
        }
    }
}

/// Blanks the value of every `sig=` in a line (a command's diagnostics may echo a SAS URL).
pub fn scrub_signatures(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while let Some(i) = rest.find("sig=") {
        out.push_str(&rest[..i + 4]);
        out.push_str("<redacted>");
        let after = &rest[i + 4..];
        let end = after
            .find(|c: char| c == '&' || c == '"' || c == '\'' || c.is_whitespace())
            .unwrap_or(after.len());
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

/// Checks a token's kind, resource and permissions for mounting a container. `Err` is a one
/// line reason.
pub fn check_scope(token: &SasToken, needs_write: bool) -> Result<(), String> {
    match token.kind() {
        SasKind::Service { resource } | SasKind::UserDelegation { resource } => match resource {
            SignedResource::Container => {}
            SignedResource::Blob | SignedResource::BlobVersion | SignedResource::BlobSnapshot => {
                return Err(format!(
                    "this is a blob SAS (sr={}): it grants access to one blob and cannot mount a container; use a container SAS (sr=c)",
                    resource.code()
                ))
            }
            other => {
                return Err(format!(
                    "this SAS is for a {} (sr={}), not a container; use a container SAS (sr=c)",
                    other.describe(),
                    other.code()
                ))
            }
        },
        SasKind::Account {
            services,
            resource_types,
        } => {
            if !services.blob() {
                return Err(format!(
                    "this account SAS does not cover the Blob service (ss={}): it needs ss to include b",
                    services.letters()
                ));
            }
            let rt = resource_types.letters();
            if !(rt.contains('c') && rt.contains('o')) {
                return Err(format!(
                    "this account SAS has srt={rt}: mounting needs container and object access (srt to include c and o)"
                ));
            }
        }
    }
    // A stored access policy's permissions are not in the token: the mount probes them.
    let Some(p) = token.stated_permissions() else {
        return Ok(());
    };
    let mut missing: Vec<&str> = [(p.read(), "r (read)"), (p.list(), "l (list)")]
        .into_iter()
        .filter(|(has, _)| !has)
        .map(|(_, what)| what)
        .collect();
    if needs_write && !p.write() {
        missing.push("w (write)");
    }
    if !missing.is_empty() {
        return Err(format!(
            "the SAS token lacks the {} permission{} needed to mount (it has sp={})",
            missing.join(" and "),
            if missing.len() > 1 { "s" } else { "" },
            p.letters()
        ));
    }
    Ok(())
}

/// Reads a token from a source's text: a bare token (with or without `?`) or a SAS URL, which
/// must name the mounted account and container.
pub fn parse_text(text: &str, container: &ContainerUrl) -> Result<SasToken, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("it is empty".into());
    }
    let query = if text.starts_with("http://") || text.starts_with("https://") {
        let (url, query) = ContainerUrl::parse(text)?;
        if url.account != container.account || url.container != container.container {
            return Err(format!(
                "it is for {}/{}, not the mounted {}/{}",
                url.account, url.container, container.account, container.container
            ));
        }
        query.ok_or("the URL has no token")?
    } else {
        text.trim_start_matches('?').to_string()
    };
    // The error says "invalid SAS token: …" (or names the bad letters, date or version).
    SasToken::parse(&query).map_err(|e| e.to_string())
}

/// Turns a source's text into a token this mount can use: a token or a SAS URL for the
/// mounted container, valid now, of the right scope and permissions.
pub fn accept(
    text: &str,
    container: &ContainerUrl,
    needs_write: bool,
    now: OffsetDateTime,
) -> Result<SasToken, String> {
    let token = parse_text(text, container)?;
    if let Some(problem) = token.validity_problem(now) {
        return Err(format!("the token {problem}"));
    }
    check_scope(&token, needs_write)?;
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sas::{sign_service_sas, ServiceSasParams};

    const KEY: &str =
        "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

    fn token(container: &str, perms: &str, minutes: i64) -> String {
        let p = ServiceSasParams::new(
            "devstoreaccount1",
            container,
            perms,
            OffsetDateTime::now_utc() + time::Duration::minutes(minutes),
        );
        sign_service_sas(&p, KEY).unwrap()
    }

    fn mounted() -> ContainerUrl {
        ContainerUrl::parse("http://127.0.0.1:10000/devstoreaccount1/box")
            .unwrap()
            .0
    }

    #[test]
    fn accepts_tokens_and_urls_for_this_container_only() {
        let now = OffsetDateTime::now_utc();
        let t = token("box", "racwdl", 30);
        assert!(accept(&format!("  ?{t}\n"), &mounted(), true, now).is_ok());
        let url = format!("http://127.0.0.1:10000/devstoreaccount1/box?{t}");
        assert!(accept(&url, &mounted(), true, now).is_ok());
        let other = format!(
            "http://127.0.0.1:10000/devstoreaccount1/other?{}",
            token("other", "rl", 30)
        );
        assert!(accept(&other, &mounted(), false, now)
            .unwrap_err()
            .contains("not the mounted"));
        assert!(accept(&token("box", "rl", -1), &mounted(), false, now)
            .unwrap_err()
            .contains("expired"));
        assert!(accept(&token("box", "rl", 30), &mounted(), true, now)
            .unwrap_err()
            .contains("w (write)"));
        assert!(accept("garbage", &mounted(), false, now)
            .unwrap_err()
            .starts_with("invalid SAS token"));
        assert!(accept("", &mounted(), false, now).is_err());
        // Never the signature in a message.
        let bad = format!("{}&sp=zz", token("box", "rl", 30));
        let sig = SasToken::parse(&token("box", "rl", 30))
            .unwrap()
            .signature()
            .to_string();
        assert!(!accept(&bad, &mounted(), false, now)
            .unwrap_err()
            .contains(&sig));
    }

    #[test]
    fn signatures_are_scrubbed_from_command_diagnostics() {
        assert_eq!(
            scrub_signatures("GET https://a/c?sv=1&sig=AbC%2B%3D&se=2 'x sig=zz'"),
            "GET https://a/c?sv=1&sig=<redacted>&se=2 'x sig=<redacted>'"
        );
        assert_eq!(scrub_signatures("no secrets here"), "no secrets here");
    }

    #[tokio::test]
    async fn commands_give_stdout_fail_on_status_and_time_out() {
        let ok = TokenSource::Command {
            command: "echo token-text; echo diagnostics >&2".into(),
            timeout: Duration::from_secs(5),
        };
        assert_eq!(ok.fetch().await.unwrap().trim(), "token-text");
        let fails = TokenSource::Command {
            command: "exit 3".into(),
            timeout: Duration::from_secs(5),
        };
        assert!(fails.fetch().await.unwrap_err().contains("failed"));
        let hangs = TokenSource::Command {
            command: "sleep 30".into(),
            timeout: Duration::from_millis(200),
        };
        let started = std::time::Instant::now();
        assert!(hangs.fetch().await.unwrap_err().contains("did not finish"));
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
