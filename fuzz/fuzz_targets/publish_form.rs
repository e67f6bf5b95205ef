//! The publish form parser: any body either gives an update whose id and type are valid SSE
//! fields and whose topics are within the limit, or a message for a 400 answer. Never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    let fields = herald_http::form::parse(body);
    match herald_http::publish::parse_update(body, 8) {
        Ok(update) => {
            assert!(fields.is_ok(), "an update from a body whose fields do not decode");
            assert!(!update.topics.is_empty() && update.topics.len() <= 8);
            if let Some(id) = &update.id {
                assert!(!id.as_str().contains(['\r', '\n', '\0']));
                assert!(!id.as_str().starts_with('#'));
            }
            if let Some(t) = &update.event_type {
                assert!(!t.as_str().contains(['\r', '\n', '\0']));
            }
        }
        Err(message) => assert!(!message.is_empty()),
    }
});
