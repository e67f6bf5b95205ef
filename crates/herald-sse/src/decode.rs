//! An incremental event-stream parser that follows the WHATWG HTML standard ("Server-sent events",
//! interpreting an event stream) to the letter.
//!
//! Bytes go in as they arrive, split anywhere; events and reconnection-time changes come out in
//! stream order through a callback. The outcome never depends on how the input was chunked: a CR
//! at the end of one read and an LF at the start of the next are one line end, and a byte-order
//! mark split over reads is still removed.
//!
//! Complete lines are parsed straight from the caller's buffer; only a line cut by a read boundary
//! is copied into an internal buffer, whose capacity is reused. No allocation happens per line.
//!
//! Deviation from the standard, on purpose: it sets no limit on line or event size; this decoder
//! takes both limits in [`DecoderConfig`] and fails the stream with a [`DecodeError`] instead of
//! growing without bound.

use std::fmt;

const BOM: &[u8; 3] = b"\xEF\xBB\xBF";
/// Below this size dispatched data is copied out so the buffer keeps its capacity; above it the
/// buffer itself is handed over, so a huge event is never copied.
const HAND_OVER_DATA_AT: usize = 64 * 1024;

/// Limits of a [`Decoder`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecoderConfig {
    /// Longest line accepted, in bytes, without its line end. Default: 16 MiB.
    pub max_line_len: usize,
    /// Largest event accepted: bytes of data (with the LF added per `data:` line) plus the event
    /// type. Default: 16 MiB.
    pub max_event_size: usize,
}

impl Default for DecoderConfig {
    fn default() -> Self {
        Self {
            max_line_len: 16 << 20,
            max_event_size: 16 << 20,
        }
    }
}

/// What a [`Decoder`] reports, in stream order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded {
    /// An event was dispatched.
    Event(MessageEvent),
    /// A valid `retry:` field set the reconnection time, in milliseconds. It takes effect at once,
    /// not at the next dispatch. Values too large for `u64` saturate to `u64::MAX`.
    Retry(u64),
}

/// A dispatched event, as a browser's `MessageEvent` would show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageEvent {
    /// The event type: the last `event:` value, or `message` when none or empty.
    pub event_type: String,
    /// The data: the `data:` values joined with LF.
    pub data: String,
    /// The last event id in force when the event was dispatched (possibly empty).
    pub last_event_id: String,
}

/// The stream broke one of the decoder's limits. The decoder stays failed: the connection should
/// be dropped (and, for an EventSource, re-established).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// A line was longer than [`DecoderConfig::max_line_len`].
    LineTooLong {
        /// The limit in bytes.
        limit: usize,
    },
    /// An event was larger than [`DecoderConfig::max_event_size`].
    EventTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::LineTooLong { limit } => {
                write!(
                    f,
                    "event stream line longer than the limit of {limit} bytes"
                )
            }
            Self::EventTooLarge { limit } => {
                write!(f, "event larger than the limit of {limit} bytes")
            }
        }
    }
}

impl std::error::Error for DecodeError {}

/// The parser for one connection's event stream.
#[derive(Debug, Clone)]
pub struct Decoder {
    config: DecoderConfig,
    /// Bytes of a leading BOM matched so far; `None` once the start of the stream is behind us.
    bom_seen: Option<u8>,
    /// The previous read ended with CR: an LF at the start of the next read belongs to it.
    skip_lf: bool,
    /// A line cut by a read boundary.
    line: Vec<u8>,
    data: String,
    event_type: String,
    id_buffer: String,
    last_event_id: String,
    failed: Option<DecodeError>,
}

impl Default for Decoder {
    fn default() -> Self {
        Self::new(DecoderConfig::default())
    }
}

impl Decoder {
    /// A decoder for a new stream, with an empty last event id.
    pub fn new(config: DecoderConfig) -> Self {
        Self {
            config,
            bom_seen: Some(0),
            skip_lf: false,
            line: Vec::new(),
            data: String::new(),
            event_type: String::new(),
            id_buffer: String::new(),
            last_event_id: String::new(),
            failed: None,
        }
    }

    /// Seeds the last event id carried over from an earlier connection of the same EventSource:
    /// events that set no `id:` report it.
    pub fn with_last_event_id(mut self, last_event_id: impl Into<String>) -> Self {
        self.last_event_id = last_event_id.into();
        self.id_buffer.clone_from(&self.last_event_id);
        self
    }

    /// The last event id committed by a dispatch (what a reconnection sends as `Last-Event-ID`).
    pub fn last_event_id(&self) -> &str {
        &self.last_event_id
    }

    /// Parses `chunk`, calling `on` for each event and reconnection-time change it completes.
    ///
    /// Items completed before an error are still reported. After an error every call fails again.
    pub fn feed(&mut self, chunk: &[u8], mut on: impl FnMut(Decoded)) -> Result<(), DecodeError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let result = self.feed_inner(chunk, &mut on);
        if let Err(e) = &result {
            self.failed = Some(e.clone());
        }
        result
    }

    /// Like [`Decoder::feed`], collecting what was decoded. On error the items decoded before it
    /// are returned beside it.
    pub fn feed_collect(&mut self, chunk: &[u8]) -> (Vec<Decoded>, Result<(), DecodeError>) {
        let mut out = Vec::new();
        let result = self.feed(chunk, |d| out.push(d));
        (out, result)
    }

    /// The stream ended: an unfinished line or event is discarded, including an `id:` it set that
    /// no dispatch committed. The decoder may be fed again as if a new stream had started (the
    /// last event id is kept).
    pub fn finish(&mut self) {
        self.bom_seen = Some(0);
        self.skip_lf = false;
        self.line.clear();
        self.data.clear();
        self.event_type.clear();
        self.id_buffer.clone_from(&self.last_event_id);
        self.failed = None;
    }

    fn feed_inner(
        &mut self,
        mut input: &[u8],
        on: &mut impl FnMut(Decoded),
    ) -> Result<(), DecodeError> {
        if let Some(seen) = self.bom_seen {
            let mut seen = usize::from(seen);
            while seen < BOM.len() {
                match input.first() {
                    None => {
                        self.bom_seen = Some(seen as u8);
                        return Ok(());
                    }
                    Some(&b) if b == BOM[seen] => {
                        seen += 1;
                        input = &input[1..];
                    }
                    Some(_) => break,
                }
            }
            self.bom_seen = None;
            if seen < BOM.len() {
                // Not a BOM after all: the bytes matched so far are ordinary line content.
                self.feed_lines(&BOM[..seen], on)?;
            }
        }
        if self.skip_lf && !input.is_empty() {
            if input[0] == b'\n' {
                input = &input[1..];
            }
            self.skip_lf = false;
        }
        self.feed_lines(input, on)
    }

    fn feed_lines(
        &mut self,
        mut input: &[u8],
        on: &mut impl FnMut(Decoded),
    ) -> Result<(), DecodeError> {
        while let Some(end) = memchr::memchr2(b'\r', b'\n', input) {
            let part = &input[..end];
            if self.line.is_empty() {
                self.check_line_len(part.len())?;
                self.process_line(part, on)?;
            } else {
                self.check_line_len(self.line.len() + part.len())?;
                let mut line = std::mem::take(&mut self.line);
                line.extend_from_slice(part);
                let result = self.process_line(&line, on);
                line.clear();
                self.line = line;
                result?;
            }
            let mut next = end + 1;
            if input[end] == b'\r' {
                match input.get(next) {
                    Some(b'\n') => next += 1,
                    Some(_) => {}
                    None => self.skip_lf = true,
                }
            }
            input = &input[next..];
        }
        if !input.is_empty() {
            self.check_line_len(self.line.len() + input.len())?;
            self.line.extend_from_slice(input);
        }
        Ok(())
    }

    fn check_line_len(&self, len: usize) -> Result<(), DecodeError> {
        if len > self.config.max_line_len {
            Err(DecodeError::LineTooLong {
                limit: self.config.max_line_len,
            })
        } else {
            Ok(())
        }
    }

    fn process_line(
        &mut self,
        line: &[u8],
        on: &mut impl FnMut(Decoded),
    ) -> Result<(), DecodeError> {
        if line.is_empty() {
            self.dispatch(on);
            return Ok(());
        }
        let (name, value) = match memchr::memchr(b':', line) {
            Some(0) => return Ok(()), // a comment
            Some(colon) => {
                let value = &line[colon + 1..];
                (&line[..colon], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &[][..]),
        };
        match name {
            b"data" => {
                // One exact allocation for the value and its LF (a huge value would otherwise
                // be allocated, then doubled just to add the LF).
                self.data.reserve(value.len() + 1);
                push_lossy(&mut self.data, value);
                self.data.push('\n');
                if self.data.len() + self.event_type.len() > self.config.max_event_size {
                    return Err(DecodeError::EventTooLarge {
                        limit: self.config.max_event_size,
                    });
                }
            }
            b"event" => {
                self.event_type.clear();
                push_lossy(&mut self.event_type, value);
            }
            // An id holding NUL is ignored as a whole.
            b"id" if memchr::memchr(0, value).is_none() => {
                self.id_buffer.clear();
                push_lossy(&mut self.id_buffer, value);
            }
            b"retry" => {
                if let Some(ms) = parse_retry(value) {
                    on(Decoded::Retry(ms));
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn dispatch(&mut self, on: &mut impl FnMut(Decoded)) {
        self.last_event_id.clone_from(&self.id_buffer);
        if self.data.is_empty() {
            self.event_type.clear();
            return;
        }
        self.data.pop(); // the LF added after the last data line
        let data = if self.data.len() >= HAND_OVER_DATA_AT {
            std::mem::take(&mut self.data)
        } else {
            let copy = self.data.as_str().to_owned();
            self.data.clear();
            copy
        };
        let event_type = if self.event_type.is_empty() {
            "message".to_owned()
        } else {
            self.event_type.as_str().to_owned()
        };
        self.event_type.clear();
        on(Decoded::Event(MessageEvent {
            event_type,
            data,
            last_event_id: self.last_event_id.clone(),
        }));
    }
}

/// Appends `bytes` decoded as UTF-8, with one U+FFFD per maximal invalid subpart.
fn push_lossy(out: &mut String, bytes: &[u8]) {
    // Valid text is the common case, and `from_utf8` checks it a word at a time; the chunked
    // lossy pass (a byte at a time) runs only for text that needs replacement characters.
    if let Ok(text) = std::str::from_utf8(bytes) {
        out.push_str(text);
        return;
    }
    for chunk in bytes.utf8_chunks() {
        out.push_str(chunk.valid());
        if !chunk.invalid().is_empty() {
            out.push(char::REPLACEMENT_CHARACTER);
        }
    }
}

/// ASCII digits only (at least one), base ten; saturates instead of overflowing.
fn parse_retry(value: &[u8]) -> Option<u64> {
    if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(value.iter().fold(0u64, |acc, d| {
        acc.saturating_mul(10).saturating_add(u64::from(d - b'0'))
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(input: &[u8]) -> Vec<Decoded> {
        let mut d = Decoder::default();
        let (out, r) = d.feed_collect(input);
        r.unwrap();
        out
    }

    fn ev(ty: &str, data: &str, id: &str) -> Decoded {
        Decoded::Event(MessageEvent {
            event_type: ty.into(),
            data: data.into(),
            last_event_id: id.into(),
        })
    }

    #[test]
    fn invalid_utf8_becomes_replacement_characters() {
        // A truncated 3-byte sequence is one maximal subpart; a lone continuation byte is another.
        assert_eq!(
            events(b"data: a\xE2\x82b\x80c\xFF\n\n"),
            vec![ev("message", "a\u{FFFD}b\u{FFFD}c\u{FFFD}", "")]
        );
    }

    #[test]
    fn retry_overflow_saturates() {
        assert_eq!(
            events(b"retry: 99999999999999999999999\n"),
            vec![Decoded::Retry(u64::MAX)]
        );
        assert_eq!(events(b"retry: 1 2\nretry: -1\nretry:\t5\n"), vec![]);
    }

    #[test]
    fn cr_split_across_reads_is_one_line_end() {
        let mut d = Decoder::default();
        let mut out = Vec::new();
        d.feed(b"data: a\r", |x| out.push(x)).unwrap();
        d.feed(b"\n", |x| out.push(x)).unwrap();
        d.feed(b"\n", |x| out.push(x)).unwrap();
        assert_eq!(out, vec![ev("message", "a", "")]);
    }

    #[test]
    fn empty_reads_keep_a_pending_cr() {
        let mut d = Decoder::default();
        let mut out = Vec::new();
        d.feed(b"data: a\r", |x| out.push(x)).unwrap();
        d.feed(b"", |x| out.push(x)).unwrap();
        d.feed(b"\n", |x| out.push(x)).unwrap();
        assert!(out.is_empty(), "the LF belongs to the CR: no dispatch yet");
        d.feed(b"\n", |x| out.push(x)).unwrap();
        assert_eq!(out, vec![ev("message", "a", "")]);
    }

    #[test]
    fn seeded_last_event_id_is_reported() {
        let mut d = Decoder::default().with_last_event_id("41");
        let (out, r) = d.feed_collect(b"data: x\n\nid: 42\ndata: y\n\n");
        r.unwrap();
        assert_eq!(
            out,
            vec![ev("message", "x", "41"), ev("message", "y", "42")]
        );
        assert_eq!(d.last_event_id(), "42");
    }

    #[test]
    fn unfinished_event_is_discarded_at_end() {
        let mut d = Decoder::default();
        d.feed_collect(b"id: 1\n\nid: 2\ndata: x\n").1.unwrap();
        d.finish();
        assert_eq!(d.last_event_id(), "1");
        let (out, r) = d.feed_collect(b"data: y\n\n");
        r.unwrap();
        assert_eq!(out, vec![ev("message", "y", "1")]);
    }

    #[test]
    fn line_limit_holds_under_any_chunking() {
        let config = DecoderConfig {
            max_line_len: 8,
            max_event_size: 1 << 20,
        };
        let input = b"data: 12\ndata: 123\n\n";
        // "data: 12" is exactly 8 bytes: fine. "data: 123" is 9: an error, however it arrives.
        for split in 0..=input.len() {
            let mut d = Decoder::new(config);
            let mut out = Vec::new();
            let first = d.feed(&input[..split], |x| out.push(x));
            let result = first.and_then(|()| d.feed(&input[split..], |x| out.push(x)));
            assert_eq!(
                result,
                Err(DecodeError::LineTooLong { limit: 8 }),
                "{split}"
            );
            assert!(out.is_empty());
            assert!(d.feed(b"\n", |_| {}).is_err(), "stays failed");
        }
    }

    #[test]
    fn event_limit() {
        let config = DecoderConfig {
            max_line_len: 100,
            max_event_size: 10,
        };
        let mut d = Decoder::new(config);
        let (out, r) = d.feed_collect(b"data: 12345\n\ndata: 12345\ndata: 12345\n\n");
        assert_eq!(out, vec![ev("message", "12345", "")]);
        assert_eq!(r, Err(DecodeError::EventTooLarge { limit: 10 }));
    }

    #[test]
    fn partial_bom_is_content() {
        // EF BB then 'x': not a BOM, so the line is "\u{FFFD}x..." with an unknown field name.
        assert_eq!(
            events(b"\xEF\xBBdata: 1\n\ndata: 2\n\n"),
            vec![ev("message", "2", "")]
        );
        let mut d = Decoder::default();
        let mut out = Vec::new();
        for b in b"\xEF\xBB\xBFdata: 1\n\n" {
            d.feed(&[*b], |x| out.push(x)).unwrap();
        }
        assert_eq!(out, vec![ev("message", "1", "")]);
    }
}
