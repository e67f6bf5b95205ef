//! Fuzzes `Decoder` with small limits: no panic, the same outcome however the input is chunked,
//! and nothing it hands out larger than its limits allow.
//!
//! Input layout: byte 0 picks the limits (bits 3-4, see [`CONFIGS`]) and `n` (bits 0-2); the next
//! `n` bytes are chunk sizes used in a cycle (0 = an empty read); the rest is the event stream.
#![no_main]

use herald_sse::{DecodeError, Decoded, Decoder, DecoderConfig};
use libfuzzer_sys::fuzz_target;

/// The limits under test: the main ones, and small ones the fuzzer reaches often (an event limit
/// below the line limit too).
const CONFIGS: [DecoderConfig; 4] = [
    config(4096, 16384),
    config(64, 256),
    config(256, 64),
    config(16, 16),
];

const fn config(max_line_len: usize, max_event_size: usize) -> DecoderConfig {
    DecoderConfig {
        max_line_len,
        max_event_size,
    }
}

#[derive(Debug, PartialEq)]
struct Outcome {
    items: Vec<Decoded>,
    error: Option<DecodeError>,
    last_event_id: String,
}

fn run(config: DecoderConfig, stream: &[u8], mut sizes: impl Iterator<Item = usize>) -> Outcome {
    // Invalid UTF-8 becomes U+FFFD (3 bytes) per invalid byte at most, so a field taken from one
    // line can be up to three times the line limit.
    let max_field = 3 * config.max_line_len;
    let mut decoder = Decoder::new(config);
    let mut items = Vec::new();
    let mut error = None;
    let mut rest = stream;
    while !rest.is_empty() {
        let size = sizes.next().unwrap_or(rest.len()).min(rest.len());
        let (chunk, tail) = rest.split_at(size);
        rest = tail;
        if let Err(e) = decoder.feed(chunk, |item| items.push(item)) {
            // A failed decoder stays failed, with the same error, and reports nothing more.
            let again = decoder.feed(b"data: x\n\n", |_| panic!("item after an error"));
            assert_eq!(again.as_ref(), Err(&e));
            error = Some(e);
            break;
        }
    }
    for item in &items {
        if let Decoded::Event(e) = item {
            assert!(
                e.data.len() <= config.max_event_size,
                "data {}",
                e.data.len()
            );
            assert!(
                e.event_type.len() <= max_field,
                "type {}",
                e.event_type.len()
            );
            assert!(!e.event_type.is_empty());
            assert!(
                e.last_event_id.len() <= max_field,
                "id {}",
                e.last_event_id.len()
            );
            assert!(!e.last_event_id.contains('\0'));
        }
    }
    Outcome {
        items,
        error,
        last_event_id: decoder.last_event_id().to_owned(),
    }
}

fuzz_target!(|input: &[u8]| {
    let Some((&n, rest)) = input.split_first() else {
        return;
    };
    let config = CONFIGS[usize::from(n >> 3) % CONFIGS.len()];
    let n = usize::from(n % 8).min(rest.len());
    let (sizes, stream) = rest.split_at(n);

    let whole = run(config, stream, std::iter::empty());
    let bytewise = run(config, stream, std::iter::repeat(1));
    assert_eq!(whole, bytewise, "whole vs byte by byte");
    if sizes.iter().any(|&s| s != 0) {
        let chunked = run(
            config,
            stream,
            sizes.iter().map(|&s| usize::from(s)).cycle(),
        );
        assert_eq!(whole, chunked, "whole vs chunks of {sizes:?}");
    }
});
