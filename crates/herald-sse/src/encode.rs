//! `Event` -> bytes, once.
//!
//! The frame layout follows what Mercure hubs send: comment lines, then `event:`, `retry:`, `id:`,
//! one `data:` line per line of the data, and the empty line that dispatches the event. Because
//! [`EventId`](crate::EventId) and [`EventType`](crate::EventType) cannot hold line ends and data is
//! split on every line end (CRLF, CR or LF), no value can add fields to the stream.

use bytes::{Bytes, BytesMut};

use crate::Event;

const EVENT: &[u8] = b"event: ";
const RETRY: &[u8] = b"retry: ";
const ID: &[u8] = b"id: ";
const DATA: &[u8] = b"data: ";
const COMMENT: &[u8] = b": ";

impl Event {
    /// The exact number of bytes [`Event::encode`] produces.
    pub fn encoded_len(&self) -> usize {
        let mut len = 0;
        let mut any_field = false;
        if let Some(c) = &self.comment {
            len += lines_len(c, COMMENT.len());
        }
        if let Some(t) = &self.event_type {
            len += EVENT.len() + t.as_str().len() + 1;
            any_field = true;
        }
        if let Some(r) = self.retry {
            len += RETRY.len() + decimal_len(r) + 1;
            any_field = true;
        }
        if let Some(id) = &self.id {
            len += ID.len() + id.as_str().len() + 1;
            any_field = true;
        }
        if let Some(d) = &self.data {
            len += lines_len(d, DATA.len());
            any_field = true;
        }
        if any_field {
            len += 1;
        }
        len
    }

    /// Encodes the frame into one shared buffer. Encode an update once and hand clones of the
    /// returned [`Bytes`] to every subscriber: cloning is a reference-count increment.
    pub fn encode(&self) -> Bytes {
        // An exact-capacity Vec becomes Bytes without a copy.
        let mut out = Vec::with_capacity(self.encoded_len());
        self.write(&mut out);
        Bytes::from(out)
    }

    /// Appends the frame to `out`.
    pub fn encode_into(&self, out: &mut BytesMut) {
        out.reserve(self.encoded_len());
        self.write(out);
    }

    fn write(&self, out: &mut impl Sink) {
        let mut any_field = false;
        if let Some(c) = &self.comment {
            put_lines(out, COMMENT, c);
        }
        if let Some(t) = &self.event_type {
            put_field(out, EVENT, t.as_str().as_bytes());
            any_field = true;
        }
        if let Some(r) = self.retry {
            let mut digits = [0u8; 20];
            put_field(out, RETRY, format_decimal(r, &mut digits));
            any_field = true;
        }
        if let Some(id) = &self.id {
            put_field(out, ID, id.as_str().as_bytes());
            any_field = true;
        }
        if let Some(d) = &self.data {
            put_lines(out, DATA, d);
            any_field = true;
        }
        if any_field {
            out.put(b"\n");
        }
    }
}

/// Where frames are written: plain appends the compiler can inline (`BufMut::put_slice` is not).
trait Sink {
    fn put(&mut self, bytes: &[u8]);
}

impl Sink for Vec<u8> {
    #[inline]
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

impl Sink for BytesMut {
    #[inline]
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

fn put_field(out: &mut impl Sink, prefix: &[u8], value: &[u8]) {
    out.put(prefix);
    out.put(value);
    out.put(b"\n");
}

/// Calls `f` with each line of `text`, split on CRLF, CR or LF. Text ending in a line end has an
/// empty last line, and empty text is one empty line, so that decoding gives the text back.
fn for_each_line(text: &str, mut f: impl FnMut(&[u8])) {
    let mut rest = text.as_bytes();
    loop {
        match memchr::memchr2(b'\r', b'\n', rest) {
            None => {
                f(rest);
                return;
            }
            Some(i) => {
                f(&rest[..i]);
                let skip = if rest[i] == b'\r' && rest.get(i + 1) == Some(&b'\n') {
                    2
                } else {
                    1
                };
                rest = &rest[i + skip..];
            }
        }
    }
}

fn lines_len(text: &str, prefix_len: usize) -> usize {
    let mut len = 0;
    for_each_line(text, |line| len += prefix_len + line.len() + 1);
    len
}

fn put_lines(out: &mut impl Sink, prefix: &[u8], text: &str) {
    for_each_line(text, |line| put_field(out, prefix, line));
}

fn decimal_len(mut n: u64) -> usize {
    let mut len = 1;
    while n >= 10 {
        n /= 10;
        len += 1;
    }
    len
}

fn format_decimal(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[i..];
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::Event;

    fn enc(e: &Event) -> String {
        let bytes = e.encode();
        assert_eq!(bytes.len(), e.encoded_len());
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[test]
    fn full_event_layout() {
        let e = Event::builder()
            .comment("hi")
            .event_type("tick")
            .retry(3000)
            .id("42")
            .data("a\nb")
            .build()
            .unwrap();
        assert_eq!(
            enc(&e),
            ": hi\nevent: tick\nretry: 3000\nid: 42\ndata: a\ndata: b\n\n"
        );
    }

    #[test]
    fn data_is_split_on_every_line_end() {
        let e = Event::data("1\r\n2\r3\n\n4\n");
        assert_eq!(
            enc(&e),
            "data: 1\ndata: 2\ndata: 3\ndata: \ndata: 4\ndata: \n\n"
        );
        assert_eq!(enc(&Event::data("")), "data: \n\n");
    }

    #[test]
    fn comment_only_has_no_blank_line() {
        assert_eq!(enc(&Event::comment("")), ": \n");
        assert_eq!(enc(&Event::comment("a\nb")), ": a\n: b\n");
    }

    #[test]
    fn retry_digits() {
        for n in [0u64, 9, 10, 99, 100, 12345, u64::MAX] {
            let e = Event::builder().retry(n).build().unwrap();
            assert_eq!(enc(&e), format!("retry: {n}\n\n"));
        }
    }

    #[test]
    fn empty_event_is_empty() {
        assert_eq!(enc(&Event::default()), "");
    }
}
