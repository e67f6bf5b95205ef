//! Workloads shared by the criterion benches (`sse.rs`) and the allocation probe (`alloc.rs`).
//! Everything is generated deterministically, so every run measures the same bytes.

use herald_sse::{Decoded, Decoder, DecoderConfig, Event};

/// Reads as a socket would deliver them for the realistic stream.
pub const REALISTIC_READ: usize = 16 * 1024;
/// Reads for the huge-event streams.
pub const HUGE_READ: usize = 64 * 1024;
/// Size of the huge events.
pub const HUGE: usize = 16 << 20;

/// Limits above [`HUGE`], so the huge events are accepted.
pub const HUGE_CONFIG: DecoderConfig = DecoderConfig {
    max_line_len: 2 * HUGE,
    max_event_size: 2 * HUGE,
};

/// A tiny deterministic generator (xorshift64*), so the workload needs no extra dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// True with probability 1/n.
    fn one_in(&mut self, n: u64) -> bool {
        self.next() % n == 0
    }
}

/// About `target` bytes of what a hub sends: ~100-byte JSON updates, half with `id:`, a quarter
/// with `event:`, one in ten pretty-printed over three `data:` lines, a `: heartbeat` comment
/// frame every 32 frames and a `retry:` now and then. Returns the bytes and the number of events
/// a decoder dispatches from them.
pub fn realistic_stream(target: usize) -> (Vec<u8>, u64) {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut out = Vec::with_capacity(target + 512);
    let mut seq = 0u64;
    while out.len() < target {
        seq += 1;
        if seq % 32 == 0 {
            out.extend_from_slice(b": heartbeat\n\n");
            continue;
        }
        if rng.one_in(200) {
            out.extend_from_slice(b"retry: 3000\n");
        }
        if rng.one_in(4) {
            out.extend_from_slice(b"event: price\n");
        }
        if rng.one_in(2) {
            let id = format!("id: urn:uuid:0190a1b2-c3d4-7e5f-8a9b-{seq:012x}\n");
            out.extend_from_slice(id.as_bytes());
        }
        let book = rng.next() % 100_000;
        let price = rng.next() % 10_000;
        let stock = rng.next() % 1_000;
        if rng.one_in(10) {
            let json = format!(
                "data: {{\ndata:   \"@id\": \"/books/{book}\", \"price\": {}.{:02},\ndata:   \"stock\": {stock}, \"seq\": {seq} }}\n\n",
                price / 100,
                price % 100
            );
            out.extend_from_slice(json.as_bytes());
        } else {
            let json = format!(
                "data: {{\"@id\":\"/books/{book}\",\"title\":\"Book {book}\",\"price\":{}.{:02},\"stock\":{stock},\"seq\":{seq}}}\n\n",
                price / 100,
                price % 100
            );
            out.extend_from_slice(json.as_bytes());
        }
    }
    let events = count_events(&out, REALISTIC_READ, DecoderConfig::default());
    (out, events)
}

/// One event whose data is a single line of `size` bytes.
pub fn huge_single_line(size: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(size + 16);
    out.extend_from_slice(b"data: ");
    out.extend((0..size).map(|i| b'a' + (i % 26) as u8));
    out.extend_from_slice(b"\n\n");
    out
}

/// One event of about `size` bytes made of 1 KiB `data:` lines (1018 bytes of data each).
pub fn huge_many_lines(size: usize) -> Vec<u8> {
    let mut line = b"data: ".to_vec();
    line.extend((0..1017).map(|i| b'a' + (i % 26) as u8));
    line.push(b'\n');
    debug_assert_eq!(line.len(), 1024);
    let mut out = Vec::with_capacity(size + 1);
    while out.len() < size {
        out.extend_from_slice(&line);
    }
    out.push(b'\n');
    out
}

/// Feeds `input` to `decoder` in reads of `read` bytes; returns the number of events.
pub fn decode(decoder: &mut Decoder, input: &[u8], read: usize) -> u64 {
    let mut events = 0u64;
    for chunk in input.chunks(read) {
        let fed = decoder.feed(chunk, |item| {
            if let Decoded::Event(e) = item {
                events += 1;
                std::hint::black_box(e);
            }
        });
        if let Err(e) = fed {
            panic!("the bench workload must decode: {e}");
        }
    }
    events
}

fn count_events(input: &[u8], read: usize, config: DecoderConfig) -> u64 {
    decode(&mut Decoder::new(config), input, read)
}

/// A typical small update: ~100 bytes of JSON, an id and a type.
pub fn small_event(seq: u64) -> Event {
    let data = format!(
        "{{\"@id\":\"/books/{}\",\"title\":\"Book {seq}\",\"price\":12.34,\"stock\":42,\"seq\":{seq}}}",
        seq % 100_000
    );
    match Event::builder()
        .event_type("price")
        .id(format!("urn:uuid:0190a1b2-c3d4-7e5f-8a9b-{seq:012x}"))
        .data(data)
        .build()
    {
        Ok(e) => e,
        Err(e) => panic!("the bench event is valid: {e}"),
    }
}
