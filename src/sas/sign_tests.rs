//! Tests of [`super`] signing (the known-answer vectors are in `vectors_test.rs`).

use super::*;
use crate::sas::{SasKind, SasToken, SignedResource};
use time::macros::datetime;

const KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

fn params(version: &str) -> ServiceSasParams {
    ServiceSasParams {
        version: version.into(),
        blob: Some("dir/a.txt".into()),
        start: Some(datetime!(2026-01-01 00:00 UTC)),
        ip: Some("10.0.0.1".into()),
        protocol: Some("https".into()),
        cache_control: Some("cc".into()),
        content_type: Some("ct".into()),
        ..ServiceSasParams::new("acct", "cont", "lr", datetime!(2026-01-02 00:00 UTC))
    }
}

#[test]
fn service_layout_per_version() {
    let head = "rl\n2026-01-01T00:00:00Z\n2026-01-02T00:00:00Z\n/blob/acct/cont/dir/a.txt\n\n10.0.0.1\nhttps\n";
    assert_eq!(
        string_to_sign_service(&params("2015-04-05")),
        format!("{head}2015-04-05\ncc\n\n\n\nct")
    );
    assert_eq!(
        string_to_sign_service(&params("2018-03-28")),
        format!("{head}2018-03-28\ncc\n\n\n\nct")
    );
    assert_eq!(
        string_to_sign_service(&params("2018-11-09")),
        format!("{head}2018-11-09\nb\n\ncc\n\n\n\nct")
    );
    assert_eq!(
        string_to_sign_service(&params("2020-10-02")),
        format!("{head}2020-10-02\nb\n\ncc\n\n\n\nct")
    );
    let mut p = params("2020-12-06");
    p.encryption_scope = Some("scope".into());
    assert_eq!(
        string_to_sign_service(&p),
        format!("{head}2020-12-06\nb\n\nscope\ncc\n\n\n\nct")
    );
    p.snapshot_time = Some("2026-01-01T00:00:00.0000000Z".into());
    assert_eq!(p.signed_resource(), "bs");
    assert_eq!(
        string_to_sign_service(&p),
        format!("{head}2020-12-06\nbs\n2026-01-01T00:00:00.0000000Z\nscope\ncc\n\n\n\nct")
    );
}

#[test]
fn account_layout_per_version() {
    let mut p = AccountSasParams {
        account: "devstoreaccount1".into(),
        resource_types: "ocs".into(),
        permissions: "pucaldwr".into(),
        expiry: Some(datetime!(2030-01-01 00:00 UTC)),
        version: "2019-12-12".into(),
        ..Default::default()
    };
    assert_eq!(
        string_to_sign_account(&p),
        "devstoreaccount1\nrwdlacup\nb\nsco\n\n2030-01-01T00:00:00Z\n\n\n2019-12-12\n"
    );
    p.version = "2026-06-06".into();
    p.protocol = Some("https,http".into());
    assert_eq!(
        string_to_sign_account(&p),
        "devstoreaccount1\nrwdlacup\nb\nsco\n\n2030-01-01T00:00:00Z\n\nhttps,http\n2026-06-06\n\n"
    );
}

#[test]
fn generated_service_token_parses_back() {
    let p = params(crate::sas::DEFAULT_VERSION);
    let token = sign_service_sas(&p, KEY).unwrap();
    let names: Vec<&str> = token
        .split('&')
        .map(|kv| kv.split('=').next().unwrap())
        .collect();
    assert_eq!(
        names,
        ["sv", "st", "se", "sr", "sp", "sip", "spr", "rscc", "rsct", "sig"]
    );
    let t = SasToken::parse(&token).unwrap();
    assert_eq!(t.query(), token);
    assert_eq!(t.version(), Some(crate::sas::DEFAULT_VERSION));
    assert_eq!(t.permissions().letters(), "rl");
    assert_eq!(t.start(), p.start);
    assert_eq!(t.expiry(), p.expiry);
    assert_eq!(
        t.kind(),
        SasKind::Service {
            resource: SignedResource::Blob
        }
    );
    assert_eq!(t.get("rscc"), Some("cc"));
    // Deterministic: same inputs, same signature.
    assert_eq!(sign_service_sas(&p, KEY).unwrap(), token);
    // A different key signs differently.
    let other = sign_service_sas(&p, "AAAA").unwrap();
    assert_ne!(SasToken::parse(&other).unwrap().signature(), t.signature());
}

#[test]
fn generated_account_token_parses_back() {
    let p = AccountSasParams {
        account: "devstoreaccount1".into(),
        resource_types: "sco".into(),
        permissions: "rwdlacup".into(),
        expiry: Some(datetime!(2030-01-01 00:00 UTC)),
        ..Default::default()
    };
    let token = sign_account_sas(&p, KEY).unwrap();
    assert!(token.starts_with(&format!(
        "sv={}&ss=b&srt=sco&sp=rwdlacup&se=2030-01-01T00%3A00%3A00Z&sig=",
        crate::sas::DEFAULT_VERSION
    )));
    let t = SasToken::parse(&token).unwrap();
    assert!(matches!(t.kind(), SasKind::Account { .. }));
    assert_eq!(t.query(), token);
}

#[test]
fn signing_refuses_bad_input_with_clear_errors() {
    let ok = params("2026-06-06");
    let cases: Vec<(ServiceSasParams, &str, &str)> = vec![
        (
            ServiceSasParams {
                version: "2014-02-14".into(),
                ..ok.clone()
            },
            KEY,
            "before 2015-04-05",
        ),
        (
            ServiceSasParams {
                version: "v2".into(),
                ..ok.clone()
            },
            KEY,
            "YYYY-MM-DD",
        ),
        (
            ServiceSasParams {
                permissions: "rq".into(),
                ..ok.clone()
            },
            KEY,
            "unknown letter 'q'",
        ),
        (
            ServiceSasParams {
                start: Some(datetime!(2026-01-03 00:00 UTC)),
                ..ok.clone()
            },
            KEY,
            "is not after start",
        ),
        (
            ServiceSasParams {
                expiry: None,
                ..ok.clone()
            },
            KEY,
            "expiry are required",
        ),
        (
            ServiceSasParams {
                protocol: Some("http".into()),
                ..ok.clone()
            },
            KEY,
            "protocol",
        ),
        (
            ServiceSasParams {
                encryption_scope: Some("s".into()),
                version: "2020-10-02".into(),
                ..ok.clone()
            },
            KEY,
            "2020-12-06",
        ),
        (
            ok.clone(),
            "not base64!",
            "invalid account key: it is not valid base64",
        ),
        (ok.clone(), "", "invalid account key: it is empty"),
    ];
    for (p, key, want) in cases {
        let e = sign_service_sas(&p, key).unwrap_err().to_string();
        assert!(e.contains(want), "{e}");
        assert!(!e.contains("Eby8") && !e.contains("base64!"), "{e}");
    }
    // A stored policy may carry the permissions and expiry.
    let policy = ServiceSasParams {
        permissions: String::new(),
        expiry: None,
        identifier: Some("readers".into()),
        ..ok
    };
    let t = SasToken::parse(&sign_service_sas(&policy, KEY).unwrap()).unwrap();
    assert_eq!(t.policy_id(), Some("readers"));
    assert_eq!(t.get("sp"), None);
}

/// Tokens made by Microsoft's azure-storage-blob 12.31.1 (`generate_account_sas`,
/// `generate_container_sas`, `generate_blob_sas`) with the well-known emulator key:
/// account SAS layouts, and the ses / rscl / snapshot lines the JSON vectors lack.
#[test]
fn python_sdk_known_answers() {
    let sig = |token: &str| SasToken::parse(token).unwrap().signature().to_string();
    let expiry = Some(datetime!(2030-01-01 00:00 UTC));

    let mut account = AccountSasParams {
        account: "devstoreaccount1".into(),
        resource_types: "sco".into(),
        permissions: "rwdlacup".into(),
        expiry,
        version: "2026-10-06".into(),
        ..Default::default()
    };
    let ours = sign_account_sas(&account, KEY).unwrap();
    assert!(sig(&ours) == "kSlmeGOsUQEjbSA/8i1ttZYSWhjht/5MfRzGf8H6GLk=");

    account.start = Some(datetime!(2029-12-31 12:00 UTC));
    account.ip = Some("10.0.0.1".into());
    account.protocol = Some("https".into());
    account.encryption_scope = Some("scope1".into());
    let ours = sign_account_sas(&account, KEY).unwrap();
    assert!(sig(&ours) == "07g1OZjMd/AB5P3Q6Xqjm10ahHqExPbciQ5OPCgMARI=");
    let t = SasToken::parse(&ours).unwrap();
    assert_eq!(t.encryption_scope(), Some("scope1"));

    let container = ServiceSasParams {
        version: "2026-10-06".into(),
        encryption_scope: Some("scope1".into()),
        content_language: Some("en".into()),
        ..ServiceSasParams::new(
            "devstoreaccount1",
            "c1",
            "rl",
            datetime!(2030-01-01 00:00 UTC),
        )
    };
    let ours = sign_service_sas(&container, KEY).unwrap();
    assert!(sig(&ours) == "b95e6qrdphz4TI7XXpiHoroO2072c4RAEjdMDS8aI/M=");

    let snapshot = ServiceSasParams {
        version: "2026-10-06".into(),
        blob: Some("a/b c.txt".into()),
        snapshot_time: Some("2026-01-01T00:00:00.0000000Z".into()),
        ..ServiceSasParams::new(
            "devstoreaccount1",
            "c1",
            "r",
            datetime!(2030-01-01 00:00 UTC),
        )
    };
    let ours = sign_service_sas(&snapshot, KEY).unwrap();
    assert!(sig(&ours) == "CjCKsafBtAohfUngd7bM5CW8FzfOgrO6ZDYzrZS9Gjw=");
    let t = SasToken::parse(&ours).unwrap();
    assert_eq!(t.signed_resource(), Some(&SignedResource::BlobSnapshot));
    assert_eq!(
        t.get("snapshot"),
        None,
        "the snapshot time is signed, not sent"
    );
}
