//! Events to send, with parts that are valid by construction.
//!
//! An [`EventId`] or [`EventType`] can never hold CR, LF or NUL: those would end the field early and
//! let whoever controls the value inject other fields (or whole events) into the stream. Data may be
//! any text; the encoder splits it into one `data:` line per line.

use std::fmt;

/// Why a field value was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    field: Field,
    found: char,
    at: usize,
}

/// The field of an event that a [`FieldError`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// The `id:` field.
    Id,
    /// The `event:` field (the event type).
    Type,
}

impl FieldError {
    /// The field whose value was refused.
    pub fn field(&self) -> Field {
        self.field
    }

    /// Byte offset of the first forbidden character in the value.
    pub fn position(&self) -> usize {
        self.at
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self.field {
            Field::Id => "id",
            Field::Type => "event type",
        };
        let what = match self.found {
            '\r' => "a carriage return (CR)",
            '\n' => "a line feed (LF)",
            _ => "a NUL character",
        };
        write!(
            f,
            "the {name} contains {what} at byte {}; CR, LF and NUL are not allowed there",
            self.at
        )
    }
}

impl std::error::Error for FieldError {}

fn check_field(field: Field, value: &str) -> Result<(), FieldError> {
    match memchr::memchr3(b'\r', b'\n', b'\0', value.as_bytes()) {
        None => Ok(()),
        Some(at) => Err(FieldError {
            field,
            found: char::from(value.as_bytes()[at]),
            at,
        }),
    }
}

macro_rules! field_newtype {
    ($(#[$doc:meta])* $name:ident, $field:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            /// Checks `value` and wraps it; fails if it holds CR, LF or NUL.
            pub fn new(value: impl Into<String>) -> Result<Self, FieldError> {
                let value = value.into();
                check_field($field, &value)?;
                Ok(Self(value))
            }

            /// The value as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// The value as an owned string.
            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = FieldError;
            fn try_from(value: String) -> Result<Self, FieldError> {
                Self::new(value)
            }
        }

        impl TryFrom<&str> for $name {
            type Error = FieldError;
            fn try_from(value: &str) -> Result<Self, FieldError> {
                Self::new(value)
            }
        }

        impl std::str::FromStr for $name {
            type Err = FieldError;
            fn from_str(value: &str) -> Result<Self, FieldError> {
                Self::new(value)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

field_newtype!(
    /// The value of an `id:` field: any text without CR, LF or NUL. An empty id is valid and tells
    /// the client to forget its last event id.
    EventId,
    Field::Id
);

field_newtype!(
    /// The value of an `event:` field: any text without CR, LF or NUL. Clients treat an empty type
    /// as `message`.
    EventType,
    Field::Type
);

/// One frame to send: an event, a comment, or both.
///
/// Build one with [`Event::data`], [`Event::comment`] or [`Event::builder`]; encode it with
/// [`Event::encode`](crate::Event::encode).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Event {
    pub(crate) comment: Option<String>,
    pub(crate) event_type: Option<EventType>,
    pub(crate) retry: Option<u64>,
    pub(crate) id: Option<EventId>,
    pub(crate) data: Option<String>,
}

impl Event {
    /// An event of the default type (`message`) carrying `data`, which may be any text.
    pub fn data(data: impl Into<String>) -> Self {
        Self {
            data: Some(data.into()),
            ..Self::default()
        }
    }

    /// A comment-only frame (`: text`), e.g. a heartbeat. Clients ignore it.
    pub fn comment(text: impl Into<String>) -> Self {
        Self {
            comment: Some(text.into()),
            ..Self::default()
        }
    }

    /// A builder for an event with several parts.
    pub fn builder() -> EventBuilder {
        EventBuilder::default()
    }

    /// The comment, if any.
    pub fn comment_text(&self) -> Option<&str> {
        self.comment.as_deref()
    }

    /// The event type, if set (absent means `message`).
    pub fn event_type(&self) -> Option<&EventType> {
        self.event_type.as_ref()
    }

    /// The reconnection time in milliseconds, if set.
    pub fn retry(&self) -> Option<u64> {
        self.retry
    }

    /// The id, if set.
    pub fn id(&self) -> Option<&EventId> {
        self.id.as_ref()
    }

    /// The data, if any. `None` writes no `data:` line, so clients dispatch no event (an `id` or
    /// `retry` alone still takes effect); `Some("")` is an event with empty data.
    pub fn data_text(&self) -> Option<&str> {
        self.data.as_deref()
    }
}

/// Builds an [`Event`]; the first invalid part is reported by [`EventBuilder::build`].
///
/// Defaults: no comment, no type (`message`), no retry, no id, no data.
#[derive(Debug, Default)]
#[must_use = "a builder does nothing until build() is called"]
pub struct EventBuilder {
    event: Event,
    error: Option<FieldError>,
}

impl EventBuilder {
    /// Sets the data (any text; line ends become separate `data:` lines).
    pub fn data(mut self, data: impl Into<String>) -> Self {
        self.event.data = Some(data.into());
        self
    }

    /// Sets the event type; CR, LF or NUL make `build()` fail.
    pub fn event_type(mut self, event_type: impl Into<String>) -> Self {
        match EventType::new(event_type) {
            Ok(t) => self.event.event_type = Some(t),
            Err(e) => self.fail(e),
        }
        self
    }

    /// Sets the id; CR, LF or NUL make `build()` fail.
    pub fn id(mut self, id: impl Into<String>) -> Self {
        match EventId::new(id) {
            Ok(id) => self.event.id = Some(id),
            Err(e) => self.fail(e),
        }
        self
    }

    /// Sets the reconnection time the client should use, in milliseconds.
    pub fn retry(mut self, millis: u64) -> Self {
        self.event.retry = Some(millis);
        self
    }

    /// Sets a comment written before the fields (any text; one `:` line per line).
    pub fn comment(mut self, text: impl Into<String>) -> Self {
        self.event.comment = Some(text.into());
        self
    }

    /// The event, or the first error met while building it.
    pub fn build(self) -> Result<Event, FieldError> {
        match self.error {
            Some(e) => Err(e),
            None => Ok(self.event),
        }
    }

    fn fail(&mut self, error: FieldError) {
        if self.error.is_none() {
            self.error = Some(error);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forbidden_characters_are_refused() {
        for bad in ["a\nb", "a\rb", "a\0b", "\n", "x\r\n"] {
            assert!(EventId::new(bad).is_err(), "{bad:?}");
            assert!(EventType::new(bad).is_err(), "{bad:?}");
        }
        let e = EventId::new("ab\ncd").unwrap_err();
        assert_eq!(e.field(), Field::Id);
        assert_eq!(e.position(), 2);
        assert!(e.to_string().contains("line feed"));
    }

    #[test]
    fn ordinary_values_are_kept_verbatim() {
        for ok in ["", " ", "urn:uuid:1", "ü∑ 😀", "\ttab", ":colon"] {
            assert_eq!(EventId::new(ok).unwrap().as_str(), ok);
            assert_eq!(EventType::new(ok).unwrap().as_str(), ok);
        }
    }

    #[test]
    fn builder_reports_first_error() {
        let err = Event::builder()
            .event_type("bad\r")
            .id("also\nbad")
            .build()
            .unwrap_err();
        assert_eq!(err.field(), Field::Type);
        let ok = Event::builder()
            .id("7")
            .event_type("tick")
            .retry(10)
            .data("x")
            .build()
            .unwrap();
        assert_eq!(ok.id().map(EventId::as_str), Some("7"));
        assert_eq!(ok.retry(), Some(10));
    }
}
