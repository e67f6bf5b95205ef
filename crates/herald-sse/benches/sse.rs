//! Criterion micro-benchmarks of the event-stream decoder and encoder (`cargo bench -p herald-sse`).
//!
//! Sample counts and times are kept small so the whole run takes about a minute; pass criterion
//! options after `--` (e.g. `--measurement-time 10`) for tighter intervals.
//!
//! Set `HERALD_BENCH_CPU_TIME=1` to measure the benchmark thread's CPU time (Linux,
//! `/proc/thread-self/schedstat`) instead of wall time: on a shared or busy machine wall time
//! mostly measures the other tenants. The decoder and encoder are single-threaded and do no I/O,
//! so on an idle machine both clocks agree.

mod common;

use std::hint::black_box;
use std::time::Duration;

use bytes::BytesMut;
use criterion::measurement::{Measurement, ValueFormatter, WallTime};
use criterion::{criterion_main, Criterion, SamplingMode, Throughput};
use herald_sse::{Decoder, DecoderConfig};

use common::{
    decode, huge_many_lines, huge_single_line, realistic_stream, small_event, HUGE, HUGE_CONFIG,
    HUGE_READ, REALISTIC_READ,
};

/// ~1 MiB of mixed small events in 16 KiB reads, a fresh decoder per pass (one connection).
fn decode_realistic<M: Measurement>(c: &mut Criterion<M>, sampling: SamplingMode) {
    let (stream, events) = realistic_stream(1 << 20);
    let mut group = c.benchmark_group("decode_realistic_1MiB_16KiB_reads");
    group.sampling_mode(sampling);
    for (name, throughput) in [
        ("bytes", Throughput::Bytes(stream.len() as u64)),
        ("events", Throughput::Elements(events)),
    ] {
        group.throughput(throughput);
        group.bench_function(name, |b| {
            b.iter(|| {
                let mut decoder = Decoder::new(DecoderConfig::default());
                decode(&mut decoder, black_box(&stream), REALISTIC_READ)
            })
        });
    }
    group.finish();
}

/// One 16 MiB event in 64 KiB reads, on a long-lived decoder (one event per pass).
fn decode_huge<M: Measurement>(c: &mut Criterion<M>, sampling: SamplingMode) {
    let mut group = c.benchmark_group("decode_huge_16MiB_64KiB_reads");
    group.sampling_mode(sampling);
    group.sample_size(10);
    for (name, stream) in [
        ("single_line", huge_single_line(HUGE)),
        ("1KiB_lines", huge_many_lines(HUGE)),
    ] {
        group.throughput(Throughput::Bytes(stream.len() as u64));
        let mut decoder = Decoder::new(HUGE_CONFIG);
        group.bench_function(name, |b| {
            b.iter(|| {
                let events = decode(&mut decoder, black_box(&stream), HUGE_READ);
                debug_assert_eq!(events, 1);
                events
            })
        });
    }
    group.finish();
}

/// Small events (~100-byte data, id and type): a fresh `Bytes` each, and into a reused buffer.
fn encode_small<M: Measurement>(c: &mut Criterion<M>, sampling: SamplingMode) {
    let event = small_event(123_456);
    let mut group = c.benchmark_group("encode_small");
    group.sampling_mode(sampling);
    group.throughput(Throughput::Elements(1));
    group.bench_function("encode", |b| b.iter(|| black_box(&event).encode()));
    let mut out = BytesMut::with_capacity(1024);
    group.bench_function("encode_into_reused", |b| {
        b.iter(|| {
            out.clear();
            black_box(&event).encode_into(&mut out);
            black_box(out.len())
        })
    });
    // A write coalescing many frames: 1000 different events appended to one reused buffer.
    let batch: Vec<_> = (0..1000).map(small_event).collect();
    let mut out = BytesMut::with_capacity(256 * 1024);
    group.throughput(Throughput::Elements(batch.len() as u64));
    group.bench_function("encode_into_batch_1000", |b| {
        b.iter(|| {
            out.clear();
            for event in black_box(&batch) {
                event.encode_into(&mut out);
            }
            black_box(out.len())
        })
    });
    group.finish();
}

/// CPU time of the calling thread, from `/proc/thread-self/schedstat` (nanoseconds on CPU).
///
/// The kernel refreshes that counter at least every scheduler tick (4 ms at HZ=250), so each
/// sample must last much longer than a tick: with this clock the benches use flat sampling with
/// equal samples of about `measurement_time / sample_size`.
struct ThreadCpuTime;

impl ThreadCpuTime {
    fn now() -> Duration {
        let stat = match std::fs::read_to_string("/proc/thread-self/schedstat") {
            Ok(stat) => stat,
            Err(e) => panic!("HERALD_BENCH_CPU_TIME needs /proc/thread-self/schedstat: {e}"),
        };
        match stat.split_whitespace().next().map(str::parse) {
            Some(Ok(ns)) => Duration::from_nanos(ns),
            _ => panic!("unexpected /proc/thread-self/schedstat: {stat:?}"),
        }
    }
}

impl Measurement for ThreadCpuTime {
    type Intermediate = Duration;
    type Value = Duration;

    fn start(&self) -> Duration {
        Self::now()
    }

    fn end(&self, start: Duration) -> Duration {
        Self::now().saturating_sub(start)
    }

    fn add(&self, a: &Duration, b: &Duration) -> Duration {
        *a + *b
    }

    fn zero(&self) -> Duration {
        Duration::ZERO
    }

    fn to_f64(&self, value: &Duration) -> f64 {
        value.as_nanos() as f64
    }

    fn formatter(&self) -> &dyn ValueFormatter {
        // Values are nanoseconds, as for wall time: reuse criterion's formatting.
        static WALL_TIME: WallTime = WallTime;
        WALL_TIME.formatter()
    }
}

fn run<M: Measurement>(c: Criterion<M>, sampling: SamplingMode) {
    let mut c = c
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(30)
        .configure_from_args();
    decode_realistic(&mut c, sampling);
    decode_huge(&mut c, sampling);
    encode_small(&mut c, sampling);
}

/// Every benchmark, with the short configuration above, on the clock chosen by
/// `HERALD_BENCH_CPU_TIME` (what `criterion_group!` would generate, written out so that it can
/// pick the measurement and carries a doc comment).
fn benches() {
    if std::env::var_os("HERALD_BENCH_CPU_TIME").is_some_and(|v| v != "0") {
        run(
            Criterion::default().with_measurement(ThreadCpuTime),
            SamplingMode::Flat,
        );
    } else {
        run(Criterion::default(), SamplingMode::Auto);
    }
}

criterion_main!(benches);
