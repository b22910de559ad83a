//! openapi/openapi.yaml against the running server: every documented operation is routed, and
//! the responses of real requests (errors and successes) have the documented status, headers
//! and body shape. `scripts/schemathesis` does the same with generated requests; this module
//! keeps the description honest in every `cargo test`.

use reqwest::header::AUTHORIZATION;
use serde_json::Value;

use crate::harness::*;

const DEVICE_CLIENT: &str = "- id: tv\n  name: TV\n  public: true\n  grantTypes: [\"urn:ietf:params:oauth:grant-type:device_code\"]";

/// The OpenAPI document as JSON, with just enough of JSON Schema to check responses: `$ref`,
/// `allOf`, `oneOf`, `type`, `enum`, `required`, `properties`, `additionalProperties: false`,
/// `items`, `minimum`, `minItems`. Patterns are left to schemathesis.
struct Spec {
    doc: Value,
}

impl Spec {
    fn load() -> Spec {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi/openapi.yaml");
        let text = std::fs::read_to_string(path).expect("read openapi/openapi.yaml");
        let doc: Value = serde_yaml_ng::from_str(&text).expect("openapi.yaml is YAML");
        assert!(
            doc["openapi"]
                .as_str()
                .is_some_and(|v| v.starts_with("3.0")),
            "an OpenAPI 3.0 document"
        );
        Spec { doc }
    }

    /// Every (path, method) the document describes.
    fn operations(&self) -> Vec<(String, String)> {
        let paths = self.doc["paths"].as_object().expect("paths");
        let mut ops = Vec::new();
        for (path, item) in paths {
            for method in ["get", "post", "put", "patch", "delete"] {
                if item.get(method).is_some() {
                    ops.push((path.clone(), method.to_string()));
                }
            }
        }
        ops
    }

    fn resolve<'a>(&'a self, mut v: &'a Value) -> &'a Value {
        while let Some(r) = v.get("$ref").and_then(Value::as_str) {
            let pointer = r.strip_prefix('#').expect("local $ref");
            v = self
                .doc
                .pointer(pointer)
                .unwrap_or_else(|| panic!("dangling $ref {r}"));
        }
        v
    }

    fn validate(&self, schema: &Value, value: &Value, at: &str, errors: &mut Vec<String>) {
        let schema = self.resolve(schema);
        if let Some(all) = schema.get("allOf").and_then(Value::as_array) {
            for s in all {
                self.validate(s, value, at, errors);
            }
        }
        if let Some(one) = schema.get("oneOf").and_then(Value::as_array) {
            let matching = one
                .iter()
                .filter(|s| {
                    let mut e = Vec::new();
                    self.validate(s, value, at, &mut e);
                    e.is_empty()
                })
                .count();
            if matching != 1 {
                errors.push(format!("{at}: matches {matching} of the oneOf schemas"));
            }
        }
        if let Some(t) = schema.get("type").and_then(Value::as_str) {
            let ok = match t {
                "object" => value.is_object(),
                "array" => value.is_array(),
                "string" => value.is_string(),
                "integer" => value.is_i64() || value.is_u64(),
                "number" => value.is_number(),
                "boolean" => value.is_boolean(),
                other => panic!("type {other} is not handled here"),
            };
            if !ok {
                errors.push(format!("{at}: {value} is not of type {t}"));
                return;
            }
        }
        if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
            && !allowed.contains(value)
        {
            errors.push(format!("{at}: {value} is not one of {allowed:?}"));
        }
        if let (Some(min), Some(n)) = (
            schema.get("minimum").and_then(Value::as_i64),
            value.as_i64(),
        ) && n < min
        {
            errors.push(format!("{at}: {n} is below {min}"));
        }
        if let Value::Object(map) = value {
            for key in schema
                .get("required")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
            {
                if !map.contains_key(key) {
                    errors.push(format!("{at}: required {key} is missing"));
                }
            }
            let props = schema.get("properties").and_then(Value::as_object);
            for (key, v) in map {
                match props.and_then(|p| p.get(key)) {
                    Some(s) => self.validate(s, v, &format!("{at}.{key}"), errors),
                    None if schema.get("additionalProperties") == Some(&Value::Bool(false)) => {
                        errors.push(format!("{at}: {key} is not documented"));
                    }
                    None => {}
                }
            }
        }
        if let Value::Array(items) = value {
            if let Some(min) = schema.get("minItems").and_then(Value::as_u64)
                && (items.len() as u64) < min
            {
                errors.push(format!("{at}: fewer than {min} items"));
            }
            if let Some(s) = schema.get("items") {
                for (i, v) in items.iter().enumerate() {
                    self.validate(s, v, &format!("{at}[{i}]"), errors);
                }
            }
        }
    }

    /// Checks a response against the operation's documented response for its status: the
    /// status is documented, required headers are present, and a JSON body fits its schema.
    fn check(&self, path: &str, method: &str, resp: &Resp) {
        let op = &self.doc["paths"][path][method];
        assert!(op.is_object(), "{method} {path} is not documented");
        let status = resp.status.as_str();
        let documented = op["responses"].get(status).unwrap_or_else(|| {
            panic!(
                "{method} {path}: status {status} is not documented: {}",
                resp.body
            )
        });
        let documented = self.resolve(documented);
        for (name, header) in documented
            .get("headers")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
        {
            let header = self.resolve(header);
            if header["required"] == Value::Bool(true) {
                let value = resp.header(name).unwrap_or_else(|| {
                    panic!("{method} {path} {status}: required header {name} is missing")
                });
                let mut errors = Vec::new();
                self.validate(
                    &header["schema"],
                    &Value::String(value.into()),
                    name,
                    &mut errors,
                );
                assert!(errors.is_empty(), "{method} {path} {status}: {errors:?}");
            }
        }
        match documented.get("content").and_then(Value::as_object) {
            None => assert!(
                resp.body.is_empty(),
                "{method} {path} {status}: documented without a body, got {}",
                resp.body
            ),
            Some(content) => {
                let content_type = resp.header("content-type").unwrap_or_default();
                let (media, spec) = content
                    .iter()
                    .find(|(m, _)| content_type.starts_with(m.as_str()))
                    .unwrap_or_else(|| {
                        panic!("{method} {path} {status}: content type {content_type:?} is not documented")
                    });
                if media == "application/json" {
                    let mut errors = Vec::new();
                    self.validate(&spec["schema"], &resp.json(), "body", &mut errors);
                    assert!(
                        errors.is_empty(),
                        "{method} {path} {status} does not match the schema: {errors:?}\n{}",
                        resp.body
                    );
                }
            }
        }
    }
}

#[tokio::test]
async fn every_documented_operation_is_routed() {
    let spec = Spec::load();
    let app = TestApp::builder().spawn().await;
    let ops = spec.operations();
    assert!(
        ops.len() >= 8,
        "the document lists the JSON endpoints: {ops:?}"
    );
    for (path, method) in ops {
        let resp = match method.as_str() {
            "get" => app.get(&path).await,
            "post" => app.post(&path, &[], ClientAuth::None).await,
            other => panic!("{other} {path}: only GET and POST are served"),
        };
        assert!(
            resp.status != 404 && resp.status != 405,
            "{method} {path} is documented but answers {}",
            resp.status
        );
        spec.check(&path, &method, &resp);
    }
}

#[tokio::test]
async fn token_errors_match_the_schema() {
    let spec = Spec::load();
    let app = TestApp::builder().spawn().await;
    let basic = ClientAuth::Basic(GRAFANA_ID, GRAFANA_SECRET);

    let resp = app.token(&[("code", "x")], basic).await;
    resp.assert_oauth_error(400, "invalid_request");
    spec.check("/token", "post", &resp);

    let resp = app.token(&[("grant_type", "password")], basic).await;
    resp.assert_oauth_error(400, "unsupported_grant_type");
    spec.check("/token", "post", &resp);

    let resp = app
        .token(
            &[("grant_type", "authorization_code"), ("code", "forged")],
            basic,
        )
        .await;
    resp.assert_oauth_error(400, "invalid_grant");
    spec.check("/token", "post", &resp);

    let resp = app
        .token(
            &[("grant_type", "client_credentials")],
            ClientAuth::Basic(GRAFANA_ID, "wrong"),
        )
        .await;
    resp.assert_oauth_error(401, "invalid_client");
    spec.check("/token", "post", &resp);

    let resp = app
        .post_raw("/token", "application/json", "{}", basic)
        .await;
    resp.assert_oauth_error(400, "invalid_request");
    spec.check("/token", "post", &resp);

    let resp = app
        .post_raw(
            "/token",
            "application/x-www-form-urlencoded",
            "grant_type=client_credentials&grant_type=client_credentials",
            basic,
        )
        .await;
    resp.assert_oauth_error(400, "invalid_request");
    spec.check("/token", "post", &resp);

    let resp = app
        .post("/introspect", &[("token", "x")], ClientAuth::Public(CLI_ID))
        .await;
    resp.assert_oauth_error(400, "unauthorized_client");
    spec.check("/introspect", "post", &resp);

    let resp = app.post("/revoke", &[], basic).await;
    resp.assert_oauth_error(400, "invalid_request");
    spec.check("/revoke", "post", &resp);

    let resp = app.userinfo(Some("not-a-jwt")).await;
    assert_eq!(resp.status, 401);
    spec.check("/userinfo", "get", &resp);

    let resp = app
        .browser()
        .get_with(
            &app.url("/userinfo"),
            &[(AUTHORIZATION.as_str(), "Basic Zm9vOmJhcg==")],
        )
        .await;
    assert_eq!(resp.status, 400);
    spec.check("/userinfo", "get", &resp);
}

#[tokio::test]
async fn successful_responses_match_the_schema() {
    let spec = Spec::load();
    let app = TestApp::builder().client(DEVICE_CLIENT).spawn().await;

    spec.check(
        "/.well-known/openid-configuration",
        "get",
        &app.get("/.well-known/openid-configuration").await,
    );
    spec.check("/keys", "get", &app.get("/keys").await);

    // A user's tokens: code exchange, userinfo, introspection of both tokens, revocation.
    let browser = app.browser();
    let code = app.grafana_code(&browser, &ALICE).await;
    let basic = ClientAuth::Basic(GRAFANA_ID, GRAFANA_SECRET);
    let resp = app.exchange(&code, GRAFANA_REDIRECT, None, basic).await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    spec.check("/token", "post", &resp);
    let tokens = resp.json();
    let access = tokens["access_token"].as_str().expect("access token");
    let refresh = tokens["refresh_token"].as_str().expect("refresh token");

    let resp = app.userinfo(Some(access)).await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    spec.check("/userinfo", "get", &resp);

    for token in [access, refresh] {
        let resp = app.post("/introspect", &[("token", token)], basic).await;
        assert_eq!(resp.json()["active"], true, "{}", resp.body);
        spec.check("/introspect", "post", &resp);
    }

    let resp = app
        .token(
            &[("grant_type", "refresh_token"), ("refresh_token", refresh)],
            basic,
        )
        .await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    spec.check("/token", "post", &resp);

    let resp = app.post("/revoke", &[("token", access)], basic).await;
    assert_eq!(resp.status, 200);
    spec.check("/revoke", "post", &resp);
    let resp = app.post("/introspect", &[("token", access)], basic).await;
    assert_eq!(resp.json()["active"], false);
    spec.check("/introspect", "post", &resp);

    // A machine client's token.
    let resp = app
        .token(
            &[("grant_type", "client_credentials")],
            ClientAuth::Basic(SERVICE_ID, SERVICE_SECRET),
        )
        .await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    spec.check("/token", "post", &resp);

    // The device flow up to the first poll.
    let resp = app
        .post(
            "/device/code",
            &[("scope", "openid profile")],
            ClientAuth::Public("tv"),
        )
        .await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    spec.check("/device/code", "post", &resp);
    let device_code = resp.json()["device_code"]
        .as_str()
        .expect("device_code")
        .to_string();
    let resp = app
        .token(
            &[
                ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
                ("device_code", &device_code),
            ],
            ClientAuth::Public("tv"),
        )
        .await;
    resp.assert_oauth_error(400, "authorization_pending");
    spec.check("/token", "post", &resp);
}

/// RFC 6750 3: every refusal of a protected resource carries a `WWW-Authenticate` challenge,
/// even when the error description would echo characters a header cannot hold.
#[tokio::test]
async fn bearer_challenge_survives_control_characters_in_the_description() {
    let spec = Spec::load();
    let app = TestApp::builder().spawn().await;
    let resp = app
        .post_raw(
            "/userinfo",
            "application/x-www-form-urlencoded",
            "a%01%C3%A9=1&a%01%C3%A9=2",
            ClientAuth::None,
        )
        .await;
    assert_eq!(resp.status, 400, "{}", resp.body);
    spec.check("/userinfo", "post", &resp);
}
