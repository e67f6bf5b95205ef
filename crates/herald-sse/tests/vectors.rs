//! Every parser vector of `tests/vectors/eventsource-parser.json` (a copy of
//! `shared/vectors/eventsource-parser.json`, derived from web-platform-tests `eventsource/`,
//! BSD-3-Clause, credit the WPT project) fed whole, byte by byte, at every split point, and in the
//! vector's own chunks. The outcome must be the same every time.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use herald_sse::{Decoded, Decoder};
use serde_json::Value;

#[derive(Debug, PartialEq)]
struct Outcome {
    events: Vec<(String, String, String)>,
    retry: Option<u64>,
}

fn run(chunks: &[&[u8]]) -> Outcome {
    let mut decoder = Decoder::default();
    let mut events = Vec::new();
    let mut retry = None;
    for chunk in chunks {
        decoder
            .feed(chunk, |item| match item {
                Decoded::Event(e) => events.push((e.event_type, e.data, e.last_event_id)),
                Decoded::Retry(ms) => retry = Some(ms),
            })
            .unwrap();
    }
    decoder.finish();
    Outcome { events, retry }
}

struct Vector {
    name: String,
    input: Vec<u8>,
    chunks: Option<Vec<Vec<u8>>>,
    expected: Outcome,
}

fn vectors() -> Vec<Vector> {
    let text = include_str!("vectors/eventsource-parser.json");
    let root: Value = serde_json::from_str(text).unwrap();
    let list = root["vectors"].as_array().unwrap();
    assert!(list.len() >= 40, "the vector file is complete");
    list.iter()
        .map(|v| {
            let chunks: Option<Vec<Vec<u8>>> = v.get("chunks").map(|c| {
                c.as_array()
                    .unwrap()
                    .iter()
                    .map(|s| s.as_str().unwrap().as_bytes().to_vec())
                    .collect()
            });
            let input = match v.get("input") {
                Some(i) => i.as_str().unwrap().as_bytes().to_vec(),
                None => chunks.as_ref().unwrap().concat(),
            };
            let events = v["events"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| {
                    (
                        e["type"].as_str().unwrap().to_owned(),
                        e["data"].as_str().unwrap().to_owned(),
                        e["last_event_id"].as_str().unwrap().to_owned(),
                    )
                })
                .collect();
            Vector {
                name: v["name"].as_str().unwrap().to_owned(),
                input,
                chunks,
                expected: Outcome {
                    events,
                    retry: v.get("retry").map(|r| r.as_u64().unwrap()),
                },
            }
        })
        .collect()
}

#[test]
fn vectors_whole() {
    for v in vectors() {
        assert_eq!(run(&[&v.input]), v.expected, "{}", v.name);
    }
}

#[test]
fn vectors_byte_by_byte() {
    for v in vectors() {
        let bytes: Vec<&[u8]> = v.input.chunks(1).collect();
        assert_eq!(run(&bytes), v.expected, "{}", v.name);
    }
}

#[test]
fn vectors_at_every_split_point() {
    for v in vectors() {
        for split in 0..=v.input.len() {
            let (a, b) = v.input.split_at(split);
            assert_eq!(run(&[a, b]), v.expected, "{} split at {split}", v.name);
        }
    }
}

#[test]
fn vectors_at_every_pair_of_split_points_for_short_inputs() {
    for v in vectors().into_iter().filter(|v| v.input.len() <= 128) {
        for i in 0..=v.input.len() {
            for j in i..=v.input.len() {
                let chunks = [&v.input[..i], &v.input[i..j], &v.input[j..]];
                assert_eq!(run(&chunks), v.expected, "{} split at {i},{j}", v.name);
            }
        }
    }
}

#[test]
fn vectors_in_their_own_chunks() {
    let mut seen = 0;
    for v in vectors() {
        if let Some(chunks) = &v.chunks {
            let chunks: Vec<&[u8]> = chunks.iter().map(Vec::as_slice).collect();
            assert_eq!(run(&chunks), v.expected, "{}", v.name);
            seen += 1;
        }
    }
    assert!(seen >= 2);
}

#[test]
fn the_copy_matches_the_shared_vectors_when_present() {
    let shared = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/vectors/eventsource-parser.json");
    if let Ok(text) = std::fs::read_to_string(&shared) {
        assert_eq!(
            text,
            include_str!("vectors/eventsource-parser.json"),
            "shared/vectors changed: copy it into crates/herald-sse/tests/vectors/"
        );
    }
}
