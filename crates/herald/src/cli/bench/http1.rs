//! The little HTTP/1.1 a fan-out subscriber needs, without a client library: the subscribe
//! request, the response head, the body framing (chunked, length, or until close) and a cheap scan
//! of the benchmark payload's numbers.
//!
//! A subscriber spends its life reading bytes; everything here works on borrowed slices of the
//! worker's one read buffer and allocates nothing per read or per event.

use std::net::{SocketAddr, ToSocketAddrs};

/// Longest response head accepted, in bytes.
pub(super) const MAX_HEAD: usize = 16 * 1024;

/// Where a subscribe URL points: the address to connect to and what goes into the request.
#[derive(Debug, Clone)]
pub(super) struct Target {
    /// The URL, for messages.
    pub url: String,
    /// The server's IPv4 address and port.
    pub addr: SocketAddr,
    /// The `Host` header value.
    pub host: String,
    /// Path and query.
    pub path: String,
}

impl Target {
    /// Parses an `http://HOST[:PORT]/PATH?QUERY` URL; `resolve` finds its host's IPv4 address.
    pub(super) fn parse(
        url: &str,
        resolve: impl FnOnce(&str, u16) -> Result<SocketAddr, String>,
    ) -> Result<Self, String> {
        let uri: http::Uri = url
            .parse()
            .map_err(|e| format!("invalid subscribe URL {url:?}: {e}"))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some(other) => {
                return Err(format!(
                "invalid subscribe URL {url:?}: fan-out subscribers speak plain http, not {other}"
            ))
            }
            None => return Err(format!("invalid subscribe URL {url:?}: expected http://…")),
        }
        let authority = uri
            .authority()
            .ok_or_else(|| format!("invalid subscribe URL {url:?}: no host"))?;
        let port = authority.port_u16().unwrap_or(80);
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        let addr = resolve(host, port)?;
        let path = uri
            .path_and_query()
            .map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned());
        Ok(Self {
            url: url.to_owned(),
            addr,
            host: authority.as_str().to_owned(),
            path,
        })
    }

    /// The subscribe request, with `Last-Event-ID` when resuming.
    pub(super) fn request(&self, last_event_id: Option<&str>) -> Vec<u8> {
        let mut r = format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nAccept: text/event-stream\r\nCache-Control: no-cache\r\n",
            self.path, self.host
        );
        if let Some(id) = last_event_id.filter(|id| !id.is_empty()) {
            r.push_str("Last-Event-ID: ");
            r.push_str(id);
            r.push_str("\r\n");
        }
        r.push_str("\r\n");
        r.into_bytes()
    }
}

/// The first IPv4 address of `host` (subscribers bind to 127.0.0.x, so IPv6 would not do).
pub(super) fn resolve_ipv4(host: &str, port: u16) -> Result<SocketAddr, String> {
    (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {host}: {e}"))?
        .find(SocketAddr::is_ipv4)
        .ok_or_else(|| format!("{host} has no IPv4 address (subscribers bind to 127.0.0.x)"))
}

/// How the response body is delimited.
#[derive(Debug)]
pub(super) enum Framing {
    /// `Transfer-Encoding: chunked`.
    Chunked(Chunked),
    /// `Content-Length`: this many bytes remain.
    Length(u64),
    /// Until the server closes the connection.
    UntilClose,
}

/// A parsed response head.
#[derive(Debug)]
pub(super) struct Head {
    /// The status code.
    pub status: u16,
    /// How the body is delimited.
    pub framing: Framing,
    /// Bytes of the head, including its final blank line.
    pub len: usize,
}

/// Parses a response head from the start of `buf`: `Ok(None)` when more bytes are needed.
pub(super) fn parse_head(buf: &[u8]) -> Result<Option<Head>, String> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut response = httparse::Response::new(&mut headers);
    let len = match response.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD => {
            return Err(format!("response head longer than {MAX_HEAD} bytes"))
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(format!("invalid response head: {e}")),
    };
    let status = response.code.unwrap_or(0);
    let mut chunked = false;
    let mut length = None;
    for h in response.headers.iter() {
        if h.name.eq_ignore_ascii_case("transfer-encoding") {
            // The last coding decides (RFC 9112 §6.1).
            chunked = h
                .value
                .rsplit(|&b| b == b',')
                .next()
                .is_some_and(|c| c.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        } else if h.name.eq_ignore_ascii_case("content-length") {
            let n = std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
                .ok_or("invalid Content-Length")?;
            length = Some(n);
        }
    }
    let framing = match (chunked, length) {
        (true, _) => Framing::Chunked(Chunked::default()),
        (false, Some(n)) => Framing::Length(n),
        (false, None) => Framing::UntilClose,
    };
    Ok(Some(Head {
        status,
        framing,
        len,
    }))
}

/// An incremental `Transfer-Encoding: chunked` decoder: chunk data out as borrowed slices of the
/// input, however the input was split.
#[derive(Debug, Default)]
pub(super) struct Chunked {
    state: ChunkState,
    /// The size being read (hex digits so far).
    size: u64,
    /// Whether the size being read has a digit yet.
    has_digit: bool,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    /// Reading the hex size.
    #[default]
    Size,
    /// After the size: extensions, up to LF.
    SizeLine,
    /// This many data bytes remain in the chunk.
    Data(u64),
    /// The CR after the data.
    DataCr,
    /// The LF after the data.
    DataLf,
    /// After the last (zero) chunk: at the start of a trailer line.
    TrailerStart,
    /// Inside a trailer line, up to LF.
    TrailerLine,
    /// The body is complete.
    Done,
}

/// The chunked body is malformed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ChunkError(&'static str);

impl std::fmt::Display for ChunkError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "invalid chunked body: {}", self.0)
    }
}

impl Chunked {
    /// Decodes `input`, passing chunk data to `data`. Returns `true` once the last chunk and its
    /// trailer are complete (bytes after it are not looked at).
    pub(super) fn decode(
        &mut self,
        mut input: &[u8],
        mut data: impl FnMut(&[u8]),
    ) -> Result<bool, ChunkError> {
        while !input.is_empty() {
            match self.state {
                ChunkState::Size => {
                    let b = input[0];
                    let digit = match b {
                        b'0'..=b'9' => Some(b - b'0'),
                        b'a'..=b'f' => Some(b - b'a' + 10),
                        b'A'..=b'F' => Some(b - b'A' + 10),
                        _ => None,
                    };
                    match digit {
                        Some(d) => {
                            if self.size >> 60 != 0 {
                                return Err(ChunkError("chunk size too large"));
                            }
                            self.size = self.size << 4 | u64::from(d);
                            self.has_digit = true;
                        }
                        None if self.has_digit => self.state = ChunkState::SizeLine,
                        None => return Err(ChunkError("no chunk size")),
                    }
                    if digit.is_some() {
                        input = &input[1..];
                    }
                }
                ChunkState::SizeLine => {
                    let Some(lf) = input.iter().position(|&b| b == b'\n') else {
                        return Ok(false);
                    };
                    input = &input[lf + 1..];
                    self.state = if self.size == 0 {
                        ChunkState::TrailerStart
                    } else {
                        ChunkState::Data(self.size)
                    };
                    self.size = 0;
                    self.has_digit = false;
                }
                ChunkState::Data(left) => {
                    let take = usize::try_from(left).unwrap_or(usize::MAX).min(input.len());
                    data(&input[..take]);
                    input = &input[take..];
                    let left = left - take as u64;
                    self.state = if left == 0 {
                        ChunkState::DataCr
                    } else {
                        ChunkState::Data(left)
                    };
                }
                ChunkState::DataCr => {
                    // Tolerate a bare LF, as most decoders do.
                    self.state = match input[0] {
                        b'\r' => ChunkState::DataLf,
                        b'\n' => ChunkState::Size,
                        _ => return Err(ChunkError("no CRLF after chunk data")),
                    };
                    input = &input[1..];
                }
                ChunkState::DataLf => {
                    if input[0] != b'\n' {
                        return Err(ChunkError("no CRLF after chunk data"));
                    }
                    input = &input[1..];
                    self.state = ChunkState::Size;
                }
                ChunkState::TrailerStart => match input[0] {
                    b'\r' => input = &input[1..],
                    b'\n' => {
                        self.state = ChunkState::Done;
                        return Ok(true);
                    }
                    _ => self.state = ChunkState::TrailerLine,
                },
                ChunkState::TrailerLine => {
                    let Some(lf) = input.iter().position(|&b| b == b'\n') else {
                        return Ok(false);
                    };
                    input = &input[lf + 1..];
                    self.state = ChunkState::TrailerStart;
                }
                ChunkState::Done => return Ok(true),
            }
        }
        Ok(self.state == ChunkState::Done)
    }
}

/// The unsigned number after `key` in `data` (`"seq":` in `{"seq":42,…}`), if there is one.
///
/// A plain scan, no JSON parsing: the benchmark payload puts its numbers first.
pub(super) fn number_after(data: &[u8], key: &[u8]) -> Option<u64> {
    let at = find(data, key)? + key.len();
    leading_number(&data[at..]).map(|(n, _)| n)
}

/// The position of `needle` in `haystack` (both short: a payload's first bytes).
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    let first = *needle.first()?;
    let mut from = 0;
    while let Some(p) = haystack[from..].iter().position(|&b| b == first) {
        let at = from + p;
        if haystack[at..].starts_with(needle) {
            return Some(at);
        }
        from = at + 1;
    }
    None
}

/// The sequence number and send time of a benchmark payload (`{"seq":N,"sent_us":T,…}`).
pub(super) fn seq_and_sent(data: &[u8]) -> Option<(u64, u64)> {
    // The payload as the benchmark wrote it, read in place.
    if let Some(rest) = data.strip_prefix(b"{\"seq\":") {
        if let Some((seq, rest)) = leading_number(rest) {
            if let Some((sent, _)) = rest.strip_prefix(b",\"sent_us\":").and_then(leading_number) {
                return Some((seq, sent));
            }
        }
    }
    // Rewritten on the way (other servers may re-serialise JSON): look for the keys.
    let seq = number_after(data, b"\"seq\":")?;
    let sent = number_after(data, b"\"sent_us\":")?;
    Some((seq, sent))
}

/// The unsigned number at the start of `s` (at most 19 digits, so that it fits), and what
/// follows it.
fn leading_number(s: &[u8]) -> Option<(u64, &[u8])> {
    let mut value = 0u64;
    let mut n = 0;
    // Eight digits at a time while they come in eights (a timestamp in µs has 16), then one
    // by one.
    while n + 8 <= 16 {
        let Some(digits) = s.get(n..n + 8).and_then(eight_digits) else {
            break;
        };
        value = value * 100_000_000 + digits;
        n += 8;
    }
    for &b in s.iter().skip(n).take(19 - n) {
        let digit = b.wrapping_sub(b'0');
        if digit > 9 {
            break;
        }
        value = value * 10 + u64::from(digit);
        n += 1;
    }
    if n == 0 || s.get(n).is_some_and(u8::is_ascii_digit) {
        return None;
    }
    Some((value, &s[n..]))
}

/// The value of eight ASCII digits, or `None` if one of the bytes is not a digit (SWAR: all
/// eight at once in one `u64`).
fn eight_digits(bytes: &[u8]) -> Option<u64> {
    let word = u64::from_le_bytes(bytes.try_into().ok()?);
    // Each byte a digit: its high nibble is 3, and its low nibble plus 6 stays below 16.
    let low = word & 0x0F0F_0F0F_0F0F_0F0F;
    if word & 0xF0F0_F0F0_F0F0_F0F0 != 0x3030_3030_3030_3030
        || (low + 0x0606_0606_0606_0606) & 0xF0F0_F0F0_F0F0_F0F0 != 0
    {
        return None;
    }
    let x = low;
    // The first digit is the lowest byte: combine neighbours into pairs, then fours, then eight.
    let x = (x.wrapping_mul(10).wrapping_add(x >> 8)) & 0x00FF_00FF_00FF_00FF;
    let x = (x.wrapping_mul(100).wrapping_add(x >> 16)) & 0x0000_FFFF_0000_FFFF;
    let x = (x.wrapping_mul(10_000).wrapping_add(x >> 32)) & 0x0000_0000_FFFF_FFFF;
    Some(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(splits: &[&[u8]]) -> (Vec<u8>, bool) {
        let mut c = Chunked::default();
        let mut out = Vec::new();
        let mut done = false;
        for s in splits {
            done = c.decode(s, |d| out.extend_from_slice(d)).unwrap();
        }
        (out, done)
    }

    const BODY: &[u8] =
        b"7\r\n:\n\ndata\r\n1A;ext=1\r\n: abcdefghijklmnopqrstuv\n\n\r\n0\r\nX-T: 1\r\n\r\n";

    #[test]
    fn chunked_body_in_one_piece() {
        let (out, done) = decode_all(&[BODY]);
        assert_eq!(out, b":\n\ndata: abcdefghijklmnopqrstuv\n\n");
        assert!(done);
    }

    #[test]
    fn chunked_body_split_anywhere() {
        let (whole, _) = decode_all(&[BODY]);
        for cut in 0..=BODY.len() {
            let (out, done) = decode_all(&[&BODY[..cut], &BODY[cut..]]);
            assert_eq!(out, whole, "cut at {cut}");
            assert!(done, "cut at {cut}");
        }
        let bytes: Vec<&[u8]> = BODY.chunks(1).collect();
        assert_eq!(decode_all(&bytes), (whole, true));
    }

    #[test]
    fn chunked_body_not_finished() {
        let (out, done) = decode_all(&[b"3\r\nabc\r\n", b"2\r\nde"]);
        assert_eq!(out, b"abcde");
        assert!(!done);
        // The zero chunk without the blank line after it is not the end yet.
        assert!(!decode_all(&[b"0\r\n"]).1);
        assert!(decode_all(&[b"0\r\n\r\n"]).1);
    }

    #[test]
    fn chunked_errors() {
        let mut c = Chunked::default();
        assert!(c.decode(b"2\r\nabX", |_| {}).is_err());
        let mut c = Chunked::default();
        assert!(c.decode(b"fffffffffffffffff\r\n", |_| {}).is_err());
        let mut c = Chunked::default();
        assert!(c.decode(b"\r\n", |_| {}).is_err());
    }

    #[test]
    fn heads() {
        let head: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\
            Transfer-Encoding: gzip, chunked\r\n\r\n7\r\n";
        let h = parse_head(head).unwrap().unwrap();
        assert_eq!(h.status, 200);
        assert!(matches!(h.framing, Framing::Chunked(_)));
        assert_eq!(h.len, head.len() - 3);
        let h = parse_head(b"HTTP/1.1 429 Too Many\r\ncontent-length: 12\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(h.status, 429);
        assert!(matches!(h.framing, Framing::Length(12)));
        let h = parse_head(b"HTTP/1.0 200 OK\r\n\r\n").unwrap().unwrap();
        assert!(matches!(h.framing, Framing::UntilClose));
        assert!(parse_head(b"HTTP/1.1 200 OK\r\nTransfer-Enc")
            .unwrap()
            .is_none());
        assert!(parse_head(b"SSH-2.0\r\n\r\n").is_err());
    }

    #[test]
    fn requests() {
        let t = Target::parse(
            "http://127.0.0.1:9/.well-known/mercure?topic=a%3Ab",
            resolve_ipv4,
        )
        .unwrap();
        assert_eq!(t.addr, "127.0.0.1:9".parse().unwrap());
        assert_eq!(
            String::from_utf8(t.request(Some("urn:uuid:1"))).unwrap(),
            "GET /.well-known/mercure?topic=a%3Ab HTTP/1.1\r\nHost: 127.0.0.1:9\r\n\
             Accept: text/event-stream\r\nCache-Control: no-cache\r\nLast-Event-ID: urn:uuid:1\r\n\r\n"
        );
        assert!(!String::from_utf8(t.request(Some("")))
            .unwrap()
            .contains("Last-Event-ID"));
        assert!(Target::parse("https://127.0.0.1/", resolve_ipv4).is_err());
        assert!(Target::parse("127.0.0.1:80", resolve_ipv4).is_err());
        let t = Target::parse("http://localhost/x", resolve_ipv4).unwrap();
        assert_eq!(t.addr, "127.0.0.1:80".parse().unwrap());
        assert_eq!(t.host, "localhost");
    }

    #[test]
    fn scans_the_payload() {
        let p = super::super::payload(42, 1_700_000_000_000_123, 100);
        assert_eq!(
            seq_and_sent(p.as_bytes()),
            Some((42, 1_700_000_000_000_123))
        );
        assert_eq!(seq_and_sent(br#"{"seq":1}"#), None);
        assert_eq!(
            seq_and_sent(br#"{ "pad": "x", "sent_us": 5, "seq": 4 }"#),
            None,
            "keys need their exact spelling"
        );
        assert_eq!(
            seq_and_sent(br#"{"pad":"x","sent_us":5,"seq":4}"#),
            Some((4, 5))
        );
        assert_eq!(seq_and_sent(br#"{"seq":"x","sent_us":1}"#), None);
        assert_eq!(seq_and_sent(b""), None);
        assert_eq!(number_after(b"\"\"seq\":7", b"\"seq\":"), Some(7));
        assert_eq!(
            number_after(b"\"seq\":99999999999999999999", b"\"seq\":"),
            None
        );
    }

    #[test]
    fn leading_numbers_of_every_length_and_ending() {
        let mut rng = 0x9E37_79B9_7F4A_7C15u64;
        for len in 1..=19usize {
            for _ in 0..200 {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                let text: String = (0..len)
                    .map(|i| char::from(b'0' + ((rng >> (i * 3)) % 10) as u8))
                    .collect();
                let expected: u64 = text.parse().unwrap();
                for tail in ["", ",", "x", "/", ":", "\u{80}", ",\"sent_us\":1"] {
                    let input = format!("{text}{tail}");
                    assert_eq!(
                        leading_number(input.as_bytes()),
                        Some((expected, tail.as_bytes())),
                        "{input:?}"
                    );
                }
            }
        }
        assert_eq!(leading_number(b"18446744073709551615"), None, "20 digits");
        assert_eq!(
            leading_number(b"9999999999999999999"),
            Some((9_999_999_999_999_999_999, &b""[..]))
        );
        assert_eq!(leading_number(b""), None);
        assert_eq!(leading_number(b"x1234567890"), None);
        assert_eq!(leading_number(b"/123456789"), None);
        for b in 0..=255u8 {
            let input = [b'1', b'2', b'3', b'4', b'5', b'6', b'7', b, b'9'];
            let expected = if b.is_ascii_digit() {
                Some((123_456_700 + u64::from(b - b'0') * 10 + 9, &b""[..]))
            } else {
                Some((1_234_567, &input[7..]))
            };
            assert_eq!(leading_number(&input), expected, "byte {b}");
        }
    }
}
