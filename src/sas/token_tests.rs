//! Tests of [`super::SasToken`] parsing and re-encoding.

use super::*;
use time::macros::datetime;

const SIG: &str = "koLniLcK0tMLuMfYeuSQwB+BLnWibhPqnrINxaIRbvU=";
const SIG_ENC: &str = "koLniLcK0tMLuMfYeuSQwB%2BBLnWibhPqnrINxaIRbvU%3D";

fn container_token() -> String {
    format!("sv=2026-06-06&st=2026-11-22T08%3A00%3A00Z&se=2026-11-22T10%3A00%3A00Z&sr=c&sp=rl&sip=168.1.5.60-168.1.5.70&spr=https&sig={SIG_ENC}")
}

#[test]
fn parses_a_container_token() {
    let t = SasToken::parse(&container_token()).unwrap();
    assert_eq!(t.version(), Some("2026-06-06"));
    assert_eq!(t.start(), Some(datetime!(2026-11-22 08:00 UTC)));
    assert_eq!(t.expiry(), Some(datetime!(2026-11-22 10:00 UTC)));
    assert_eq!(
        t.kind(),
        SasKind::Service {
            resource: SignedResource::Container
        }
    );
    assert_eq!(t.permissions().letters(), "rl");
    assert_eq!(t.ip_range(), Some("168.1.5.60-168.1.5.70"));
    assert_eq!(t.protocol(), Some("https"));
    assert_eq!(t.policy_id(), None);
    assert_eq!(t.signature(), SIG);
    assert_eq!(t.get("sig"), None);
    assert!(t.unknown_params().is_empty());
}

#[test]
fn accepts_leading_question_mark_and_urls() {
    let bare = SasToken::parse(&container_token()).unwrap();
    let q = SasToken::parse(&format!("?{}", container_token())).unwrap();
    let url = SasToken::parse(&format!(
        "https://acct.blob.core.windows.net/music/a%20b.txt?{}",
        container_token()
    ))
    .unwrap();
    let path_style = SasToken::parse(&format!(
        "  http://127.0.0.1:10000/devstoreaccount1/c1?{}\n",
        container_token()
    ))
    .unwrap();
    assert_eq!(bare, q);
    assert_eq!(bare, url);
    assert_eq!(bare, path_style);
}

#[test]
fn query_round_trips_and_keeps_order_and_unknowns() {
    let raw = format!(
        "se=2030-01-01T00%3A00%3A00Z&sp=rl&foo=b%20r&sv=2026-10-06&sr=c&flag&sig={SIG_ENC}"
    );
    let t = SasToken::parse(&raw).unwrap();
    assert_eq!(t.query(), raw);
    assert_eq!(t.unknown_params(), [("foo", "b r"), ("flag", "")]);
    assert_eq!(SasToken::parse(&t.query()).unwrap(), t);
}

#[test]
fn query_encodes_what_needs_encoding() {
    // Unencoded `+`, `/` and `:` as often pasted: `+` is a plus, never a space.
    let t = SasToken::parse(
        "sv=2026-06-06&sr=b&sp=r&se=2026-01-31T14:30:00+02:00&rsct=text/plain; charset=utf-8&sig=ab+c/d=",
    )
    .unwrap();
    assert_eq!(t.signature(), "ab+c/d=");
    assert_eq!(t.expiry(), Some(datetime!(2026-01-31 12:30 UTC)));
    assert_eq!(t.get("rsct"), Some("text/plain; charset=utf-8"));
    assert_eq!(
        t.query(),
        "sv=2026-06-06&sr=b&sp=r&se=2026-01-31T14%3A30%3A00%2B02%3A00&rsct=text%2Fplain%3B%20charset%3Dutf-8&sig=ab%2Bc%2Fd%3D"
    );
    assert_eq!(SasToken::parse(&t.query()).unwrap(), t);
    assert_eq!(
        t.response_headers(),
        [("Content-Type", "text/plain; charset=utf-8")]
    );
}

#[test]
fn redacted_hides_only_the_signature() {
    let t = SasToken::parse(&container_token()).unwrap();
    let r = t.redacted();
    assert!(r.ends_with("&sig=REDACTED"), "{r}");
    assert!(!r.contains(SIG_ENC) && !r.contains("koLni"));
    assert_eq!(r.replace("REDACTED", SIG_ENC), t.query());
}

#[test]
fn kinds() {
    let account =
        SasToken::parse("sv=2026-06-06&ss=bf&srt=sco&sp=rwdlacup&se=2030-01-01&spr=https&sig=x")
            .unwrap();
    match account.kind() {
        SasKind::Account {
            services,
            resource_types,
        } => {
            assert_eq!(services.letters(), "bf");
            assert_eq!(resource_types.letters(), "sco");
        }
        k => panic!("{k:?}"),
    }
    assert_eq!(account.permissions().letters(), "rwdlacup");
    assert!(account.permissions().process());
    assert_eq!(account.signed_resource(), None);

    let ud = SasToken::parse(
        "sv=2026-06-06&sr=b&sp=r&se=2030-01-01&skoid=oid&sktid=tid&skt=2026-01-01T00:00:00Z&ske=2026-01-02T00:00:00Z&sks=b&skv=2026-06-06&sig=x",
    )
    .unwrap();
    assert_eq!(
        ud.kind(),
        SasKind::UserDelegation {
            resource: SignedResource::Blob
        }
    );
    assert!(ud.unknown_params().is_empty());

    let dir = SasToken::parse("sv=2026-06-06&sr=d&sdd=2&sp=rl&se=2030-01-01&sig=x").unwrap();
    assert_eq!(dir.signed_resource(), Some(&SignedResource::Directory));
    assert_eq!(dir.directory_depth(), Some(2));

    for (sr, want) in [
        ("bv", SignedResource::BlobVersion),
        ("bs", SignedResource::BlobSnapshot),
        ("s", SignedResource::Other("s".into())),
    ] {
        let t = SasToken::parse(&format!("sv=2026-06-06&sr={sr}&sp=r&sig=x")).unwrap();
        assert_eq!(t.signed_resource(), Some(&want));
        assert_eq!(want.code(), sr);
    }
}

#[test]
fn policy_tokens_without_sp_or_se() {
    let t = SasToken::parse("sv=2026-06-06&si=readers&sr=c&sig=x").unwrap();
    assert_eq!(t.policy_id(), Some("readers"));
    assert!(t.permissions().is_empty());
    assert_eq!(t.expiry(), None);
}

#[test]
fn errors_are_clear_and_never_quote_the_signature() {
    let cases: &[(&str, &str)] = &[
        ("sv=2026-06-06&sr=c&sp=rl", "missing `sig`"),
        ("sv=2026-06-06&sr=c&sp=rl&sig=", "missing `sig`"),
        ("sr=c&sp=rl&sig=SECRETSIG", "missing `sv`"),
        (
            "sv=latest&sr=c&sig=SECRETSIG",
            "unsupported SAS version \"latest\"",
        ),
        ("sv=2026-06-06&sp=rl&sig=SECRETSIG", "missing `sr`"),
        (
            "sv=2026-06-06&sr=c&se=tomorrow&sig=SECRETSIG",
            "se=\"tomorrow\" is not a date",
        ),
        (
            "sv=2026-06-06&sr=c&st=2026-02-30&sig=SECRETSIG",
            "st=\"2026-02-30\"",
        ),
        (
            "sv=2026-06-06&sr=c&sp=rlz&sig=SECRETSIG",
            "unknown letter 'z'",
        ),
        (
            "sv=2026-06-06&sr=c&sp=r&sp=l&sig=SECRETSIG",
            "`sp` appears more than once",
        ),
        (
            "sv=2026-06-06&sr=c&sig=SECRETSIG&sig=SECRETSIG2",
            "`sig` appears more than once",
        ),
        ("sv=2026-06-06&ss=b&sp=r&sig=SECRETSIG", "missing `srt`"),
        (
            "sv=2026-06-06&ss=bx&srt=s&sig=SECRETSIG",
            "unknown letter 'x'",
        ),
        ("sv=2026-06-06&sr=d&sdd=-1&sig=SECRETSIG", "sdd=\"-1\""),
        (
            "sv=2026-06-06&sr=c&sig=SECRETSIG&x=%FF",
            "`x` is not valid UTF-8",
        ),
        ("https://acct.blob.core.windows.net/c", "no query string"),
        ("https://[bad/c?sig=SECRETSIG", "not a valid URL"),
    ];
    for (input, want) in cases {
        let e = SasToken::parse(input).unwrap_err().to_string();
        assert!(e.contains(want), "{input}: {e}");
        assert!(!e.contains("SECRETSIG"), "{input}: {e}");
        assert!(!e.contains('\n'), "{input}: {e}");
    }
}

#[test]
fn debug_redacts() {
    let t = SasToken::parse(&container_token()).unwrap();
    let d = format!("{t:?} {t:#?}");
    assert!(
        !d.contains(SIG) && !d.contains(SIG_ENC) && !d.contains("koLni"),
        "{d}"
    );
    assert!(d.contains("REDACTED"));
}

#[test]
fn validity() {
    let t = SasToken::parse(&container_token()).unwrap();
    assert_eq!(t.validity_problem(datetime!(2026-11-22 09:00 UTC)), None);
    assert_eq!(
        t.validity_problem(datetime!(2026-11-22 13:00 UTC)).unwrap(),
        "expired at 2026-11-22T10:00:00Z (3h ago)"
    );
    assert_eq!(
        t.validity_problem(datetime!(2026-11-22 07:55 UTC)).unwrap(),
        "not valid until 2026-11-22T08:00:00Z (in 5m)"
    );
    assert!(t
        .validity_problem(datetime!(2026-11-22 10:00 UTC))
        .unwrap()
        .starts_with("expired"));
}
