//! Known-answer vectors: `tests/data/sas-vectors.json` (Microsoft's worked example and
//! tokens made by azure-storage-blob). For each vector: our string-to-sign equals the
//! vector's, our signature equals the one in its token, and parsing its token gives back
//! the vector's fields.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

use super::dates::{format_sas_date, parse_sas_date};
use super::{sign_service_sas, string_to_sign_service, SasKind, SasToken, ServiceSasParams};
use super::{SignedResource, DEFAULT_VERSION};

fn load() -> Vec<Value> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/sas-vectors.json");
    let text = std::fs::read_to_string(path).expect("read sas-vectors.json");
    let doc: Value = serde_json::from_str(&text).expect("parse sas-vectors.json");
    doc["vectors"].as_array().expect("a vectors array").clone()
}

fn field(v: &Value, name: &str) -> Option<String> {
    v.get(name)
        .map(|x| x.as_str().expect("string field").to_string())
}

/// The vector's fields as signing parameters; fails on a field we would silently ignore.
fn params(v: &Value) -> ServiceSasParams {
    const HANDLED: &[&str] = &[
        "kind",
        "account",
        "key",
        "container",
        "blob",
        "permissions",
        "start",
        "expiry",
        "ip",
        "protocol",
        "version",
        "policy_id",
        "snapshot_time",
        "encryption_scope",
        "cache_control",
        "content_disposition",
        "content_encoding",
        "content_language",
        "content_type",
        "string_to_sign",
        "token",
        "note",
    ];
    for k in v.as_object().unwrap().keys() {
        assert!(
            HANDLED.contains(&k.as_str()),
            "vector field {k} is not handled"
        );
    }
    let date = |n| field(v, n).map(|s| parse_sas_date(&s).expect("vector date"));
    ServiceSasParams {
        account: field(v, "account").unwrap(),
        container: field(v, "container").unwrap(),
        blob: field(v, "blob"),
        permissions: field(v, "permissions").unwrap_or_default(),
        start: date("start"),
        expiry: date("expiry"),
        ip: field(v, "ip"),
        protocol: field(v, "protocol"),
        identifier: field(v, "policy_id"),
        version: field(v, "version").unwrap(),
        snapshot_time: field(v, "snapshot_time"),
        encryption_scope: field(v, "encryption_scope"),
        cache_control: field(v, "cache_control"),
        content_disposition: field(v, "content_disposition"),
        content_encoding: field(v, "content_encoding"),
        content_language: field(v, "content_language"),
        content_type: field(v, "content_type"),
    }
}

#[test]
fn every_vector_signs_and_parses() {
    let vectors = load();
    assert!(
        vectors.len() >= 5,
        "expected the 5 vectors, got {}",
        vectors.len()
    );
    let mut checked = 0;
    for (i, v) in vectors.iter().enumerate() {
        let p = params(v);
        let key = field(v, "key").unwrap();
        let want_sts = field(v, "string_to_sign").unwrap();
        let vector_token = SasToken::parse(&field(v, "token").unwrap())
            .unwrap_or_else(|e| panic!("vector {i}: {e}"));

        // 1. String-to-sign.
        assert_eq!(
            string_to_sign_service(&p),
            want_sts,
            "vector {i}: string-to-sign"
        );

        // 2. The signature: ours over the vector's string-to-sign, and our whole token.
        let mut mac = Hmac::<Sha256>::new_from_slice(&STANDARD.decode(&key).unwrap()).unwrap();
        mac.update(want_sts.as_bytes());
        let direct = STANDARD.encode(mac.finalize().into_bytes());
        assert!(
            direct == vector_token.signature(),
            "vector {i}: HMAC of string_to_sign"
        );
        let ours = SasToken::parse(&sign_service_sas(&p, &key).unwrap()).unwrap();
        assert!(
            ours.signature() == vector_token.signature(),
            "vector {i}: signature"
        );

        // 3. Parsing the vector's token gives back its fields (and so does ours).
        for t in [&vector_token, &ours] {
            assert_eq!(t.version(), Some(p.version.as_str()), "vector {i}: sv");
            assert_eq!(t.start(), p.start, "vector {i}: st");
            assert_eq!(t.expiry(), p.expiry, "vector {i}: se");
            assert_eq!(
                t.start().map(format_sas_date),
                field(v, "start"),
                "vector {i}: st"
            );
            assert_eq!(
                t.expiry().map(format_sas_date),
                field(v, "expiry"),
                "vector {i}: se"
            );
            assert_eq!(t.permissions().letters(), p.permissions, "vector {i}: sp");
            assert_eq!(t.ip_range(), p.ip.as_deref(), "vector {i}: sip");
            assert_eq!(t.protocol(), p.protocol.as_deref(), "vector {i}: spr");
            assert_eq!(t.policy_id(), p.identifier.as_deref(), "vector {i}: si");
            assert_eq!(
                t.encryption_scope(),
                p.encryption_scope.as_deref(),
                "vector {i}: ses"
            );
            for (param, want) in [
                ("rscc", &p.cache_control),
                ("rscd", &p.content_disposition),
                ("rsce", &p.content_encoding),
                ("rscl", &p.content_language),
                ("rsct", &p.content_type),
            ] {
                assert_eq!(t.get(param), want.as_deref(), "vector {i}: {param}");
            }
            let resource = match field(v, "kind").unwrap().as_str() {
                "container" => SignedResource::Container,
                "blob" => SignedResource::Blob,
                k => panic!("vector {i}: unknown kind {k}"),
            };
            assert_eq!(t.kind(), SasKind::Service { resource }, "vector {i}: sr");
            assert!(t.unknown_params().is_empty(), "vector {i}: unknown params");
            // Re-encoding keeps every value.
            assert_eq!(
                &SasToken::parse(&t.query()).unwrap(),
                t,
                "vector {i}: query()"
            );
        }
        checked += 1;
    }
    assert_eq!(checked, vectors.len());
}

#[test]
fn default_version_uses_the_newest_layout() {
    // The vectors' newest layout (2020-12-06+, with the ses line) applies to the default.
    assert!(DEFAULT_VERSION >= "2020-12-06");
}
