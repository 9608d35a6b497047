//! `blobmount sas generate` and `blobmount sas inspect` through the binary: generated URLs are
//! accepted by Azurite for exactly what they grant (and refused when signed with a wrong key),
//! `inspect` describes tokens without ever printing the signature, and bad input is one line
//! on stderr with a non-zero exit.
//!
//! The tests that talk to Azurite start their own; nothing is shared between tests.

mod common;

use base64::Engine as _;
use common::{unique_container, Azurite, ACCOUNT, ACCOUNT_KEY};
use serde_json::Value;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

const ODD_NAME: &str = "dir one/ü #?%+&.txt";

/// Runs `blobmount ARGS...` (no AZURE_STORAGE_KEY or RUST_LOG from the environment).
fn blobmount(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_blobmount"))
        .args(args)
        .env_remove("AZURE_STORAGE_KEY")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .output()
        .expect("run blobmount")
}

/// The trimmed stdout of a command that must succeed with nothing on stderr.
fn success(args: &[&str]) -> String {
    let out = blobmount(args);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "blobmount {args:?} failed ({}):\n{stderr}{stdout}",
        out.status
    );
    assert!(stderr.trim().is_empty(), "stderr: {stderr}");
    stdout.trim().to_string()
}

/// Asserts that the command fails with a non-zero exit code, nothing on stdout and exactly one
/// non-empty line on stderr containing `phrase` (case-insensitive) and none of `secrets`;
/// returns that line.
fn one_line_failure(args: &[&str], phrase: &str, secrets: &[&str]) -> String {
    let out = blobmount(args);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        matches!(out.status.code(), Some(c) if c != 0),
        "blobmount {args:?}: wanted a non-zero exit, got {}:\n{stderr}{stdout}",
        out.status
    );
    for s in secrets {
        assert!(
            !stderr.contains(s) && !stdout.contains(s),
            "a secret appears in the output of {args:?}:\n{stderr}{stdout}"
        );
    }
    assert!(stdout.trim().is_empty(), "stdout: {stdout}");
    let line = stderr.trim();
    assert!(!line.is_empty(), "nothing on stderr");
    assert_eq!(line.lines().count(), 1, "stderr is not one line:\n{stderr}");
    assert!(
        line.to_lowercase().contains(&phrase.to_lowercase()),
        "stderr {line:?} does not contain {phrase:?}"
    );
    line.to_string()
}

/// The forms of a URL's or token's `sig` value that must never be printed: as given
/// (percent-encoded), and decoded.
fn sig_forms(url: &str) -> Vec<String> {
    let query = url.split_once('?').map(|(_, q)| q).unwrap_or(url);
    let raw = query
        .split('&')
        .find_map(|p| p.strip_prefix("sig="))
        .unwrap_or_else(|| panic!("no sig in {url}"));
    assert!(!raw.is_empty());
    let decoded = percent_encoding::percent_decode_str(raw)
        .decode_utf8_lossy()
        .into_owned();
    vec![raw.to_string(), decoded]
}

/// GET `url` without any other credentials; status and body.
fn http_get(url: &str) -> (u16, Vec<u8>) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("reqwest client");
    rt.block_on(async {
        let resp = client
            .get(url)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET failed: {:?}", e.without_url()));
        let status = resp.status().as_u16();
        let body = resp.bytes().await.expect("read body").to_vec();
        (status, body)
    })
}

/// The `<Name>`s of a List Blobs answer, unescaped.
fn listed_names(xml: &[u8]) -> Vec<String> {
    let xml = String::from_utf8_lossy(xml);
    let mut names: Vec<String> = xml
        .split("<Name>")
        .skip(1)
        .map(|rest| {
            let raw = rest.split("</Name>").next().expect("closing </Name>");
            quick_xml::escape::unescape(raw)
                .expect("XML-escaped name")
                .into_owned()
        })
        .collect();
    names.sort();
    names
}

fn with_list_query(url: &str) -> String {
    format!("{url}&restype=container&comp=list")
}

fn wrong_key() -> String {
    base64::engine::general_purpose::STANDARD.encode([7u8; 64])
}

/// `sas generate` for the emulator's account with `extra` arguments.
fn generate(key: &str, container: &str, extra: &[&str]) -> String {
    let mut args = vec![
        "sas",
        "generate",
        "--account",
        ACCOUNT,
        "--key",
        key,
        "--container",
        container,
    ];
    args.extend_from_slice(extra);
    let out = success(&args);
    assert_eq!(out.lines().count(), 1, "more than one line: {out}");
    out
}

#[test]
fn generated_container_url_lists_in_azurite_and_a_wrong_key_is_refused() {
    let az = Azurite::start();
    let rest = az.rest();
    let c = unique_container("gen-list");
    rest.create_container(&c);
    for name in ["a.txt", "dir/b.txt", ODD_NAME] {
        rest.put_blob(&c, name, name.as_bytes());
    }
    let endpoint = az.account_url();

    let url = generate(
        ACCOUNT_KEY,
        &c,
        &[
            "--permissions",
            "rl",
            "--expiry",
            "1h",
            "--endpoint",
            &endpoint,
        ],
    );
    assert!(url.starts_with(&format!("{endpoint}/{c}?")), "{url}");
    assert!(url.contains("sr=c"), "{url}");
    let (status, body) = http_get(&with_list_query(&url));
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let mut want = vec!["a.txt", "dir/b.txt", ODD_NAME];
    want.sort();
    assert_eq!(listed_names(&body), want);

    // With rl it can read a blob too, but not write one (checked by GET only: no PUT here).
    let (status, body) = http_get(&url.replacen('?', "/a.txt?", 1));
    assert_eq!((status, body.as_slice()), (200, &b"a.txt"[..]));

    // The same request signed with a wrong key is refused.
    let bad = generate(
        &wrong_key(),
        &c,
        &[
            "--permissions",
            "rl",
            "--expiry",
            "1h",
            "--endpoint",
            &endpoint,
        ],
    );
    assert_ne!(sig_forms(&bad), sig_forms(&url));
    let (status, body) = http_get(&with_list_query(&bad));
    assert_eq!(status, 403, "{}", String::from_utf8_lossy(&body));
}

#[test]
fn generated_token_without_endpoint_is_the_bare_token() {
    let c = "some-container";
    let token = generate(
        ACCOUNT_KEY,
        c,
        &["--permissions", "lr", "--expiry", "2030-01-02T00:00:00Z"],
    );
    assert!(!token.contains("://"), "{token}");
    assert!(token.contains("sr=c"), "{token}");
    assert!(token.contains("sp=rl"), "{token}");
    assert!(token.contains("se=2030-01-02T00%3A00%3A00Z"), "{token}");
    assert!(token.contains("&sig="), "{token}");
}

#[test]
fn generated_blob_url_reads_an_odd_name_and_cannot_list() {
    let az = Azurite::start();
    let rest = az.rest();
    let c = unique_container("gen-blob");
    rest.create_container(&c);
    let data = common::pseudo_random_bytes(70 * 1024 + 3, 11);
    rest.put_blob(&c, ODD_NAME, &data);
    rest.put_blob(&c, "other.txt", b"other");
    let endpoint = az.account_url();

    let url = generate(
        ACCOUNT_KEY,
        &c,
        &[
            "--blob",
            ODD_NAME,
            "--permissions",
            "r",
            "--expiry",
            "1h",
            "--endpoint",
            &endpoint,
        ],
    );
    assert!(url.contains("sr=b"), "{url}");
    // The name's reserved characters are percent-encoded in the path, not left to end it.
    let path = url.split_once('?').unwrap().0;
    assert!(
        path.starts_with(&format!("{endpoint}/{c}/dir%20one/")),
        "{url}"
    );
    assert!(!path.contains('#') && !path.contains(' '), "{url}");

    let (status, body) = http_get(&url);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert!(body == data, "the blob's bytes differ");

    // The token is for that blob only: it cannot list the container nor read another blob.
    let token = url.split_once('?').unwrap().1;
    let list = format!("{endpoint}/{c}?{token}&restype=container&comp=list");
    let (status, body) = http_get(&list);
    assert_eq!(status, 403, "{}", String::from_utf8_lossy(&body));
    let (status, _) = http_get(&format!("{endpoint}/{c}/other.txt?{token}"));
    assert_eq!(status, 403);
}

#[test]
fn inspect_json_describes_a_container_url_without_the_signature() {
    let endpoint = "http://127.0.0.1:10000/devstoreaccount1";
    let url = generate(
        ACCOUNT_KEY,
        "inspected",
        &[
            "--permissions",
            "lr",
            "--start",
            "2030-01-01T00:00:00Z",
            "--expiry",
            "2030-01-02T12:30:00Z",
            "--endpoint",
            endpoint,
        ],
    );
    let sig = sig_forms(&url);
    let out = success(&["sas", "inspect", &url, "--json"]);
    for s in &sig {
        assert!(
            !out.contains(s.as_str()),
            "the signature is printed:\n{out}"
        );
    }
    let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}):\n{out}"));
    assert_eq!(v["kind"], "service");
    assert_eq!(v["resource"], "container");
    assert_eq!(v["signed_resource"], "c");
    assert_eq!(v["permissions"]["letters"], "rl");
    assert_eq!(
        v["permissions"]["names"],
        serde_json::json!(["read", "list"])
    );
    assert_eq!(v["start"], "2030-01-01T00:00:00Z");
    assert_eq!(v["expiry"], "2030-01-02T12:30:00Z");
    assert_eq!(v["not_yet_valid"], true);
    assert_eq!(v["expired"], false);
    assert_eq!(v["signature"], "<redacted>");
    assert_eq!(v["target"]["container"], "inspected");
    assert_eq!(v["target"]["account"], ACCOUNT);
    assert_eq!(v["target"]["account_url"], endpoint);
}

#[test]
fn inspect_json_describes_a_blob_url() {
    let endpoint = "http://127.0.0.1:10000/devstoreaccount1";
    let url = generate(
        ACCOUNT_KEY,
        "c1",
        &[
            "--blob",
            ODD_NAME,
            "--permissions",
            "r",
            "--expiry",
            "1h",
            "--endpoint",
            endpoint,
        ],
    );
    let out = success(&["sas", "inspect", &url, "--json"]);
    for s in sig_forms(&url) {
        assert!(!out.contains(&s), "the signature is printed:\n{out}");
    }
    let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}):\n{out}"));
    assert_eq!(v["resource"], "blob");
    assert_eq!(v["signed_resource"], "b");
    assert_eq!(v["permissions"]["letters"], "r");
    assert_eq!(v["valid_now"], true);
    assert_eq!(v["signature"], "<redacted>");
    assert_eq!(v["target"]["container"], "c1");
    assert_eq!(v["target"]["blob"], ODD_NAME);
    let secs = v["expires_in_seconds"]
        .as_i64()
        .expect("expires_in_seconds");
    assert!((3500..=3600).contains(&secs), "{secs}");
}

#[test]
fn inspect_human_has_no_signature() {
    let url = generate(
        ACCOUNT_KEY,
        "human",
        &[
            "--permissions",
            "rl",
            "--expiry",
            "2h",
            "--endpoint",
            "http://127.0.0.1:10000/devstoreaccount1",
        ],
    );
    let sig = sig_forms(&url);
    // As a URL, and as the bare token.
    let token = url.split_once('?').unwrap().1;
    for input in [url.as_str(), token] {
        let out = success(&["sas", "inspect", input]);
        for s in &sig {
            assert!(
                !out.contains(s.as_str()),
                "the signature is printed:\n{out}"
            );
        }
        assert!(out.contains("<redacted>"), "{out}");
        assert!(
            out.lines()
                .any(|l| l.starts_with("permissions:") && l.contains("rl")),
            "{out}"
        );
        assert!(out.contains("container"), "{out}");
        assert!(out.contains("sr=c"), "{out}");
    }
}

#[test]
fn inspect_malformed_input_is_one_line() {
    let sig = "U2VjcmV0U2lnbmF0dXJlVmFsdWU%3D";
    let cases: &[(&str, &str)] = &[
        ("sv=2026-06-06&sr=c&sp=rl&se=2030-01-01", "sig"),
        ("not a token", "sig"),
        (
            "sv=garbled&sr=c&sp=rl&sig=U2VjcmV0U2lnbmF0dXJlVmFsdWU%3D",
            "version",
        ),
        (
            "sv=2026-06-06&sr=c&sp=rl&se=not-a-date&sig=U2VjcmV0U2lnbmF0dXJlVmFsdWU%3D",
            "not a date",
        ),
        (
            "sv=2026-06-06&sr=c&sp=rlq&sig=U2VjcmV0U2lnbmF0dXJlVmFsdWU%3D",
            "unknown letter",
        ),
        (
            "sv=2026-06-06&sr=c&sp=rl&sp=r&sig=U2VjcmV0U2lnbmF0dXJlVmFsdWU%3D",
            "more than once",
        ),
    ];
    let secrets = [sig, "U2VjcmV0U2lnbmF0dXJlVmFsdWU="];
    for (input, phrase) in cases {
        for json in [false, true] {
            let mut args = vec!["sas", "inspect", input];
            if json {
                args.push("--json");
            }
            one_line_failure(&args, phrase, &secrets);
        }
    }
}

#[test]
fn generate_expiry_before_start_is_one_line() {
    let line = one_line_failure(
        &[
            "sas",
            "generate",
            "--account",
            ACCOUNT,
            "--key",
            ACCOUNT_KEY,
            "--container",
            "c1",
            "--permissions",
            "rl",
            "--start",
            "2030-01-02T00:00:00Z",
            "--expiry",
            "2030-01-01T00:00:00Z",
        ],
        "not after start",
        &[ACCOUNT_KEY],
    );
    assert!(line.contains("2030-01-01"), "{line}");
}

#[test]
fn generate_bad_base64_key_is_one_line() {
    for key in ["not base64!!", "%%%%"] {
        one_line_failure(
            &[
                "sas",
                "generate",
                "--account",
                ACCOUNT,
                "--key",
                key,
                "--container",
                "c1",
                "--permissions",
                "rl",
                "--expiry",
                "1h",
            ],
            "invalid account key",
            &[key],
        );
    }
}
