//! Tests of the inspector, and that the signature never leaks anywhere.

use super::*;
use time::macros::datetime;

const SIG: &str = "kk3Z9nLfVmlY3cxTG7+GbnjmoUAygeS9rlZ365MTFZQ=";
const SIG_ENC: &str = "kk3Z9nLfVmlY3cxTG7%2BGbnjmoUAygeS9rlZ365MTFZQ%3D";

fn url() -> String {
    format!(
        "https://storageaccountname.blob.core.windows.net/sascontainer/dir%20one/a.txt?st=2026-11-22T08%3A00%3A00Z&se=2026-11-22T10%3A00%3A00Z&sp=racwdl&sip=168.1.5.60-168.1.5.70&spr=https&sv=2026-10-06&sr=c&rscc=no-cache&foo=bar&sig={SIG_ENC}"
    )
}

const NOW: OffsetDateTime = datetime!(2026-11-22 08:00:30 UTC);

#[test]
fn url_targets() {
    let t = UrlTarget::from_input(&url()).unwrap();
    assert_eq!(
        t.account_url,
        "https://storageaccountname.blob.core.windows.net"
    );
    assert_eq!(t.account.as_deref(), Some("storageaccountname"));
    assert_eq!(t.container.as_deref(), Some("sascontainer"));
    assert_eq!(t.blob.as_deref(), Some("dir one/a.txt"));

    let t = UrlTarget::from_input("http://127.0.0.1:10000/devstoreaccount1/c1?sv=x").unwrap();
    assert_eq!(t.account_url, "http://127.0.0.1:10000/devstoreaccount1");
    assert_eq!(t.account.as_deref(), Some("devstoreaccount1"));
    assert_eq!(t.container.as_deref(), Some("c1"));
    assert_eq!(t.blob, None);

    let t = UrlTarget::from_input("http://azurite:10000/devstoreaccount1?sv=x").unwrap();
    assert_eq!(t.account_url, "http://azurite:10000/devstoreaccount1");
    assert_eq!(t.container, None);

    let t = UrlTarget::from_input("https://files.example.com/c/b?sv=x").unwrap();
    assert_eq!(t.account, None);
    assert_eq!(t.container.as_deref(), Some("c"));

    assert_eq!(UrlTarget::from_input("sv=2026-06-06&sig=x"), None);
}

#[test]
fn human_output() {
    let token = SasToken::parse(&url()).unwrap();
    let out = inspect_human(&token, UrlTarget::from_input(&url()).as_ref(), NOW);
    for want in [
        "kind:",
        "service SAS",
        "container (sr=c)",
        "account url:",
        "https://storageaccountname.blob.core.windows.net",
        "blob:",
        "dir one/a.txt",
        "2026-10-06",
        "racwdl  (read, add, create, write, delete, list)",
        "2026-11-22T08:00:00Z",
        "2026-11-22T10:00:00Z  (valid for 1h 59m more)",
        "168.1.5.60-168.1.5.70",
        "protocol:",
        "Cache-Control: no-cache",
        "unknown param:",
        "foo=bar",
        "sig:",
        "<redacted>",
    ] {
        assert!(out.contains(want), "missing {want:?} in\n{out}");
    }

    let expired = inspect_human(&token, None, datetime!(2026-11-22 13:00 UTC));
    assert!(expired.contains("(EXPIRED 3h ago)"), "{expired}");
    let early = inspect_human(&token, None, datetime!(2026-11-22 07:55 UTC));
    assert!(early.contains("not yet valid: starts in 5m"), "{early}");
}

#[test]
fn human_output_for_account_and_policy_tokens() {
    let account =
        SasToken::parse("sv=2026-06-06&ss=b&srt=sco&sp=rwdlacup&se=2030-01-01T00:00:00Z&sig=x")
            .unwrap();
    let out = inspect_human(&account, None, NOW);
    assert!(out.contains("account SAS"), "{out}");
    assert!(out.contains("b  (blob)"), "{out}");
    assert!(out.contains("sco  (service, container, object)"), "{out}");
    assert!(out.contains("process"), "{out}");

    let policy = SasToken::parse("sv=2026-06-06&si=readers&sr=c&sig=x").unwrap();
    let out = inspect_human(&policy, None, NOW);
    assert!(out.contains("readers"), "{out}");
    assert!(out.contains("set by the stored access policy"), "{out}");
}

#[test]
fn json_output() {
    let token = SasToken::parse(&url()).unwrap();
    let v = inspect_json(&token, UrlTarget::from_input(&url()).as_ref(), NOW);
    assert_eq!(v["kind"], "service");
    assert_eq!(v["resource"], "container");
    assert_eq!(v["signed_resource"], "c");
    assert_eq!(v["version"], "2026-10-06");
    assert_eq!(v["permissions"]["letters"], "racwdl");
    assert_eq!(v["permissions"]["names"][5], "list");
    assert_eq!(v["start"], "2026-11-22T08:00:00Z");
    assert_eq!(v["expiry"], "2026-11-22T10:00:00Z");
    assert_eq!(v["expires_in_seconds"], 7170);
    assert_eq!(v["expired"], false);
    assert_eq!(v["valid_now"], true);
    assert_eq!(v["ip_range"], "168.1.5.60-168.1.5.70");
    assert_eq!(v["protocol"], "https");
    assert!(v["policy_id"].is_null());
    assert_eq!(v["response_headers"]["cache_control"], "no-cache");
    assert_eq!(v["unknown_params"]["foo"], "bar");
    assert_eq!(v["target"]["container"], "sascontainer");
    assert_eq!(v["target"]["blob"], "dir one/a.txt");
    assert_eq!(v["signature"], "<redacted>");

    let later = inspect_json(&token, None, datetime!(2026-11-22 13:00 UTC));
    assert_eq!(later["expired"], true);
    assert_eq!(later["expires_in_seconds"], -3 * 3600);
    assert_eq!(
        later["validity_problem"],
        "expired at 2026-11-22T10:00:00Z (3h ago)"
    );
    assert!(later["target"].is_null());
}

/// The signature never appears in Debug output, errors, or either inspect output.
#[test]
fn signature_never_leaks() {
    let leaks = |s: &str| s.contains(SIG) || s.contains(SIG_ENC) || s.contains("kk3Z9nLf");
    let token = SasToken::parse(&url()).unwrap();
    assert_eq!(
        token.signature(),
        SIG,
        "the test is only meaningful if this holds"
    );

    let debug = format!("{token:?} {token:#?}");
    assert!(!leaks(&debug), "{debug}");

    for bad in [
        format!("{}&se=soon", url()),
        format!("{}&sig={SIG_ENC}", url()),
        url().replace("sv=2026-10-06&", ""),
        url().replace("sp=racwdl", "sp=racwdlz"),
        url().replace("se=2026-11-22T10%3A00%3A00Z", "se=2026-11-22T10"),
    ] {
        let e = SasToken::parse(&bad).unwrap_err();
        let msgs = format!("{e} {e:?}");
        assert!(!leaks(&msgs), "{msgs}");
    }

    let target = UrlTarget::from_input(&url());
    let human = inspect_human(&token, target.as_ref(), NOW);
    assert!(!leaks(&human), "{human}");
    let json = inspect_json(&token, target.as_ref(), NOW).to_string();
    assert!(!leaks(&json), "{json}");
    assert!(!leaks(&token.redacted()));
}
