//! Property tests: what is encoded decodes back to the same event under any chunking, and the
//! decoder's outcome never depends on where reads are split.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use herald_sse::{DecodeError, Decoded, Decoder, DecoderConfig, Event, EventId, EventType};
use proptest::prelude::*;

/// Feeds `input` split at `cuts` (positions, any order, out-of-range clamped).
fn decode_split(
    input: &[u8],
    cuts: &[usize],
    config: DecoderConfig,
) -> (Vec<Decoded>, Option<DecodeError>, String) {
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (input.len() + 1)).collect();
    points.sort_unstable();
    let mut decoder = Decoder::new(config);
    let mut out = Vec::new();
    let mut error = None;
    let mut start = 0;
    for end in points.into_iter().chain([input.len()]) {
        if let Err(e) = decoder.feed(&input[start..end], |d| out.push(d)) {
            error = Some(e);
            break;
        }
        start = end;
    }
    (out, error, decoder.last_event_id().to_owned())
}

/// Text with plenty of the characters that matter to the format.
fn tricky_text() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![
            4 => any::<char>(),
            2 => Just('\n'),
            2 => Just('\r'),
            1 => Just(':'),
            1 => Just(' '),
            1 => Just('\u{feff}'),
            1 => Just('\0'),
        ],
        0..40,
    )
    .prop_map(|chars| chars.into_iter().collect())
}

fn field_text() -> impl Strategy<Value = String> {
    tricky_text().prop_map(|s| s.replace(['\r', '\n', '\0'], ""))
}

fn normalise_line_ends(s: &str) -> String {
    s.replace("\r\n", "\n").replace('\r', "\n")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(600))]

    #[test]
    fn encode_then_decode_gives_the_event_back(
        data in tricky_text(),
        event_type in proptest::option::of(field_text()),
        id in proptest::option::of(field_text()),
        retry in proptest::option::of(any::<u64>()),
        comment in proptest::option::of(tricky_text()),
        cuts in proptest::collection::vec(any::<usize>(), 0..6),
    ) {
        let mut builder = Event::builder().data(data.clone());
        if let Some(t) = &event_type { builder = builder.event_type(t.clone()); }
        if let Some(i) = &id { builder = builder.id(i.clone()); }
        if let Some(r) = retry { builder = builder.retry(r); }
        if let Some(c) = &comment { builder = builder.comment(c.clone()); }
        let event = builder.build().unwrap();
        let bytes = event.encode();

        let (out, error, last_id) = decode_split(&bytes, &cuts, DecoderConfig::default());
        prop_assert!(error.is_none());
        let mut expected = Vec::new();
        if let Some(r) = retry { expected.push(Decoded::Retry(r)); }
        let expected_id = id.clone().unwrap_or_default();
        expected.push(Decoded::Event(herald_sse::MessageEvent {
            event_type: match event_type.as_deref() {
                None | Some("") => "message".to_owned(),
                Some(t) => t.to_owned(),
            },
            data: normalise_line_ends(&data),
            last_event_id: expected_id.clone(),
        }));
        prop_assert_eq!(out, expected);
        prop_assert_eq!(last_id, expected_id);
    }

    #[test]
    fn a_stream_of_encoded_events_decodes_in_order(
        datas in proptest::collection::vec(tricky_text(), 1..8),
        cuts in proptest::collection::vec(any::<usize>(), 0..10),
    ) {
        let mut stream = Vec::new();
        for (i, d) in datas.iter().enumerate() {
            let e = Event::builder().id(i.to_string()).data(d.clone()).build().unwrap();
            stream.extend_from_slice(&e.encode());
            stream.extend_from_slice(&Event::comment("heartbeat").encode());
        }
        let (out, error, _) = decode_split(&stream, &cuts, DecoderConfig::default());
        prop_assert!(error.is_none());
        let got: Vec<(String, String)> = out.into_iter().map(|d| match d {
            Decoded::Event(e) => (e.last_event_id, e.data),
            Decoded::Retry(_) => unreachable!(),
        }).collect();
        let want: Vec<(String, String)> = datas.iter().enumerate()
            .map(|(i, d)| (i.to_string(), normalise_line_ends(d))).collect();
        prop_assert_eq!(got, want);
    }

    #[test]
    fn any_chunking_of_any_bytes_gives_the_same_outcome(
        input in proptest::collection::vec(
            prop_oneof![
                3 => any::<u8>(),
                2 => Just(b'\n'),
                2 => Just(b'\r'),
                2 => Just(b':'),
                1 => Just(b' '),
                1 => Just(0xEFu8),
                1 => Just(0xBBu8),
                1 => Just(0xBFu8),
            ].boxed().prop_union(
                prop_oneof![Just(b'd'), Just(b'a'), Just(b't'), Just(b'i'), Just(b'r')].boxed()
            ),
            0..200,
        ),
        cuts in proptest::collection::vec(any::<usize>(), 0..12),
        max_line_len in 4usize..64,
    ) {
        let config = DecoderConfig { max_line_len, max_event_size: 128 };
        let whole = decode_split(&input, &[], config);
        let split = decode_split(&input, &cuts, config);
        prop_assert_eq!(&whole, &split);
        let singles: Vec<usize> = (0..input.len()).collect();
        let bytewise = decode_split(&input, &singles, config);
        prop_assert_eq!(&whole, &bytewise);
    }

    #[test]
    fn invalid_ids_and_types_never_construct(s in tricky_text()) {
        let has_bad = s.contains(['\r', '\n', '\0']);
        prop_assert_eq!(EventId::new(s.clone()).is_err(), has_bad);
        prop_assert_eq!(EventType::new(s).is_err(), has_bad);
    }
}
