//! Fuzzes encode -> decode: any event that can be built decodes back to itself, with data line
//! ends normalised to LF and an absent or empty type reported as `message`.
#![no_main]

use arbitrary::Arbitrary;
use bytes::BytesMut;
use herald_sse::{Decoded, Decoder, Event, MessageEvent};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
struct Input {
    comment: Option<String>,
    event_type: Option<String>,
    retry: Option<u64>,
    id: Option<String>,
    data: Option<String>,
    /// Where to split the encoded frame before feeding it.
    split: u16,
}

fn normalise(data: &str) -> String {
    data.replace("\r\n", "\n").replace('\r', "\n")
}

fuzz_target!(|input: Input| {
    let mut builder = Event::builder();
    if let Some(c) = &input.comment {
        builder = builder.comment(c.as_str());
    }
    if let Some(t) = &input.event_type {
        builder = builder.event_type(t.as_str());
    }
    if let Some(r) = input.retry {
        builder = builder.retry(r);
    }
    if let Some(id) = &input.id {
        builder = builder.id(id.as_str());
    }
    if let Some(d) = &input.data {
        builder = builder.data(d.as_str());
    }
    let Ok(event) = builder.build() else {
        // An id or type with CR, LF or NUL: refused, as it must be.
        return;
    };

    let bytes = event.encode();
    assert_eq!(bytes.len(), event.encoded_len());
    let mut reused = BytesMut::from(&b"prefix"[..]);
    event.encode_into(&mut reused);
    assert_eq!(&reused[..6], b"prefix");
    assert_eq!(&reused[6..], &bytes[..]);

    let mut expected = Vec::new();
    if let Some(r) = input.retry {
        expected.push(Decoded::Retry(r));
    }
    let id = input.id.clone().unwrap_or_default();
    if let Some(d) = &input.data {
        let event_type = match input.event_type.as_deref() {
            None | Some("") => "message".to_owned(),
            Some(t) => t.to_owned(),
        };
        expected.push(Decoded::Event(MessageEvent {
            event_type,
            data: normalise(d),
            last_event_id: id.clone(),
        }));
    }

    let split = usize::from(input.split).min(bytes.len());
    let mut decoder = Decoder::default();
    let mut got = Vec::new();
    for chunk in [&bytes[..split], &bytes[split..]] {
        decoder
            .feed(chunk, |item| got.push(item))
            .unwrap_or_else(|e| panic!("decode error {e} on {bytes:?}"));
    }
    assert_eq!(got, expected, "frame {:?}", String::from_utf8_lossy(&bytes));
    // A frame with an id always ends with the blank line that commits it.
    assert_eq!(decoder.last_event_id(), id);
});
