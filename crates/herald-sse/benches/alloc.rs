//! Allocation probe: runs one workload a given number of times, to be run under
//! `valgrind --tool=dhat`. Comparing the heap-block totals of two pass counts cancels the setup
//! and gives the allocations per pass (hence per event and per line). The workspace forbids
//! `unsafe`, so a counting `#[global_allocator]` is not an option here.
//!
//! ```text
//! cargo bench -p herald-sse --bench alloc --no-run
//! valgrind --tool=dhat target/release/deps/alloc-<hash> realistic 1
//! valgrind --tool=dhat target/release/deps/alloc-<hash> realistic 11
//! ```
//!
//! Workloads: `realistic`, `huge_single_line`, `huge_1KiB_lines`, `encode`, `encode_into`.
//! Under `cargo bench` (no workload given) each one runs once, as a smoke test.

mod common;

use std::hint::black_box;

use bytes::BytesMut;
use herald_sse::{Decoder, DecoderConfig};

use common::{
    decode, huge_many_lines, huge_single_line, realistic_stream, small_event, HUGE, HUGE_CONFIG,
    HUGE_READ, REALISTIC_READ,
};

const WORKLOADS: [&str; 5] = [
    "realistic",
    "huge_single_line",
    "huge_1KiB_lines",
    "encode",
    "encode_into",
];

fn lines(input: &[u8]) -> usize {
    input.iter().filter(|&&b| b == b'\n').count()
}

/// Runs `workload` `passes` times on one long-lived decoder (or encoder buffer).
fn run(workload: &str, passes: u64) {
    match workload {
        "realistic" | "huge_single_line" | "huge_1KiB_lines" => {
            let (input, config, read) = match workload {
                "realistic" => (
                    realistic_stream(1 << 20).0,
                    DecoderConfig::default(),
                    REALISTIC_READ,
                ),
                "huge_single_line" => (huge_single_line(HUGE), HUGE_CONFIG, HUGE_READ),
                _ => (huge_many_lines(HUGE), HUGE_CONFIG, HUGE_READ),
            };
            let mut decoder = Decoder::new(config);
            let mut events = 0;
            for _ in 0..passes {
                events += decode(&mut decoder, black_box(&input), read);
            }
            println!(
                "{workload}: {passes} passes, per pass {} bytes, {} lines, {} events",
                input.len(),
                lines(&input),
                events / passes.max(1)
            );
        }
        "encode" => {
            let event = small_event(123_456);
            for _ in 0..passes {
                black_box(black_box(&event).encode());
            }
            println!("{workload}: {passes} events encoded");
        }
        "encode_into" => {
            let event = small_event(123_456);
            let mut out = BytesMut::with_capacity(1024);
            for _ in 0..passes {
                out.clear();
                black_box(&event).encode_into(&mut out);
            }
            println!("{workload}: {passes} events encoded");
        }
        other => {
            eprintln!("unknown workload {other:?}; one of {WORKLOADS:?}");
            std::process::exit(2);
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let workload = args.iter().find(|a| !a.starts_with('-'));
    match workload {
        Some(workload) => {
            let passes = args
                .iter()
                .filter(|a| !a.starts_with('-'))
                .nth(1)
                .and_then(|p| p.parse().ok())
                .unwrap_or(1);
            run(workload, passes);
        }
        None => {
            for workload in WORKLOADS {
                run(workload, 1);
            }
        }
    }
}
