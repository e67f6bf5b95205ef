//! The load generator's event-stream reader: the event-stream rules of the WHATWG HTML standard
//! (lines ended by CR, LF or CRLF; `data` lines joined by LF; `id` committed at dispatch; an
//! empty data buffer dispatches nothing), minus what a benchmark does not need (event types and
//! `retry` are ignored, data is not checked for UTF-8) and without allocating per event.
//!
//! `herald_sse::Decoder` builds an owned event per dispatch (strings for the data, the type and
//! the id). At two million deliveries a second that was most of the generator's CPU, taken from
//! the same two cores as the server it measures. Here each event's data is handed out as a slice
//! of a buffer reused for the whole stream.

use std::fmt;

/// Longest line accepted (as `herald_sse`'s default).
const MAX_LINE: usize = 16 << 20;

/// A line longer than [`MAX_LINE`]: the stream is not what the benchmark expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct LineTooLong;

impl fmt::Display for LineTooLong {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "event stream line longer than {MAX_LINE} bytes")
    }
}

/// Incremental reader of one event stream (fed again after [`EventScanner::finish`] for the
/// next connection of the same subscriber).
#[derive(Debug, Default)]
pub(super) struct EventScanner {
    /// The start of a line whose end has not arrived yet.
    line: Vec<u8>,
    /// The event's data so far, each line followed by LF.
    data: Vec<u8>,
    /// The last `id` seen (committed at dispatch).
    id_buffer: Vec<u8>,
    /// The id of the last dispatch, unless `id_committed`.
    last_id: Vec<u8>,
    /// No `id` came since the last dispatch: `id_buffer` is the committed id (and `last_id` is
    /// stale). Dispatching then costs no copy; an `id` line swaps the buffers first.
    id_committed: bool,
    /// The previous input ended with CR: an LF starting the next one belongs to it.
    skip_lf: bool,
    /// The first line of the stream has been read (a BOM is only stripped from the first).
    started: bool,
}

impl EventScanner {
    /// Reads `input`, calling `on` with the data of each event it completes.
    pub(super) fn feed(
        &mut self,
        input: &[u8],
        mut on: impl FnMut(&[u8]),
    ) -> Result<(), LineTooLong> {
        let mut pos = 0;
        if self.skip_lf && !input.is_empty() {
            self.skip_lf = false;
            if input[0] == b'\n' {
                pos = 1;
            }
        }
        // The data of an event with one `data` line met in `input` itself, as a range of it: it
        // is handed out from there, not copied (the common case, and most of the bytes).
        let mut borrowed: Option<(usize, usize)> = None;
        // Input with no CR and no NUL (what servers send): lines end at LF alone, and no id
        // needs checking for NUL. One search of the whole input costs less than looking for two
        // bytes in every line and checking every id.
        let plain = memchr::memchr2(b'\r', 0, &input[pos..]).is_none();
        loop {
            // An event's blank line most often comes right after its last line.
            let found = if input.get(pos) == Some(&b'\n') {
                Some(0)
            } else if plain {
                memchr::memchr(b'\n', &input[pos..])
            } else {
                memchr::memchr2(b'\r', b'\n', &input[pos..])
            };
            let Some(found) = found else {
                break;
            };
            let end = pos + found;
            let mut next = end + 1;
            if input[end] == b'\r' {
                match input.get(next) {
                    Some(b'\n') => next += 1,
                    Some(_) => {}
                    None => self.skip_lf = true,
                }
            }
            if self.line.is_empty() {
                self.line_done(input, pos, end, Some(&mut borrowed), plain, &mut on);
            } else {
                let mut line = std::mem::take(&mut self.line);
                line.extend_from_slice(&input[pos..end]);
                if line.len() > MAX_LINE {
                    return Err(LineTooLong);
                }
                self.spill(input, &mut borrowed);
                self.line_done(&line, 0, line.len(), None, false, &mut on);
                line.clear();
                self.line = line;
            }
            pos = next;
        }
        self.spill(input, &mut borrowed);
        let rest = &input[pos.min(input.len())..];
        if self.line.len() + rest.len() > MAX_LINE {
            return Err(LineTooLong);
        }
        self.line.extend_from_slice(rest);
        Ok(())
    }

    /// Moves borrowed data into the data buffer (another line is joining it, or the input ends).
    fn spill(&mut self, input: &[u8], borrowed: &mut Option<(usize, usize)>) {
        if let Some((from, to)) = borrowed.take() {
            self.data.extend_from_slice(&input[from..to]);
            self.data.push(b'\n');
        }
    }

    /// Handles the line `source[from..to]`. `borrowed` is given only while `source` is the input
    /// being fed (then a lone data line may stay in it). `no_nul`: `source` has no NUL byte.
    fn line_done(
        &mut self,
        source: &[u8],
        mut from: usize,
        to: usize,
        borrowed: Option<&mut Option<(usize, usize)>>,
        no_nul: bool,
        on: &mut impl FnMut(&[u8]),
    ) {
        if !self.started {
            self.started = true;
            if source[from..to].starts_with(b"\xEF\xBB\xBF") {
                from += 3;
            }
        }
        let line = &source[from..to];
        if line.is_empty() {
            self.id_committed = true;
            if let Some((start, end)) = borrowed.and_then(Option::take) {
                on(&source[start..end]);
            } else if !self.data.is_empty() {
                self.data.pop();
                on(&self.data);
                self.data.clear();
            }
            return;
        }
        // The two fields a benchmark stream is made of are known without a search.
        let colon = if line.starts_with(b"data:") {
            Some(4)
        } else if line.starts_with(b"id:") {
            Some(2)
        } else {
            memchr::memchr(b':', line)
        };
        let (field, value_from) = match colon {
            Some(0) => return,
            Some(colon) => {
                let mut value = from + colon + 1;
                if source.get(value) == Some(&b' ') && value < to {
                    value += 1;
                }
                (&line[..colon], value)
            }
            None => (line, to),
        };
        let value = &source[value_from..to];
        match field {
            b"data" => {
                if let Some(slot) = borrowed {
                    if slot.is_none() && self.data.is_empty() {
                        *slot = Some((value_from, to));
                        return;
                    }
                    self.spill(source, slot);
                }
                self.data.extend_from_slice(value);
                self.data.push(b'\n');
            }
            b"id" if no_nul || memchr::memchr(0, value).is_none() => {
                if self.id_committed {
                    std::mem::swap(&mut self.id_buffer, &mut self.last_id);
                    self.id_committed = false;
                }
                self.id_buffer.clear();
                self.id_buffer.extend_from_slice(value);
            }
            _ => {}
        }
    }

    /// The stream ended: an unfinished line or event is dropped, with an id no dispatch
    /// committed. The last event id is kept.
    pub(super) fn finish(&mut self) {
        self.line.clear();
        self.data.clear();
        if !self.id_committed {
            self.id_buffer.clone_from(&self.last_id);
            self.id_committed = true;
        }
        self.skip_lf = false;
        self.started = false;
    }

    /// The last committed event id, for `Last-Event-ID`.
    pub(super) fn last_event_id(&self) -> String {
        let id = if self.id_committed {
            &self.id_buffer
        } else {
            &self.last_id
        };
        String::from_utf8_lossy(id).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_sse::{Decoded, Decoder};

    /// Events and the last id as `herald_sse::Decoder` reads `stream` fed in pieces of `step`.
    /// And the last event id after each piece.
    fn reference(stream: &[u8], step: usize) -> (Vec<Vec<u8>>, Vec<String>) {
        let mut d = Decoder::default();
        let mut events = Vec::new();
        let mut ids = Vec::new();
        for piece in stream.chunks(step) {
            d.feed(piece, |x| {
                if let Decoded::Event(e) = x {
                    events.push(e.data.into_bytes());
                }
            })
            .unwrap();
            ids.push(d.last_event_id().to_owned());
        }
        (events, ids)
    }

    fn scanned(stream: &[u8], step: usize) -> (Vec<Vec<u8>>, Vec<String>) {
        let mut s = EventScanner::default();
        let mut events = Vec::new();
        let mut ids = Vec::new();
        for piece in stream.chunks(step) {
            s.feed(piece, |data| events.push(data.to_vec())).unwrap();
            ids.push(s.last_event_id());
        }
        (events, ids)
    }

    #[test]
    fn reads_like_the_reference_decoder_under_any_split() {
        let streams: [&[u8]; 9] = [
            b":ok\n\nid: 1\ndata: {\"seq\":1}\n\nid: 2\ndata:a\ndata: b\n\n",
            b"\xEF\xBB\xBFdata: x\r\n\r\ndata:y\r\rid:7\r\r",
            b"event: t\ndata\nretry: 10\nid: a\0b\n\ndata: last no end",
            b"id: x\n\nid:\n\ndata: 1\n\n: c\ndata:  two spaces\n\n",
            b"data: a\r\n\r\ndata: b\n\r\ndata: c\r\r\n",
            b"\n\n\ndata:\ndata:\n\nfield-only\ndata: z\n\n",
            b"id: 1\ndata: a\n\nid: 2\nid: 3\ndata: b\n\nid: 4\n\ndata: c\n\nid: 5\ndata: d",
            // An id with NUL is ignored, whether or not the rest of the input is plain LF.
            b"id: 1\ndata: x\n\nid: 2\0\ndata: y\n\nid: 3\ndata: z\n\n",
            b"id: 1\ndata: x\n\nid: 2\0\ndata: y\r\n\r\ndata: z\n\n",
        ];
        for stream in streams {
            for step in 1..=stream.len() {
                assert_eq!(
                    scanned(stream, step),
                    reference(stream, step),
                    "{:?} in pieces of {step}",
                    String::from_utf8_lossy(stream)
                );
            }
        }
    }

    #[test]
    fn finish_drops_the_unfinished_event_and_keeps_the_id() {
        let mut s = EventScanner::default();
        let mut events = 0;
        s.feed(b"id: 5\ndata: x\n\nid: 6\ndata: half", |_| events += 1)
            .unwrap();
        s.finish();
        s.feed(b"\n\n", |_| events += 1).unwrap();
        assert_eq!(events, 1);
        assert_eq!(s.last_event_id(), "5");
        // The next connection's events commit their ids as before.
        s.feed(b"data: y\n\nid: 7\ndata: z\n\nid: 8\n", |_| events += 1)
            .unwrap();
        assert_eq!((events, s.last_event_id().as_str()), (3, "7"));
        s.finish();
        s.feed(b"data: w\n\n", |_| events += 1).unwrap();
        assert_eq!((events, s.last_event_id().as_str()), (4, "7"));
    }
}
