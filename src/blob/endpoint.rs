//! Where a container lives: parsing the SAS URL into account URL, account and container.
//!
//! Two URL shapes are accepted:
//! - host style, `https://ACCOUNT.blob.core.windows.net/CONTAINER` (or any other host: sovereign
//!   clouds, custom domains, private endpoints): one path segment, the container; the account is
//!   the host's first label.
//! - path style, `http://127.0.0.1:10000/ACCOUNT/CONTAINER` (Azurite, emulators, some proxies):
//!   two path segments.

use url::Url;

/// A container's location, without any token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerUrl {
    /// The account URL: scheme, host, port and (path style) the account segment; no query.
    pub account_url: Url,
    pub account: String,
    pub container: String,
}

impl ContainerUrl {
    /// Parses `URL[?TOKEN]`, returning the container location and the raw query (the token), if any.
    pub fn parse(input: &str) -> Result<(ContainerUrl, Option<String>), String> {
        let url = Url::parse(input.trim()).map_err(|e| {
            format!("malformed container URL: {e} (expected https://ACCOUNT.blob.core.windows.net/CONTAINER?SAS)")
        })?;
        if url.scheme() != "https" && url.scheme() != "http" {
            return Err(format!(
                "malformed container URL: scheme {:?} is not http or https",
                url.scheme()
            ));
        }
        let host = url
            .host_str()
            .ok_or("malformed container URL: it has no host")?
            .to_string();
        if url.fragment().is_some() {
            return Err("malformed container URL: it has a #fragment (a '#' in the token must be percent-encoded)".into());
        }
        let segments: Vec<String> = url
            .path_segments()
            .map(|s| s.filter(|p| !p.is_empty()).map(decode).collect())
            .unwrap_or_default();
        let mut account_url = url.clone();
        account_url.set_query(None);
        let (account, container) = match segments.as_slice() {
            [container] => {
                let account = host.split('.').next().unwrap_or_default().to_string();
                account_url.set_path("");
                (account, container.clone())
            }
            [account, container] => {
                account_url.set_path(&format!("/{account}"));
                (account.clone(), container.clone())
            }
            [] => {
                return Err(
                    "the URL names no container: expected https://ACCOUNT.blob.core.windows.net/CONTAINER".into(),
                )
            }
            _ => {
                return Err(format!(
                    "the URL has {} path segments: expected /CONTAINER (or /ACCOUNT/CONTAINER for an emulator); a blob URL cannot be mounted",
                    segments.len()
                ))
            }
        };
        validate_container_name(&container)?;
        let token = url.query().filter(|q| !q.is_empty()).map(str::to_string);
        Ok((
            ContainerUrl {
                account_url,
                account,
                container,
            },
            token,
        ))
    }

    /// The container URL without token, for messages: safe to print.
    pub fn display(&self) -> String {
        format!(
            "{}/{}",
            self.account_url.as_str().trim_end_matches('/'),
            self.container
        )
    }
}

fn decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

/// Container names: 3-63 characters, lowercase letters, digits and single hyphens, starting and
/// ending with a letter or digit. `$root` and `$web` are the special containers.
fn validate_container_name(name: &str) -> Result<(), String> {
    if name == "$root" || name == "$web" {
        return Ok(());
    }
    let ok_chars = name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    let ok = (3..=63).contains(&name.len())
        && ok_chars
        && !name.starts_with('-')
        && !name.ends_with('-')
        && !name.contains("--");
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a valid container name (3-63 lowercase letters, digits and hyphens)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_style() {
        let (c, t) =
            ContainerUrl::parse("https://acct.blob.core.windows.net/data?sv=1&sig=x").unwrap();
        assert_eq!(c.account, "acct");
        assert_eq!(c.container, "data");
        assert_eq!(
            c.account_url.as_str(),
            "https://acct.blob.core.windows.net/"
        );
        assert_eq!(t.as_deref(), Some("sv=1&sig=x"));
        let (c, _) = ContainerUrl::parse("https://acct.blob.core.chinacloudapi.cn/data/").unwrap();
        assert_eq!(c.account, "acct");
        assert_eq!(c.display(), "https://acct.blob.core.chinacloudapi.cn/data");
    }

    #[test]
    fn path_style() {
        let (c, t) = ContainerUrl::parse("http://127.0.0.1:10000/devstoreaccount1/box").unwrap();
        assert_eq!(c.account, "devstoreaccount1");
        assert_eq!(c.container, "box");
        assert_eq!(
            c.account_url.as_str(),
            "http://127.0.0.1:10000/devstoreaccount1"
        );
        assert_eq!(t, None);
    }

    #[test]
    fn rejects() {
        for bad in [
            "not a url",
            "ftp://a.blob.core.windows.net/c",
            "https://a.blob.core.windows.net/",
            "https://a.blob.core.windows.net/c/blob.txt/x",
            "https://a.blob.core.windows.net/UPPER",
            "https://a.blob.core.windows.net/ab",
        ] {
            assert!(ContainerUrl::parse(bad).is_err(), "{bad}");
        }
    }
}
