//! The configuration loader over arbitrary YAML text.
//!
//! Properties: loading never panics, and a refused configuration always says why: at least
//! one error, each with a message.

#![no_main]

use idbridge::config::Config;
use libfuzzer_sys::fuzz_target;

/// A fuzzed config must not make the loader read devices or other files of this machine
/// (`secretFile`, `urlFile`; a path such as /dev/stdin would block the run). Those keys are
/// covered by the unit tests. Comment lines are ignored so the documented example still runs;
/// backslashes are refused since YAML escapes could spell the key.
fn reads_files(text: &str) -> bool {
    // Every character libyaml takes for a line break, so no key hides behind a "comment".
    text.split(['\n', '\r', '\u{85}', '\u{2028}', '\u{2029}'])
        .filter(|l| !l.trim_start().starts_with('#'))
        .any(|l| l.contains("File") || l.contains('\\'))
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if reads_files(text) {
        return;
    }
    match Config::from_yaml_str(text) {
        Ok(config) => {
            assert!(!config.issuer.is_empty());
            assert!(config.endpoint("/token").ends_with("/token"));
        }
        Err(errors) => {
            assert!(!errors.0.is_empty(), "refused without an error");
            for e in &errors.0 {
                assert!(
                    !e.message.trim().is_empty(),
                    "an error without a message at {:?}",
                    e.path
                );
            }
            let _ = errors.to_string();
        }
    }
});
