//! Topic selectors: `*`, an exact topic, or an RFC 6570 URI template.
//!
//! Mercure says a selector matches a topic when it is `*`, when it is byte-equal to the topic, or
//! when it is a valid URI template (levels 1 to 4) that the topic matches, that is, when some
//! assignment of the template's variables expands to the topic. A string that is not a valid
//! template is not an error: it only matches byte-equal topics.
//!
//! A template is turned into one anchored regular expression built with the `regex` crate, whose
//! automata match in time linear in the topic whatever the pattern: a crafted selector or topic
//! cannot make matching backtrack. Templates are capped in length, expressions, variables and
//! compiled size ([`MAX_TEMPLATE_LEN`], [`MAX_EXPRESSIONS`], [`MAX_VARIABLES`]); beyond the caps,
//! or if the regex cannot be built, the selector is exact-only, which is never wider than asked.
//! Matching is exact with one deliberate approximation: prefix modifiers above
//! [`MAX_EXACT_PREFIX`] are not bounded.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::str::FromStr;
use std::sync::Arc;

use regex::{Regex, RegexBuilder};

/// Longest selector (in bytes) still treated as a URI template; longer ones match exactly.
pub const MAX_TEMPLATE_LEN: usize = 2048;

/// Most `{...}` expressions in a selector still treated as a URI template.
pub const MAX_EXPRESSIONS: usize = 64;

/// Most variables, over all expressions, in a selector still treated as a URI template.
pub const MAX_VARIABLES: usize = 128;

/// Largest prefix modifier (`{var:N}`) matched as an exact bound. The regex unrolls a bounded
/// repetition into N copies, so `{v:9999}` alone would blow the size limit; above this the length
/// is left unbounded, a deliberate small widening rather than a surprising exact-only fallback.
pub const MAX_EXACT_PREFIX: u16 = 64;

/// Longest generated regex pattern compiled. Compiling costs about half a microsecond per
/// pattern byte (mostly the regex parser), and a subscriber may send many selectors: this keeps
/// the worst selector under about 10 ms (release build). Realistic templates need well under 1 KiB; 64 plain
/// `{v}` expressions need about 6 KiB.
const MAX_PATTERN_LEN: usize = 8 * 1024;

/// Cap on the compiled program of one selector. Typical templates need 2 to 10 KiB and 64 plain
/// `{v}` expressions about 64 KiB; an exact prefix costs about 1.4 KiB per counted character.
/// A subscriber may send many selectors, so a crafted one must not cost much: beyond this it
/// falls back to exact-only.
const REGEX_SIZE_LIMIT: usize = 256 * 1024;

/// Cap on the lazy DFA cache of one selector (shared by its clones; grown only as matching needs).
/// When it fills up, the regex crate falls back to its other engines, which are still linear-time.
const DFA_SIZE_LIMIT: usize = 512 * 1024;

/// The regex parser's nesting limit. Its default (250) guards callers that walk the syntax tree
/// recursively; the regex crate itself uses the heap, and an expression nests a few groups per
/// variable (see [`expression`]), so [`MAX_VARIABLES`] needs more.
const NEST_LIMIT: u32 = 1024;

/// A topic selector, parsed once: `*`, an exact topic, or a compiled URI template.
///
/// Equality, hashing and display use the raw string. Cloning is cheap: the raw string and the
/// compiled template are shared.
#[derive(Clone)]
pub struct Selector {
    raw: Arc<str>,
    kind: Kind,
}

#[derive(Clone)]
enum Kind {
    Any,
    Exact,
    /// Shared so that clones also share the regex's scratch caches. Held as a trait object
    /// because `Regex` keeps those caches behind a mutex: clippy's `mutable_key_type` would
    /// otherwise flag every map or set keyed by `Selector`, although hashing only reads `raw`.
    Template(Arc<dyn Fn(&str) -> bool + Send + Sync>),
}

impl Selector {
    /// Parses a selector; never fails (a string that is not a valid template matches exactly).
    pub fn parse(raw: &str) -> Self {
        let kind = if raw == "*" {
            Kind::Any
        } else {
            match parse_template(raw).and_then(|parts| compile(&parts)) {
                Some(regex) => Kind::Template(Arc::new(move |topic: &str| regex.is_match(topic))),
                None => Kind::Exact,
            }
        };
        Self {
            raw: Arc::from(raw),
            kind,
        }
    }

    /// The selector as given.
    pub fn as_str(&self) -> &str {
        &self.raw
    }

    /// Whether it is `*`.
    pub fn is_any(&self) -> bool {
        matches!(self.kind, Kind::Any)
    }

    /// Whether it is a valid URI template with at least one expression (matched by pattern).
    pub fn is_template(&self) -> bool {
        matches!(self.kind, Kind::Template(_))
    }

    /// The one topic this selector can match, when it is neither `*` nor a usable template (no
    /// valid expression, or over the caps): such selectors are routed through the hub's topic
    /// index instead of being matched.
    pub fn exact_topic(&self) -> Option<&str> {
        matches!(self.kind, Kind::Exact).then_some(&*self.raw)
    }

    /// Whether the selector matches `topic`.
    pub fn matches(&self, topic: &str) -> bool {
        match &self.kind {
            Kind::Any => true,
            Kind::Exact => *self.raw == *topic,
            // Byte-equality first: Mercure says a template also matches itself verbatim.
            Kind::Template(is_match) => *self.raw == *topic || is_match(topic),
        }
    }
}

impl fmt::Debug for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            Kind::Any => "any",
            Kind::Exact => "exact",
            Kind::Template(_) => "template",
        };
        f.debug_struct("Selector")
            .field("raw", &&*self.raw)
            .field("kind", &kind)
            .finish()
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

impl PartialEq for Selector {
    fn eq(&self, other: &Self) -> bool {
        self.raw == other.raw
    }
}

impl Eq for Selector {}

impl Hash for Selector {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.raw.hash(state);
    }
}

impl From<&str> for Selector {
    fn from(raw: &str) -> Self {
        Self::parse(raw)
    }
}

impl FromStr for Selector {
    type Err = std::convert::Infallible;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        Ok(Self::parse(raw))
    }
}

/// A list of selectors, as in a JWT's `mercure.publish` or `mercure.subscribe` claim.
///
/// Cloning one is cheap (the selectors are shared): a verified token's claims are cloned out of
/// the token cache on every request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SelectorSet {
    selectors: std::sync::Arc<[Selector]>,
}

impl SelectorSet {
    /// A set holding `selectors`, in that order.
    pub fn new(selectors: Vec<Selector>) -> Self {
        Self {
            selectors: selectors.into(),
        }
    }

    /// Parses each string with [`Selector::parse`].
    pub fn parse_all<I, S>(raws: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        raws.into_iter()
            .map(|s| Selector::parse(s.as_ref()))
            .collect()
    }

    /// Whether some selector matches `topic`.
    pub fn matches(&self, topic: &str) -> bool {
        self.matches_any(&[topic])
    }

    /// Whether some selector matches some topic of `topics` (false for an empty set or list).
    pub fn matches_any<S: AsRef<str>>(&self, topics: &[S]) -> bool {
        // Cheap comparisons first: a claim usually holds `*` or exact topics, and they decide
        // most updates before any template runs.
        let cheap = self.selectors.iter().filter(|s| !s.is_template());
        let templates = self.selectors.iter().filter(|s| s.is_template());
        cheap
            .chain(templates)
            .any(|s| topics.iter().any(|t| s.matches(t.as_ref())))
    }

    /// Whether the set holds `*`.
    pub fn has_any(&self) -> bool {
        self.selectors.iter().any(Selector::is_any)
    }

    /// The selectors, in the order given.
    pub fn as_slice(&self) -> &[Selector] {
        &self.selectors
    }

    /// Iterates over the selectors.
    pub fn iter(&self) -> std::slice::Iter<'_, Selector> {
        self.selectors.iter()
    }

    /// Number of selectors.
    pub fn len(&self) -> usize {
        self.selectors.len()
    }

    /// Whether the set is empty (it then matches nothing).
    pub fn is_empty(&self) -> bool {
        self.selectors.is_empty()
    }
}

impl From<Vec<Selector>> for SelectorSet {
    fn from(selectors: Vec<Selector>) -> Self {
        Self::new(selectors)
    }
}

impl FromIterator<Selector> for SelectorSet {
    fn from_iter<I: IntoIterator<Item = Selector>>(iter: I) -> Self {
        Self::new(iter.into_iter().collect())
    }
}

impl<'a> IntoIterator for &'a SelectorSet {
    type Item = &'a Selector;
    type IntoIter = std::slice::Iter<'a, Selector>;

    fn into_iter(self) -> Self::IntoIter {
        self.selectors.iter()
    }
}

// ---------------------------------------------------------------------------------------------
// Parsing (RFC 6570 section 2)

/// How an operator expands its variables (RFC 6570 appendix A).
#[derive(Clone, Copy, Debug)]
struct Operator {
    /// Written once before the first defined variable.
    first: &'static str,
    /// Written between defined variables, and between exploded items.
    sep: &'static str,
    /// `;`, `?`, `&`: each value is written as `name=value`.
    named: bool,
    /// `?` and `&` write `name=` for an empty value; `;` writes `name` alone.
    empty_keeps_eq: bool,
    /// `+` and `#` let reserved characters through unencoded.
    reserved: bool,
}

const fn op(first: &'static str, sep: &'static str, named: bool, eq: bool, res: bool) -> Operator {
    Operator {
        first,
        sep,
        named,
        empty_keeps_eq: eq,
        reserved: res,
    }
}

#[derive(Clone, Copy, Debug)]
enum Modifier {
    None,
    Prefix(u16),
    Explode,
}

#[derive(Debug)]
struct VarSpec<'a> {
    name: &'a str,
    modifier: Modifier,
}

#[derive(Debug)]
enum Part<'a> {
    Literal(&'a str),
    Expression(Operator, Vec<VarSpec<'a>>),
}

/// The template's parts, or `None` when `raw` is not a valid template with at least one
/// expression within the caps (the selector is then exact-only).
fn parse_template(raw: &str) -> Option<Vec<Part<'_>>> {
    if raw.len() > MAX_TEMPLATE_LEN || !raw.contains('{') {
        return None;
    }
    let (mut parts, mut expressions, mut variables) = (Vec::new(), 0usize, 0usize);
    let mut rest = raw;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix('{') {
            // A nested `{` lands in the body and fails the variable-name check.
            let end = after.find('}')?;
            let (op, vars) = parse_expression(&after[..end])?;
            expressions += 1;
            variables += vars.len();
            if expressions > MAX_EXPRESSIONS || variables > MAX_VARIABLES {
                return None;
            }
            parts.push(Part::Expression(op, vars));
            rest = &after[end + 1..];
        } else {
            let end = rest.find('{').unwrap_or(rest.len());
            let literal = &rest[..end];
            if !valid_literal(literal) {
                return None;
            }
            parts.push(Part::Literal(literal));
            rest = &rest[end..];
        }
    }
    Some(parts)
}

fn parse_expression(body: &str) -> Option<(Operator, Vec<VarSpec<'_>>)> {
    let (operator, list) = match body.as_bytes().first()? {
        b'+' => (op("", ",", false, false, true), &body[1..]),
        b'#' => (op("#", ",", false, false, true), &body[1..]),
        b'.' => (op(".", ".", false, false, false), &body[1..]),
        b'/' => (op("/", "/", false, false, false), &body[1..]),
        b';' => (op(";", ";", true, false, false), &body[1..]),
        b'?' => (op("?", "&", true, true, false), &body[1..]),
        b'&' => (op("&", "&", true, true, false), &body[1..]),
        // Reserved for future extensions (op-reserve): not a valid template today.
        b'=' | b',' | b'!' | b'@' | b'|' => return None,
        _ => (op("", ",", false, false, false), body),
    };
    let vars = list
        .split(',')
        .map(parse_varspec)
        .collect::<Option<Vec<_>>>()?;
    Some((operator, vars))
}

fn parse_varspec(spec: &str) -> Option<VarSpec<'_>> {
    let (name, modifier) = if let Some(name) = spec.strip_suffix('*') {
        (name, Modifier::Explode)
    } else if let Some((name, len)) = spec.split_once(':') {
        // max-length = %x31-39 0*3DIGIT, so 1..=9999 without a leading zero (nor a sign,
        // which `parse` alone would accept).
        let digits = (1..=4).contains(&len.len())
            && len.bytes().all(|b| b.is_ascii_digit())
            && !len.starts_with('0');
        if !digits {
            return None;
        }
        (name, Modifier::Prefix(len.parse().ok()?))
    } else {
        (spec, Modifier::None)
    };
    valid_varname(name).then_some(VarSpec { name, modifier })
}

/// varname = varchar *( ["."] varchar ); varchar = ALPHA / DIGIT / "_" / pct-encoded
fn valid_varname(name: &str) -> bool {
    let bytes = name.as_bytes();
    let (mut i, mut after_varchar) = (0, false);
    while i < bytes.len() {
        match bytes[i] {
            b'.' if after_varchar => after_varchar = false,
            b'%' if is_hex_pair(&bytes[i + 1..]) => {
                i += 2;
                after_varchar = true;
            }
            b if b.is_ascii_alphanumeric() || b == b'_' => after_varchar = true,
            _ => return false,
        }
        i += 1;
    }
    after_varchar
}

fn is_hex_pair(bytes: &[u8]) -> bool {
    bytes.len() >= 2 && bytes[0].is_ascii_hexdigit() && bytes[1].is_ascii_hexdigit()
}

/// RFC 6570 `literals`: the URI characters minus the ones templates reserve, plus IRI characters
/// and pct-encoded triplets. The reference hub rejects the same set, so `a b/{id}` is exact-only.
fn valid_literal(literal: &str) -> bool {
    let mut chars = literal.chars();
    while let Some(c) = chars.next() {
        let ok = match c {
            '%' => {
                let (h1, h2) = (chars.next(), chars.next());
                h1.is_some_and(|h| h.is_ascii_hexdigit())
                    && h2.is_some_and(|h| h.is_ascii_hexdigit())
            }
            '!' | '#' | '$' | '&' | '('..=';' | '=' | '?'..='[' | ']' | '_' | 'a'..='z' | '~' => {
                true
            }
            '\u{A0}'..='\u{D7FF}' | '\u{E000}'..='\u{FDCF}' | '\u{FDF0}'..='\u{FFEF}' => true,
            // ucschar and iprivate above the BMP: each plane minus its last two code points,
            // and minus the tag block U+E0000..U+E0FFF.
            _ if c >= '\u{10000}' => {
                (c as u32 & 0xFFFF) <= 0xFFFD && !('\u{E0000}'..'\u{E1000}').contains(&c)
            }
            _ => false,
        };
        if !ok {
            return false;
        }
    }
    true
}

// ---------------------------------------------------------------------------------------------
// Compiling: each expression becomes the regex of every string it can expand to.

/// Characters a value may hold after simple expansion: unreserved (RFC 3986).
const UNRESERVED: &str = r"[A-Za-z0-9\-._~]";
/// After reserved expansion (`+`, `#`): unreserved and reserved characters.
const UNRESERVED_OR_RESERVED: &str = r"[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=]";
const PCT: &str = "%[0-9A-Fa-f]{2}";
/// A pct-encoded multi-byte UTF-8 sequence: a lead byte, then one to three continuation bytes.
const UTF8_SEQUENCE: &str = "%[C-Fc-f][0-9A-Fa-f](?:%[89ABab][0-9A-Fa-f]){1,3}";

fn compile(parts: &[Part<'_>]) -> Option<Regex> {
    let mut pattern = String::from(r"\A");
    for part in parts {
        match part {
            Part::Literal(literal) => pattern.push_str(&regex::escape(literal)),
            Part::Expression(op, vars) => pattern.push_str(&expression(*op, vars)),
        }
    }
    pattern.push_str(r"\z");
    if pattern.len() > MAX_PATTERN_LEN {
        return None;
    }
    RegexBuilder::new(&pattern)
        .size_limit(REGEX_SIZE_LIMIT)
        .dfa_size_limit(DFA_SIZE_LIMIT)
        .nest_limit(NEST_LIMIT)
        .build()
        .ok()
}

/// An expression expands to nothing when all its variables are undefined, otherwise to `first`
/// then the defined variables' items, in order, joined by `sep`.
fn expression(op: Operator, vars: &[VarSpec<'_>]) -> String {
    let sep = regex::escape(op.sep);
    if op.first == op.sep {
        // `.`, `/`, `;`, `&`: each defined variable simply brings its own separator.
        return vars
            .iter()
            .map(|v| format!("(?:{sep}{})?", item(op, v)))
            .collect();
    }
    // `first` differs from `sep`: which variable comes first decides where `first` goes. Y(k),
    // the non-empty ordered selections among the first k variables, is Y(k-1) optionally
    // followed by `sep item(k)`, or item(k) alone: one copy of Y(k-1) keeps the pattern linear
    // in the number of variables (only its nesting depth grows with them).
    let mut selections = String::new();
    for (k, v) in vars.iter().enumerate() {
        let item = item(op, v);
        selections = if k == 0 {
            format!("(?:{item})")
        } else {
            format!("(?:{selections}(?:{sep}{item})?|{item})")
        };
    }
    format!("(?:{}{selections})?", regex::escape(op.first))
}

/// What one defined variable expands to. Its type (string, list or associative array) is not
/// known, so every shape is allowed: a list is `a,b,c`, an exploded list `a<sep>b`, an exploded
/// associative array `k=v<sep>k=v` (its keys replace the name for the named operators).
fn item(op: Operator, var: &VarSpec<'_>) -> String {
    let unit = if op.reserved {
        UNRESERVED_OR_RESERVED
    } else {
        UNRESERVED
    };
    let value = format!("(?:{unit}|{PCT})*");
    // A list `a,b,c` is any run of value characters and commas. Reserved expansion lets `,`
    // through anyway; elsewhere one flat class keeps the automaton small and unambiguous.
    let list = if op.reserved {
        value.clone()
    } else {
        format!(r"(?:[A-Za-z0-9\-._~,]|{PCT})*")
    };
    let bounded = |n: u16| {
        // The prefix counts characters of the value before encoding, and one character becomes
        // up to four triplets (its UTF-8 bytes): a UTF-8 lead byte with its continuation bytes
        // counts as one character, and so does any single triplet, so that odd bytes never make
        // a match fail. (Not checking that the lead byte announces exactly as many continuation
        // bytes as follow keeps this unit ~40% smaller; it can only widen a bound slightly.)
        let ch = format!("(?:{unit}|{PCT}|{UTF8_SEQUENCE})");
        if n > MAX_EXACT_PREFIX {
            format!("{ch}*")
        } else {
            format!("{ch}{{0,{n}}}")
        }
    };
    let sep = regex::escape(op.sep);
    match (op.named, var.modifier) {
        (_, Modifier::Explode) => {
            // Items are `value` (list) or `key=value` (associative array); a named list writes
            // `name=value`, which `key=value` covers since names are made of value characters.
            let pair = if op.empty_keeps_eq {
                format!("{value}={value}")
            } else if op.reserved {
                value.clone() // `=` is already a value character
            } else {
                format!("{value}(?:={value})?")
            };
            format!("{pair}(?:{sep}{pair})*")
        }
        (false, Modifier::None) => list,
        (false, Modifier::Prefix(n)) => bounded(n),
        (true, modifier) => {
            let name = regex::escape(var.name);
            let value = match modifier {
                Modifier::Prefix(n) => bounded(n),
                _ => list,
            };
            if op.empty_keeps_eq {
                format!("{name}={value}")
            } else {
                format!("{name}(?:={value})?")
            }
        }
    }
}

#[cfg(test)]
mod tests;
