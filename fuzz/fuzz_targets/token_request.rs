//! A token-endpoint request: an `Authorization` header (the first line of the input, absent
//! when empty) and a form body (the rest), through parameter parsing and client credential
//! extraction.
//!
//! Properties: nothing panics; a request never authenticates with two methods at once; Basic
//! credentials never yield an empty client id; a form `client_id` that disagrees with Basic
//! is refused.

#![no_main]

use idbridge::oidc::clients::{AuthMethod, extract_credentials};
use idbridge::oidc::params::Params;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (header, body) = text.split_once('\n').unwrap_or((&text, ""));
    let header = (!header.is_empty()).then_some(header);
    let Ok(params) = Params::parse(body) else {
        return;
    };
    let _ = params.first_duplicate();
    let (Ok(form_id), Ok(form_secret)) = (params.get("client_id"), params.get("client_secret"))
    else {
        return;
    };
    let _ = params.get("grant_type");
    let _ = params.require("code");
    match extract_credentials(header, form_id, form_secret) {
        Ok(creds) => {
            assert!(!creds.id.is_empty(), "empty client id accepted");
            match creds.method {
                AuthMethod::Basic => {
                    assert!(header.is_some());
                    assert!(form_secret.is_none(), "two authentication methods accepted");
                    if let Some(fid) = form_id {
                        assert_eq!(fid, creds.id, "form client_id differs from Basic");
                    }
                }
                AuthMethod::Post => {
                    assert!(header.is_none());
                    assert_eq!(creds.secret.as_deref(), form_secret);
                }
                AuthMethod::None => {
                    assert!(header.is_none());
                    assert!(creds.secret.is_none());
                }
            }
        }
        Err(e) => {
            assert!(
                e.description.is_some(),
                "an error without description: {e:?}"
            );
        }
    }
});
