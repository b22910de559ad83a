//! Forged, altered, expired and foreign tokens at userinfo and introspection (RFC 6750 3.1,
//! RFC 7515, RFC 7519, RFC 7662, RFC 8725, RFC 9068): only the algorithm bound to a published
//! key verifies, an ID token is not an access token, and anything not issued here is refused.

use aws_lc_rs::hmac;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self, EcdsaKeyPair, Ed25519KeyPair};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use reqwest::StatusCode;
use serde_json::json;

use super::{GRAFANA, alice_tokens, assert_invalid_token, forge, kid_and_alg, sign_as_server};
use crate::harness::{BOB, ClientAuth, SERVICE_ID, SERVICE_SECRET, TestApp, b64url, decode_jwt};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn userinfo_without_a_token_challenges_for_bearer() {
    let app = TestApp::spawn("").await;
    let resp = app.userinfo(None).await;
    assert_eq!(resp.status, StatusCode::UNAUTHORIZED);
    assert!(
        resp.header("www-authenticate")
            .unwrap_or("")
            .starts_with("Bearer")
    );
    // A non-bearer scheme is a malformed request.
    let resp = app
        .http
        .get(app.url("/userinfo"))
        .header("authorization", "Basic Zm9vOmJhcg==")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn userinfo_with_a_garbage_token() {
    let app = TestApp::spawn("").await;
    for garbage in ["garbage", "a.b.c", "eyJ9.eyJ9.eyJ9", "....", "x.y"] {
        assert_invalid_token(&app.userinfo(Some(garbage)).await, garbage);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn userinfo_with_an_id_token_instead_of_an_access_token() {
    let app = TestApp::spawn("").await;
    let (_, id_token) = alice_tokens(&app).await;
    assert_invalid_token(&app.userinfo(Some(&id_token)).await, "ID token");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn userinfo_with_an_alg_none_token() {
    let app = TestApp::spawn("").await;
    let (access, _) = alice_tokens(&app).await;
    let (header, _) = decode_jwt(&access);
    let forged = forge(
        &access,
        json!({"alg": "none", "kid": header["kid"], "typ": "at+jwt"}),
        b"",
    );
    assert_invalid_token(&app.userinfo(Some(&forged)).await, "alg none");
    let forged = forge(&access, json!({"alg": "none", "typ": "at+jwt"}), b"");
    assert_invalid_token(&app.userinfo(Some(&forged)).await, "alg none, no kid");
    // Without the signature part at all.
    let unsigned = forged.rsplit_once('.').unwrap().0.to_string();
    assert_invalid_token(&app.userinfo(Some(&unsigned)).await, "two parts");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn userinfo_with_an_hs256_token_keyed_with_the_public_key() {
    let app = TestApp::spawn("").await;
    let (access, _) = alice_tokens(&app).await;
    let (header, _) = decode_jwt(&access);
    let jwks = app.get("/keys").await;
    let jwk = &jwks.json()["keys"][0];
    let forged_header = json!({"alg": "HS256", "kid": header["kid"], "typ": "at+jwt"});
    let header_part = b64url(forged_header.to_string().as_bytes());
    let claims_part = access.split('.').nth(1).unwrap();
    let signing_input = format!("{header_part}.{claims_part}");
    // Try the key material an alg-confusion attacker would: the JWKS body, the JWK, and the
    // raw modulus.
    let modulus = base64::Engine::decode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        jwk["n"].as_str().unwrap_or(""),
    )
    .unwrap_or_default();
    for key_bytes in [jwks.body.as_bytes(), jwk.to_string().as_bytes(), &modulus] {
        let key = hmac::Key::new(hmac::HMAC_SHA256, key_bytes);
        let sig = hmac::sign(&key, signing_input.as_bytes());
        let forged = format!("{signing_input}.{}", b64url(sig.as_ref()));
        assert_invalid_token(&app.userinfo(Some(&forged)).await, "HS256 confusion");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn userinfo_with_an_unknown_kid() {
    let app = TestApp::spawn("").await;
    let (access, _) = alice_tokens(&app).await;
    let (header, _) = decode_jwt(&access);
    let sig = access.rsplit('.').next().unwrap();
    let sig =
        base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, sig).unwrap();
    let forged = forge(
        &access,
        json!({"alg": header["alg"], "kid": "not-a-kid", "typ": "at+jwt"}),
        &sig,
    );
    assert_invalid_token(&app.userinfo(Some(&forged)).await, "unknown kid");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn userinfo_with_an_expired_token() {
    let app = TestApp::spawn("").await;
    let (access, _) = alice_tokens(&app).await;
    assert_eq!(app.userinfo(Some(&access)).await.status, StatusCode::OK);
    app.clock.advance(3601);
    assert_invalid_token(&app.userinfo(Some(&access)).await, "expired");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn userinfo_with_a_tampered_token() {
    let app = TestApp::spawn("").await;
    let (access, _) = alice_tokens(&app).await;
    // Truncated signature.
    let truncated = &access[..access.len() - 4];
    assert_invalid_token(&app.userinfo(Some(truncated)).await, "truncated signature");
    // Claims changed under a valid signature.
    let (header, mut claims) = decode_jwt(&access);
    claims["sub"] = json!(BOB.user_id);
    let parts: Vec<&str> = access.split('.').collect();
    let forged = format!(
        "{}.{}.{}",
        b64url(header.to_string().as_bytes()),
        b64url(claims.to_string().as_bytes()),
        parts[2]
    );
    assert_invalid_token(&app.userinfo(Some(&forged)).await, "changed claims");
    // The token in two places at once.
    let resp = app
        .http
        .post(app.url("/userinfo"))
        .header("authorization", format!("Bearer {access}"))
        .form(&[("access_token", access.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
}

/// The header and claims of a compact JWS as the exact JSON text they carry.
fn raw_parts(token: &str) -> (String, String) {
    let mut parts = token.split('.');
    let mut text = || {
        let bytes = base64::Engine::decode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            parts.next().expect("part"),
        )
        .expect("base64url");
        String::from_utf8(bytes).expect("UTF-8")
    };
    let header = text();
    let claims = text();
    (header, claims)
}

/// Checks a token at both resource-side endpoints: userinfo refuses it, introspection calls
/// it inactive.
async fn assert_refused_everywhere(app: &TestApp, token: &str, what: &str) {
    assert_invalid_token(&app.userinfo(Some(token)).await, what);
    let resp = app.post("/introspect", &[("token", token)], GRAFANA).await;
    assert_eq!(resp.status, StatusCode::OK, "{what}: {}", resp.body);
    assert_eq!(resp.json(), json!({"active": false}), "{what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_signed_by_another_instance_is_an_unknown_key() {
    // Another deployment of the same software, same clients, same users: its tokens name a
    // key this instance never published.
    let app = TestApp::spawn("").await;
    let other = TestApp::spawn("").await;
    let (access, id_token) = alice_tokens(&other).await;
    assert_eq!(other.userinfo(Some(&access)).await.status, StatusCode::OK);
    let (kid, _) = kid_and_alg(&access);
    assert!(!app.jwks_kids().await.contains(&kid));
    assert_refused_everywhere(&app, &access, "another instance's access token").await;
    assert_refused_everywhere(&app, &id_token, "another instance's ID token").await;
    // Relabelled with this instance's kid, the signature no longer matches.
    let ours = app.jwks_kids().await.remove(0);
    let (header, _) = decode_jwt(&access);
    let sig = URL_SAFE_NO_PAD
        .decode(access.rsplit('.').next().unwrap())
        .unwrap();
    let relabelled = forge(
        &access,
        json!({"alg": header["alg"], "kid": ours, "typ": "at+jwt"}),
        &sig,
    );
    assert_refused_everywhere(&app, &relabelled, "relabelled kid").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn padded_truncated_and_re_encoded_signatures_are_refused() {
    let app = TestApp::spawn("").await;
    let (access, _) = alice_tokens(&app).await;
    assert_eq!(app.userinfo(Some(&access)).await.status, StatusCode::OK);
    let (signed, sig) = access.rsplit_once('.').unwrap();
    let bytes = URL_SAFE_NO_PAD.decode(sig).unwrap();
    // The last character of an RS256 signature carries unused low bits: flipping one gives a
    // second spelling of the same bytes, which a strict decoder refuses.
    let last = sig.chars().last().unwrap();
    let alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let index = alphabet.find(last).unwrap();
    let sibling = alphabet.chars().nth(index ^ 1).unwrap();
    let re_spelled = format!("{}{sibling}", &sig[..sig.len() - 1]);
    assert_eq!(
        base64::Engine::decode(
            &base64::engine::general_purpose::GeneralPurpose::new(
                &base64::alphabet::URL_SAFE,
                base64::engine::GeneralPurposeConfig::new()
                    .with_decode_allow_trailing_bits(true)
                    .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
            ),
            &re_spelled
        )
        .unwrap(),
        bytes,
        "the sibling spelling decodes to the same signature when trailing bits are allowed"
    );
    let standard = STANDARD.encode(&bytes);
    let cases = [
        (format!("{signed}.{sig}="), "one padding character"),
        (format!("{signed}.{sig}=="), "two padding characters"),
        (format!("{signed}.{sig}AA"), "two extra base64 characters"),
        (format!("{signed}.{sig}A"), "one extra base64 character"),
        (
            format!("{signed}.{}", &sig[..sig.len() - 1]),
            "one character short",
        ),
        (
            format!("{signed}.{}", &sig[..sig.len() - 4]),
            "four characters short",
        ),
        (
            format!("{signed}.{}", &sig[..sig.len() / 2]),
            "half a signature",
        ),
        (
            format!("{signed}.{re_spelled}"),
            "non-canonical trailing bits",
        ),
        (
            format!("{signed}.{standard}"),
            "standard base64 alphabet with padding",
        ),
        (format!("{signed}. {sig}"), "space before the signature"),
        (format!("{signed}."), "empty signature"),
    ];
    for (token, what) in &cases {
        assert_refused_everywhere(&app, token, what).await;
    }
    // The original still works: nothing above was mistaken for it.
    assert_eq!(app.userinfo(Some(&access)).await.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_algorithm_on_a_published_rs256_key_is_refused() {
    let app = TestApp::spawn("").await;
    let (access, _) = alice_tokens(&app).await;
    let (kid, alg) = kid_and_alg(&access);
    assert_eq!(alg, "RS256");
    let (_, claims_json) = raw_parts(&access);
    let rng = SystemRandom::new();
    let sign_with = |alg: &str| -> String {
        let header = json!({"alg": alg, "kid": kid, "typ": "at+jwt"}).to_string();
        let input = format!(
            "{}.{}",
            b64url(header.as_bytes()),
            b64url(claims_json.as_bytes())
        );
        let sig = match alg {
            "ES256" => {
                let pkcs8 =
                    EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
                        .unwrap();
                EcdsaKeyPair::from_pkcs8(
                    &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                    pkcs8.as_ref(),
                )
                .unwrap()
                .sign(&rng, input.as_bytes())
                .unwrap()
                .as_ref()
                .to_vec()
            }
            "EdDSA" => {
                let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
                Ed25519KeyPair::from_pkcs8(pkcs8.as_ref())
                    .unwrap()
                    .sign(input.as_bytes())
                    .as_ref()
                    .to_vec()
            }
            _ => URL_SAFE_NO_PAD
                .decode(access.rsplit('.').next().unwrap())
                .unwrap(),
        };
        format!("{input}.{}", b64url(&sig))
    };
    // Our own keys of other types, under the server's RS256 kid.
    for alg in ["ES256", "EdDSA"] {
        assert_refused_everywhere(&app, &sign_with(alg), alg).await;
    }
    // The genuine RSA signature relabelled with other RSA algorithm names.
    for alg in ["RS384", "RS512", "PS256", "rs256", "RS256 ", "none", ""] {
        assert_refused_everywhere(&app, &sign_with(alg), alg).await;
    }
    // No alg at all.
    let header = json!({"kid": kid, "typ": "at+jwt"});
    let sig = URL_SAFE_NO_PAD
        .decode(access.rsplit('.').next().unwrap())
        .unwrap();
    assert_refused_everywhere(&app, &forge(&access, header, &sig), "no alg").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_with_a_critical_extension_is_refused() {
    // RFC 7515 4.1.11: a recipient that does not understand an extension listed in `crit`
    // must refuse the JWS.
    let app = TestApp::spawn("").await;
    let (access, _) = alice_tokens(&app).await;
    let (kid, alg) = kid_and_alg(&access);
    let sig = URL_SAFE_NO_PAD
        .decode(access.rsplit('.').next().unwrap())
        .unwrap();
    let header = json!({"alg": alg, "kid": kid, "typ": "at+jwt", "crit": ["x-must-understand"], "x-must-understand": true});
    assert_refused_everywhere(&app, &forge(&access, header, &sig), "crit, forged").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_correctly_signed_token_with_a_critical_extension_is_refused() {
    let app = TestApp::spawn("").await;
    let (access, _) = alice_tokens(&app).await;
    let (kid, alg) = kid_and_alg(&access);
    let (_, claims) = raw_parts(&access);
    let header = format!(
        r#"{{"alg":"{alg}","kid":"{kid}","typ":"at+jwt","crit":["x-must-understand"],"x-must-understand":true}}"#
    );
    let token = sign_as_server(&app, &kid, &header, &claims).await;
    assert_refused_everywhere(&app, &token, "crit, correctly signed").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jws_without_exactly_three_parts_is_refused() {
    let app = TestApp::spawn("").await;
    let (access, _) = alice_tokens(&app).await;
    let parts: Vec<&str> = access.split('.').collect();
    let cases = [
        format!("{access}.x"),
        format!("{access}."),
        format!(".{access}"),
        format!(
            "{}.{}.{}.{}.{}",
            parts[0], parts[1], "AAAA", parts[2], "BBBB"
        ),
        format!("{}.{}", parts[0], parts[1]),
        format!("{}..{}", parts[0], parts[2]),
        format!("{}.{}.{}", parts[0], parts[2], parts[1]),
        access.replace('.', ".."),
    ];
    for token in &cases {
        assert_refused_everywhere(&app, token, token).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn correctly_signed_tokens_with_wrong_claims_are_refused() {
    // Signed with the server's own key (read from its database): only the claims checks can
    // refuse these, so each one is tested on its own.
    let app = TestApp::spawn("").await;
    let (access, _) = alice_tokens(&app).await;
    let (kid, alg) = kid_and_alg(&access);
    let (header, claims) = raw_parts(&access);
    // Control: the same header and claims re-signed verify.
    let control = sign_as_server(&app, &kid, &header, &claims).await;
    assert_eq!(app.userinfo(Some(&control)).await.status, StatusCode::OK);

    let claims_value: serde_json::Value = serde_json::from_str(&claims).unwrap();
    let with = |change: &dyn Fn(&mut serde_json::Value)| {
        let mut c = claims_value.clone();
        change(&mut c);
        c.to_string()
    };
    let issuer = app.issuer.clone();
    let now = app.clock.now();
    let cases: Vec<(String, String, &str)> = vec![
        (
            header.clone(),
            with(&|c| c["iss"] = json!("https://evil.example.com")),
            "foreign iss",
        ),
        (
            header.clone(),
            with(&|c| c["iss"] = json!(format!("{issuer}/"))),
            "iss with a slash",
        ),
        (
            header.clone(),
            with(&|c| c["iss"] = json!(issuer.to_uppercase())),
            "iss in capitals",
        ),
        (
            header.clone(),
            with(&|c| {
                c.as_object_mut().unwrap().remove("iss");
            }),
            "no iss",
        ),
        (
            header.clone(),
            with(&|c| c["exp"] = json!(now - 1)),
            "expired",
        ),
        (
            header.clone(),
            with(&|c| c["exp"] = json!((now + 3600).to_string())),
            "exp as a string",
        ),
        (
            header.clone(),
            with(&|c| c["exp"] = json!((now + 3600) as f64 + 0.5)),
            "exp as a float",
        ),
        (
            header.clone(),
            with(&|c| {
                c.as_object_mut().unwrap().remove("exp");
            }),
            "no exp",
        ),
        (
            header.clone(),
            with(&|c| {
                c.as_object_mut().unwrap().remove("sub");
            }),
            "no sub",
        ),
        (
            format!(r#"{{"alg":"{alg}","kid":"{kid}","typ":"JWT"}}"#),
            claims.clone(),
            "typ JWT (an ID token)",
        ),
        (
            format!(r#"{{"alg":"{alg}","kid":"{kid}"}}"#),
            claims.clone(),
            "no typ",
        ),
        (
            format!(r#"{{"alg":"{alg}","kid":"{kid}","typ":"AT+JWT "}}"#),
            claims.clone(),
            "typ with a space",
        ),
        (header.clone(), "[]".to_string(), "claims not an object"),
        (header.clone(), "null".to_string(), "claims null"),
        ("[]".to_string(), claims.clone(), "header not an object"),
    ];
    for (h, c, what) in &cases {
        let token = sign_as_server(&app, &kid, h, c).await;
        assert_refused_everywhere(&app, &token, what).await;
    }
    // A subject that is no user of ours: userinfo has no one to describe.
    let token = sign_as_server(&app, &kid, &header, &with(&|c| c["sub"] = json!("nobody"))).await;
    assert_invalid_token(&app.userinfo(Some(&token)).await, "unknown sub");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_json_keys_cannot_smuggle_a_claim() {
    // RFC 7515 4 and RFC 7519 4: a parser must refuse duplicate names or use the last one.
    // Whichever it does, a duplicate whose LAST value is bad must never pass.
    let app = TestApp::spawn("").await;
    let (access, _) = alice_tokens(&app).await;
    let (kid, alg) = kid_and_alg(&access);
    let (header, claims) = raw_parts(&access);
    let dup_header = format!(r#"{{"alg":"{alg}","kid":"{kid}","typ":"at+jwt","typ":"JWT"}}"#);
    let dup_alg = format!(r#"{{"alg":"{alg}","kid":"{kid}","typ":"at+jwt","alg":"none"}}"#);
    let dup_iss = format!(
        r#"{},"iss":"https://evil.example.com"}}"#,
        claims.trim_end_matches('}')
    );
    let dup_exp = format!(r#"{},"exp":1}}"#, claims.trim_end_matches('}'));
    for (h, c, what) in [
        (&dup_header, &claims, "typ at+jwt then JWT"),
        (&dup_alg, &claims, "alg then none"),
        (&header, &dup_iss, "iss then a foreign one"),
        (&header, &dup_exp, "exp then an expired one"),
    ] {
        let token = sign_as_server(&app, &kid, h, c).await;
        assert_refused_everywhere(&app, &token, what).await;
    }
    // The other order (the good value last) is either refused or read as the good value:
    // never a server failure.
    let dup_iss_good_last = format!(
        r#"{{"iss":"https://evil.example.com",{}"#,
        claims.trim_start_matches('{')
    );
    let token = sign_as_server(&app, &kid, &header, &dup_iss_good_last).await;
    let resp = app.userinfo(Some(&token)).await;
    assert!(
        resp.status == StatusCode::OK || resp.status == StatusCode::UNAUTHORIZED,
        "{}",
        resp.status
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn introspection_calls_every_forged_token_inactive() {
    let app = TestApp::spawn("").await;
    let (access, id_token) = alice_tokens(&app).await;
    let (kid, _) = kid_and_alg(&access);
    let none = forge(
        &access,
        json!({"alg": "none", "kid": kid, "typ": "at+jwt"}),
        b"",
    );
    let key = hmac::Key::new(hmac::HMAC_SHA256, app.get("/keys").await.body.as_bytes());
    let hs_header = b64url(
        json!({"alg": "HS256", "kid": kid, "typ": "at+jwt"})
            .to_string()
            .as_bytes(),
    );
    let hs_input = format!("{hs_header}.{}", access.split('.').nth(1).unwrap());
    let hs = format!(
        "{hs_input}.{}",
        b64url(hmac::sign(&key, hs_input.as_bytes()).as_ref())
    );
    for (token, what) in [
        (id_token.as_str(), "ID token"),
        (none.as_str(), "alg none"),
        (hs.as_str(), "HS256 with the public key"),
        ("garbage", "garbage"),
    ] {
        assert_refused_everywhere(&app, token, what).await;
    }
    // The genuine token is active, then inactive once expired.
    assert_eq!(app.introspect(&access, GRAFANA).await["active"], true);
    app.clock.advance(3601);
    assert_refused_everywhere(&app, &access, "expired").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_machine_token_is_not_a_user_token() {
    // A client-credentials token names no user: userinfo refuses it although its signature,
    // issuer and expiry are fine. Any of our user access tokens is accepted whatever client
    // it was issued to (userinfo is ours, not the client's resource).
    let app = TestApp::spawn("").await;
    let resp = app
        .token(
            &[
                ("grant_type", "client_credentials"),
                ("scope", "inventory.read"),
            ],
            ClientAuth::Basic(SERVICE_ID, SERVICE_SECRET),
        )
        .await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    let machine = resp.json()["access_token"].as_str().unwrap().to_string();
    assert_invalid_token(
        &app.userinfo(Some(&machine)).await,
        "client credentials token",
    );
    let (access, _) = alice_tokens(&app).await;
    let (_, claims) = decode_jwt(&access);
    assert_eq!(claims["aud"], crate::harness::GRAFANA_ID);
    assert_eq!(app.userinfo(Some(&access)).await.status, StatusCode::OK);
}
