//! Topic selectors: parsing any string and matching any topic never panics, stays fast (run with
//! `-timeout=1`: one input over a second is a finding), and agrees with the simple cases: `*`
//! matches everything, a selector matches itself, and a selector without a template expression
//! matches exactly itself.
#![no_main]

use herald_hub::selector::Selector;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (&str, &str)| {
    let (raw, topic) = input;
    let selector = Selector::parse(raw);
    let matched = selector.matches(topic);
    assert!(selector.matches(raw), "a selector matches itself");
    if raw == "*" {
        assert!(matched);
    } else if let Some(exact) = selector.exact_topic() {
        assert_eq!(matched, exact == topic);
    }
});
