//! Tests of the `sas` subcommands, through clap as the top-level CLI will call them.

use super::*;
use clap::Parser;
use time::macros::datetime;

const KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
const NOW: OffsetDateTime = datetime!(2026-11-22 08:00 UTC);

/// Stands in for the top-level `blobmount` CLI: `Sas { #[command(subcommand)] cmd }`.
#[derive(Debug, Parser)]
struct Top {
    #[command(subcommand)]
    cmd: SasCommand,
}

fn parse(args: &[&str]) -> SasCommand {
    let mut all = vec!["blobmount"];
    all.extend_from_slice(args);
    Top::try_parse_from(all).unwrap().cmd
}

fn generate(args: &[&str]) -> anyhow::Result<String> {
    let mut all = vec!["generate", "--account", "devstoreaccount1", "--key", KEY];
    all.extend_from_slice(args);
    match parse(&all) {
        SasCommand::Generate(a) => generate_output(&a, NOW),
        c => panic!("{c:?}"),
    }
}

#[test]
fn generate_a_container_token() {
    let token = generate(&[
        "--container",
        "c1",
        "--permissions",
        "lr",
        "--expiry",
        "2026-11-22T10:00:00Z",
    ])
    .unwrap();
    assert!(
        token.starts_with(&format!(
            "sv={DEFAULT_VERSION}&se=2026-11-22T10%3A00%3A00Z&sr=c&sp=rl&sig="
        )),
        "{token}"
    );
    let t = SasToken::parse(&token).unwrap();
    let p = ServiceSasParams {
        version: DEFAULT_VERSION.into(),
        ..ServiceSasParams::new(
            "devstoreaccount1",
            "c1",
            "rl",
            datetime!(2026-11-22 10:00 UTC),
        )
    };
    let want = SasToken::parse(&sign_service_sas(&p, KEY).unwrap()).unwrap();
    assert!(t.signature() == want.signature());
}

#[test]
fn generate_a_blob_url_with_a_duration() {
    let url = generate(&[
        "--container",
        "c1",
        "--blob",
        "dir one/a+b#c.txt",
        "--permissions",
        "r",
        "--expiry",
        "90m",
        "--start",
        "2026-11-22T07:45:00Z",
        "--protocol",
        "https,http",
        "--content-type",
        "text/plain",
        "--endpoint",
        "http://127.0.0.1:10000/devstoreaccount1/",
    ])
    .unwrap();
    let (base, query) = url.split_once('?').unwrap();
    assert_eq!(
        base,
        "http://127.0.0.1:10000/devstoreaccount1/c1/dir%20one/a+b%23c.txt"
    );
    let t = SasToken::parse(query).unwrap();
    assert_eq!(t.expiry(), Some(datetime!(2026-11-22 09:30 UTC)));
    assert_eq!(t.start(), Some(datetime!(2026-11-22 07:45 UTC)));
    assert_eq!(t.signed_resource(), Some(&crate::sas::SignedResource::Blob));
    assert_eq!(t.protocol(), Some("https,http"));
    assert_eq!(t.get("rsct"), Some("text/plain"));
    // The URL's own query is the token.
    assert_eq!(SasToken::parse(&url).unwrap(), t);

    let azure = generate(&[
        "--container",
        "c1",
        "--permissions",
        "rl",
        "--expiry",
        "2h",
        "--endpoint",
        "https://acct.blob.core.windows.net",
    ])
    .unwrap();
    assert!(
        azure.starts_with("https://acct.blob.core.windows.net/c1?sv="),
        "{azure}"
    );
}

#[test]
fn generate_errors_are_one_clear_line() {
    let base = ["--container", "c1", "--permissions", "rl"];
    let cases: &[(&[&str], &str)] = &[
        (&["--expiry", "soon"], "is neither a time"),
        (
            &["--expiry", "1h", "--start", "yesterday"],
            "--start \"yesterday\"",
        ),
        (
            &[
                "--expiry",
                "2026-11-22T10:00:00Z",
                "--start",
                "2026-11-22T11:00:00Z",
            ],
            "is not after start",
        ),
        (
            &["--expiry", "1h", "--version", "2014-02-14"],
            "before 2015-04-05",
        ),
        (&["--expiry", "1h", "--protocol", "http"], "protocol"),
        (
            &["--expiry", "1h", "--endpoint", "not a url"],
            "is not a URL",
        ),
    ];
    for (extra, want) in cases {
        let mut args = base.to_vec();
        args.extend_from_slice(extra);
        let e = generate(&args).unwrap_err().to_string();
        assert!(e.contains(want), "{extra:?}: {e}");
        assert!(!e.contains('\n'), "{e}");
    }
    let e = generate(&[
        "--container",
        "c1",
        "--permissions",
        "rlq",
        "--expiry",
        "1h",
    ])
    .unwrap_err()
    .to_string();
    assert!(e.contains("unknown letter 'q'"), "{e}");

    let cmd = Top::try_parse_from([
        "blobmount",
        "generate",
        "--account",
        "a",
        "--key",
        "%%%",
        "--container",
        "c",
        "--permissions",
        "r",
        "--expiry",
        "1h",
    ])
    .unwrap()
    .cmd;
    let SasCommand::Generate(a) = cmd else {
        panic!()
    };
    let e = generate_output(&a, NOW).unwrap_err().to_string();
    assert_eq!(e, "invalid account key: it is not valid base64");
    assert!(!format!("{a:?}").contains("%%%"), "Debug hides the key");
}

#[test]
fn inspect_human_and_json() {
    let token = generate(&["--container", "c1", "--permissions", "rl", "--expiry", "2h"]).unwrap();
    let SasCommand::Inspect { token: input, json } = parse(&["inspect", &token]) else {
        panic!()
    };
    assert!(!json);
    let human = inspect_output(&input, false, NOW).unwrap();
    assert!(human.contains("rl  (read, list)"), "{human}");
    assert!(human.contains("valid for 2h more"), "{human}");
    assert!(human.contains("sig:"), "{human}");

    let SasCommand::Inspect { token: input, json } = parse(&["inspect", "--json", &token]) else {
        panic!()
    };
    assert!(json);
    let out = inspect_output(&input, true, NOW).unwrap();
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["expires_in_seconds"], 7200);
    assert_eq!(
        v["permissions"]["names"],
        serde_json::json!(["read", "list"])
    );

    let sig = SasToken::parse(&token).unwrap().signature().to_string();
    assert!(!human.contains(&sig) && !out.contains(&sig));

    let e = inspect_output("sv=2026-06-06&sr=c&sp=rl&sig=abc&sig=def", false, NOW).unwrap_err();
    assert_eq!(
        e.to_string(),
        "invalid SAS token: parameter `sig` appears more than once"
    );
}

#[test]
fn signing_a_token_that_expired_already_warns() {
    let w = expired_warning("2026-11-01T00:00:00Z", NOW).expect("a warning");
    assert!(
        w.contains("expired already") && w.contains("2026-11-01T00:00:00Z"),
        "{w}"
    );
    assert_eq!(expired_warning("2h", NOW), None);
    assert_eq!(expired_warning("2027-01-01", NOW), None);
}

#[test]
fn a_token_of_a_stored_access_policy_needs_neither_permissions_nor_expiry() {
    let token = generate(&["--container", "box", "--identifier", "readers"]).unwrap();
    let t = SasToken::parse(&token).unwrap();
    assert_eq!(t.policy_id(), Some("readers"));
    assert_eq!((t.get("sp"), t.get("se")), (None, None), "{token:?}");
    assert_eq!(t.stated_permissions(), None, "the policy says them");
    // The source accepts it for mounting: its permissions are probed, not refused.
    let url = crate::blob::ContainerUrl::parse("http://127.0.0.1:10000/devstoreaccount1/box")
        .unwrap()
        .0;
    let accepted = crate::token::source::accept(&token, &url, true, NOW).unwrap();
    assert_eq!(accepted.policy_id(), Some("readers"));
    // Permissions given beside the policy are the token's, and checked.
    let with_sp = generate(&[
        "--container",
        "box",
        "--identifier",
        "p",
        "--permissions",
        "r",
    ])
    .unwrap();
    let e = crate::token::source::accept(&with_sp, &url, false, NOW).unwrap_err();
    assert!(e.contains("l (list)"), "{e}");
    // Without a policy, both stay required.
    let mut all = vec!["blobmount", "generate", "--account", "a", "--key", KEY];
    all.extend_from_slice(&["--container", "box", "--permissions", "rl"]);
    assert!(Top::try_parse_from(all).is_err());
}
