//! `application/x-www-form-urlencoded` (publish bodies and query strings), strictly: a field that
//! is not valid UTF-8 after percent-decoding is an error, not silently replaced.

/// A field could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the field {field:?} is not valid UTF-8 once percent-decoded")]
pub struct FormError {
    /// The field's name, lossily decoded (for the message only).
    pub field: String,
}

/// Decodes `name=value` pairs in order; repeated names are kept, empty pairs skipped.
pub fn parse(input: &[u8]) -> Result<Vec<(String, String)>, FormError> {
    let mut fields = Vec::new();
    for pair in input.split(|b| *b == b'&') {
        if pair.is_empty() {
            continue;
        }
        let (name, value) = match pair.iter().position(|b| *b == b'=') {
            Some(i) => (&pair[..i], &pair[i + 1..]),
            None => (pair, &[][..]),
        };
        let name_text = decode(name).map_err(|_| FormError {
            field: String::from_utf8_lossy(name).into_owned(),
        })?;
        let value_text = decode(value).map_err(|_| FormError {
            field: name_text.clone(),
        })?;
        fields.push((name_text, value_text));
    }
    Ok(fields)
}

/// `+` is a space and `%XY` (two hex digits) the byte XY; any other `%` stays as it is. One
/// allocation, of the final size or a little more.
fn decode(raw: &[u8]) -> Result<String, std::string::FromUtf8Error> {
    if !raw.iter().any(|b| *b == b'%' || *b == b'+') {
        return String::from_utf8(raw.to_vec());
    }
    let mut out = Vec::with_capacity(raw.len());
    let mut rest = raw;
    while let Some((&b, tail)) = rest.split_first() {
        rest = tail;
        match b {
            b'+' => out.push(b' '),
            b'%' => match tail {
                [high, low, after @ ..] => match (hex(*high), hex(*low)) {
                    (Some(high), Some(low)) => {
                        out.push(high << 4 | low);
                        rest = after;
                    }
                    _ => out.push(b'%'),
                },
                _ => out.push(b'%'),
            },
            other => out.push(other),
        }
    }
    String::from_utf8(out)
}

fn hex(digit: u8) -> Option<u8> {
    (digit as char)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_pairs_in_order() {
        let f = parse(b"topic=a&topic=b%2Fc&data=x+y%0Az&private&empty=").unwrap();
        assert_eq!(
            f,
            vec![
                ("topic".into(), "a".into()),
                ("topic".into(), "b/c".into()),
                ("data".into(), "x y\nz".into()),
                ("private".into(), "".into()),
                ("empty".into(), "".into()),
            ]
        );
    }

    #[test]
    fn invalid_utf8_is_an_error_naming_the_field() {
        assert_eq!(parse(b"data=%FF").unwrap_err().field, "data");
        assert!(parse(b"%C3=x").is_err());
        assert!(parse("data=é".as_bytes()).is_ok());
    }

    #[test]
    fn odd_inputs_do_not_panic() {
        for input in [&b""[..], b"&&&", b"=", b"==", b"%", b"%4", b"a=%", b"a=b=c"] {
            let _ = parse(input);
        }
        assert_eq!(parse(b"a=b=c").unwrap(), vec![("a".into(), "b=c".into())]);
        assert_eq!(parse(b"a=%4").unwrap(), vec![("a".into(), "%4".into())]);
        assert_eq!(
            parse(b"a=%zz%4a%4A+%2B%%41%").unwrap(),
            vec![("a".into(), "%zzJJ +%A%".into())]
        );
    }
}
