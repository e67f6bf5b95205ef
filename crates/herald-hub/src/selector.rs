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
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SelectorSet {
    selectors: Vec<Selector>,
}

impl SelectorSet {
    /// A set holding `selectors`, in that order.
    pub fn new(selectors: Vec<Selector>) -> Self {
        Self { selectors }
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
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::time::{Duration, Instant};

    /// One selector per line, then topics it matches, then `!` and topics it must not match;
    /// `""` is the empty string. Variables follow RFC 6570's examples: var = "value", x = 1024,
    /// y = 768, hello = "Hello World!", path = "/foo/bar", list = (red, green, blue), keys =
    /// [(semi, ";"), (dot, "."), (comma, ",")], empty = "", undef undefined.
    const CASES: &str = r#"
        // `*` and exact topics.
        *  https://example.com/books/1 "" {id}
        https://example.com/books/1  https://example.com/books/1 ! https://example.com/books/10 https://example.com/books/ HTTPS://example.com/books/1
        ""  "" ! x
        // Mercure's examples; a template also matches itself verbatim.
        https://example.com/books/{id}  https://example.com/books/1 https://example.com/books/1.jsonld https://example.com/books/{id} ! https://example.com/books/1/x https://example.com/reviews/1
        https://example.com/{+path}  https://example.com/a/b https://example.com/a?b=c ! https://example.com/a"b
        /users/{id}{?fields}  /users/1 /users/1?fields=a,b ! /users/1?other=a /users/1?fields=a&fields=b /users/1/2
        // Simple expansion: unreserved characters, pct-encoded triplets, commas between items.
        {var}  value "" Hello%20World%21 50%25 red,green,blue semi,%3B,dot,.,comma,%2C ! Hello!World 50% 50%2 %zz a/b a?b semi=%3B café
        {keys*}  semi=%3B,dot=.,comma=%2C
        {x,hello,y}  1024,768 1024,Hello%20World%21,768 768 ! 1024;768
        O{empty}X  OX ! O/X
        ?{x,empty}  ?1024, ?768 ?
        map?{x,y}  map?1024,768 ! map1024
        // Reserved expansion `+` and fragment `#`.
        {+path}/here  /foo/bar/here ! /foo"bar/here /foo<b>/here /f{o}/here /foo%/here
        here?ref={+path}  here?ref=/foo/bar
        {+base}index  http://example.com/home/index
        {+x,hello,y}  1024,Hello%20World!,768
        {+keys*}  semi=;,dot=.,comma=,
        {#var}  #value "" ! value
        {#hello}  #Hello%20World!
        foo{#empty}  foo# foo
        {#path,x}/here  #/foo/bar,1024/here ! /foo/bar,1024/here
        // Label `.` and path segment `/`.
        X{.var}  X.value X ! Xvalue
        X{.x,y}  X.1024.768
        X{.list}  X.red,green,blue
        X{.list*}  X.red.green.blue
        X{.keys*}  X.semi=%3B.dot=..comma=%2C
        {/var,x}/here  /value/1024/here /1024/here /here ! /value/1024/x/here
        {/list*}  /red/green/blue
        {/keys*}  /semi=%3B/dot=./comma=%2C ! /a:b
        /books{/id}  /books/1 /books ! /books/1/2
        // Path-style parameters `;`.
        {;x,y,empty}  ;x=1024;y=768;empty ;x=1024;y=768 ;y=768 ! ;y=768;x=1024 ;z=1 x=1024
        {;list*}  ;list=red;list=green;list=blue
        {;keys*}  ;semi=%3B;dot=.;comma=%2C
        // Form-style query `?` and continuation `&`.
        {?x,y,empty}  ?x=1024&y=768&empty= ?x=1024&y=768 ?y=768 ! &y=768 ?x=1&x=2 ?y=768&x=1024 ?x ?x=1?y=2
        {?list*}  ?list=red&list=green&list=blue
        {?keys}  ?keys=semi,%3B,dot,.,comma,%2C
        {?keys*}  ?semi=%3B&dot=.&comma=%2C
        ?fixed=yes{&x}  ?fixed=yes&x=1024 ?fixed=yes ! ?fixed=yes?x=1024
        {&x,y,empty}  &x=1024&y=768&empty=
        // Prefix modifiers count characters; a pct-encoded UTF-8 sequence is one.
        {var:3}  val va "" %C3%A9%C3%A9%C3%A9 ! valu %C3%A9%C3%A9%C3%A9%C3%A9
        {var:2}  %C3%A9%C3%A9 ! %C3%A9%C3%A9%C3%A9
        {var:1}  %F0%9F%98%80 %41 ! %F0%9F%98%80a
        {var:30}  value
        {var:9999}  value
        {+path:6}/here  /foo/b/here ! /foo/ba/here
        {#path:6}/here  #/foo/b/here
        X{.var:3}  X.val
        {/var:1,var}  /v/value
        {/list*,path:4}  /red/green/blue/%2Ffoo
        {;hello:5}  ;hello=Hello ! ;hello=Hello%20
        {?var:3}  ?var=val ! ?var=valu
        {&var:3}  &var=val
        https://example.com/dictionary/{term:1}/{term}  https://example.com/dictionary/c/cat ! https://example.com/dictionary/ca/cat
        // Literals match literally, regex metacharacters included.
        https://ex.com/a.b?c=(d)/{id}  https://ex.com/a.b?c=(d)/1 https://ex.com/a.b?c=(d)/ ! https://ex.com/aXb?c=(d)/1 https://ex.com/a.bc=d/1 https://ex.com/a.b?c=d/1
        a*+[x]$/{id}  a*+[x]$/1 ! aa+[x]$/1 a*+x$/1
        https://example.com/%7Euser/{id}  https://example.com/%7Euser/1 ! https://example.com/~user/1
        https://例え.jp/{id}  https://例え.jp/1
        {id}-😀  1-😀
        // Variable names may hold dots and pct-encoded triplets.
        /{a.b}/{%41b}  /1/2
        // Not valid templates: exact-only, so they match themselves and nothing else.
        https://ex.com/{id  https://ex.com/{id ! https://ex.com/1 https://ex.com/
        https://ex.com/id}  https://ex.com/id}
        /{}  /{} ! /
        /{{id}}  /{{id}} ! /1 /{1}
        /{!x}  /{!x} ! /1 /
        /{=x} ! /1
        /{a-b} ! /1
        /{a,} ! /1
        /{.a.} ! /1
        /{a..b} ! /1
        /{a:0} ! /1
        /{a:01} ! /1
        /{a:+1} ! /1
        /{a:10000} ! /1
        /{a*:3} ! /1
        /{a**} ! /1
        /a|b/{id}  /a|b/{id} ! /a|b/1
        /a%zz/{id} ! /a%zz/1
        /a%/{id} ! /a%/1
        /a"b/{id} ! /a"b/1
    "#;

    /// Cases the table cannot hold: spaces.
    const SPACED: &[(&str, &str, bool)] = &[
        ("{hello}", "Hello World!", false),
        ("{+path}", "a b", false),
        ("/{a b}", "/1", false),
        ("a b/{id}", "a b/1", false),
        ("a b/{id}", "a b/{id}", true),
    ];

    #[test]
    fn table() {
        let mut cases = Vec::new();
        for line in CASES.lines().map(str::trim) {
            if line.is_empty() || line.starts_with("//") {
                continue;
            }
            let unquote = |t: &'static str| if t == "\"\"" { "" } else { t };
            let mut tokens = line.split_whitespace().map(unquote);
            let selector = tokens.next().unwrap();
            let mut expected = true;
            for topic in tokens {
                match topic {
                    "!" => expected = false,
                    _ => cases.push((selector, topic, expected)),
                }
            }
        }
        assert!(cases.len() > 150, "{}", cases.len());
        let failures: Vec<String> = cases
            .iter()
            .chain(SPACED)
            .filter(|&&(selector, topic, expected)| {
                Selector::parse(selector).matches(topic) != expected
            })
            .map(|(selector, topic, expected)| format!("{selector} vs {topic}: not {expected}"))
            .collect();
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    #[test]
    fn kinds_and_exact_topic() {
        let any = Selector::parse("*");
        assert!(any.is_any() && !any.is_template() && any.exact_topic().is_none());
        let exact = Selector::parse("https://example.com/books/1");
        assert_eq!(exact.exact_topic(), Some("https://example.com/books/1"));
        let template = Selector::parse("https://example.com/books/{id}");
        assert!(template.is_template() && template.exact_topic().is_none());
        for invalid in [
            "/{id", "/{}", "/{a b}", "a b/{id}", "/{a:0}", "/{!x}", "**", "",
        ] {
            let s = Selector::parse(invalid);
            assert_eq!(s.exact_topic(), Some(invalid), "{invalid}");
            assert!(!s.is_template() && !s.is_any());
        }
    }

    fn var_list(n: usize) -> String {
        (0..n)
            .map(|i| format!("v{i}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    #[test]
    fn caps_fall_back_to_exact() {
        assert!(Selector::parse(&"{a}".repeat(MAX_EXPRESSIONS)).is_template());
        let over = "{a}".repeat(MAX_EXPRESSIONS + 1);
        assert_eq!(Selector::parse(&over).exact_topic(), Some(over.as_str()));
        let long = format!("/{}/{{id}}", "x".repeat(MAX_TEMPLATE_LEN));
        assert_eq!(Selector::parse(&long).exact_topic(), Some(long.as_str()));
        let many = format!("{{?{}}}", var_list(MAX_VARIABLES + 1));
        assert!(many.len() <= MAX_TEMPLATE_LEN && !Selector::parse(&many).is_template());
        // The nested construction for `?` (its first separator differs from the others) still
        // compiles with 32 variables in one expression, and keeps their order.
        let wide = Selector::parse(&format!("{{?{}}}", var_list(32)));
        assert!(wide.is_template() && wide.matches("?v0=1&v31=2") && wide.matches("?v5="));
        assert!(!wide.matches("?v31=2&v0=1"));
        // Within the caps on expressions and variables, a long generated pattern is exact-only.
        let heavy = "{;a:60,b*}".repeat(40);
        assert!(heavy.len() <= MAX_TEMPLATE_LEN && !Selector::parse(&heavy).is_template());
        // Two exact prefixes at the bound fit the size limit; a crafted pile of them does not.
        let prefix = format!("{{+a:{MAX_EXACT_PREFIX}}}");
        assert!(Selector::parse(&prefix.repeat(2)).is_template());
        let pile = prefix.repeat(MAX_EXPRESSIONS);
        assert_eq!(Selector::parse(&pile).exact_topic(), Some(pile.as_str()));
    }

    #[test]
    fn equality_hash_display_clone() {
        let a = Selector::parse("/books/{id}");
        let b = a.clone();
        assert_eq!(a, b);
        assert_ne!(a, Selector::parse("/books/{id2}"));
        let set: std::collections::HashSet<_> = [a.clone(), b, Selector::parse("*")].into();
        assert_eq!(set.len(), 2);
        assert_eq!(
            (a.to_string().as_str(), a.as_str()),
            ("/books/{id}", "/books/{id}")
        );
        assert!(format!("{a:?}").contains("template"));
        assert!("*".parse::<Selector>().unwrap().is_any());
        assert!(Selector::from("/a").exact_topic().is_some());
    }

    #[test]
    fn selector_set() {
        // Mercure's "multiple topics": any selector against any of the update's topics.
        let set = SelectorSet::parse_all(["https://ex.com/books/1", "https://ex.com/reviews/{id}"]);
        assert_eq!(set.len(), 2);
        assert!(set.matches_any(&["https://ex.com/books/1"]));
        assert!(set.matches_any(&["https://ex.com/other", "https://ex.com/reviews/22"]));
        assert!(!set.matches_any(&["https://ex.com/books/2", "https://ex.com/reviews/2/x"]));
        assert!(!set.matches_any::<&str>(&[]));
        assert!(set.matches("https://ex.com/reviews/3") && !set.has_any());
        let topics = vec![String::from("urn:x")];
        assert!(!SelectorSet::default().matches_any(&topics));
        assert!(SelectorSet::new(vec![Selector::parse("*")]).matches_any(&topics));
        assert!(SelectorSet::from(vec![Selector::parse("*")]).has_any());
        assert_eq!(set.iter().count(), (&set).into_iter().count());
    }

    fn assert_fast(selector: &Selector, topic: &str, expected: bool) {
        let start = Instant::now();
        assert_eq!(selector.matches(topic), expected, "{selector:?}");
        let took = start.elapsed();
        assert!(took < Duration::from_secs(1), "{selector:?} took {took:?}");
    }

    #[test]
    fn pathological_inputs_match_in_linear_time() {
        let a = "a".repeat(100_000);
        // Adjacent expressions accepting the same characters: a backtracking matcher would try
        // every way of splitting the topic between them before failing.
        let pairs = Selector::parse(&"{a}{b}".repeat(MAX_EXPRESSIONS / 2));
        assert!(pairs.is_template());
        assert_fast(&pairs, &a, true);
        assert_fast(&pairs, &format!("{a}/"), false);
        assert_fast(&pairs, &format!("{a}!"), false);

        let reserved = (0..MAX_EXPRESSIONS)
            .map(|i| format!("{{+v{i}}}"))
            .collect::<String>();
        let reserved = Selector::parse(&reserved);
        assert!(reserved.is_template());
        assert_fast(&reserved, &a, true);
        assert_fast(&reserved, &format!("{a} "), false);
        assert_fast(&reserved, &format!("{}%", "a/".repeat(50_000)), false);

        // Every operator interleaved, against a topic full of their separators: many automaton
        // states stay alive at once.
        let mixed =
            Selector::parse(&"{.a}{.b}{/c}{;d}{?e}{&f}{#g}{+h}".repeat(MAX_EXPRESSIONS / 8));
        assert!(mixed.is_template());
        let noisy = "a.b/c;d=e?f=g&h=%41#i,".repeat(4_500);
        assert_fast(&mixed, &noisy, true);
        assert_fast(&mixed, &format!("{noisy} "), false);

        // Bounded repetitions from prefix modifiers.
        let bounded = Selector::parse("{a:64}{b:64}");
        assert!(bounded.is_template());
        assert_fast(&bounded, &"a".repeat(128), true);
        assert_fast(&bounded, &"%C3%A9".repeat(128), true);
        assert_fast(&bounded, &"a".repeat(129), false);
        assert_fast(&bounded, &a, false);

        let counters = Selector::parse("{a:64}{b}{c:64}");
        let emoji = "%F0%9F%98%80".repeat(8_000);
        assert_fast(&counters, &emoji, true);
        assert_fast(&counters, &format!("{emoji} "), false);

        let lists = Selector::parse(&"{?a,b,c}{/d*}{;e,f*}{.g:9999}".repeat(MAX_EXPRESSIONS / 8));
        assert!(lists.is_template());
        assert_fast(&lists, &format!("?a={}", "%41".repeat(33_000)), true);
        assert_fast(&lists, &format!("?a={}%4", "%41".repeat(33_000)), false);

        // Compiling stays cheap too, for the heaviest templates within the caps and beyond them.
        for raw in [
            "{;a,b}".repeat(64),
            "{a:64}".repeat(64),
            "{+a:64}{?b,c,d,e,f}".repeat(32),
        ] {
            let start = Instant::now();
            let _ = Selector::parse(&raw);
            assert!(start.elapsed() < Duration::from_secs(1), "{raw}");
        }
    }

    /// Expands a template whose variables are strings or undefined (RFC 6570 appendix A).
    fn expand(parts: &Parts) -> String {
        let mut out = String::new();
        for (literal, op, vars) in parts {
            out.push_str(literal);
            let (first, sep, named, keep_eq) = match op {
                '+' | ' ' => ("", ",", false, false),
                '#' => ("#", ",", false, false),
                '.' => (".", ".", false, false),
                '/' => ("/", "/", false, false),
                ';' => (";", ";", true, false),
                '?' => ("?", "&", true, true),
                _ => ("&", "&", true, true),
            };
            let encode = |value: &str| -> String {
                let keep = |c: char| {
                    c.is_ascii_alphanumeric()
                        || "-._~".contains(c)
                        || (matches!(op, '+' | '#') && ":/?#[]@!$&'()*+,;=".contains(c))
                };
                let mut out = String::new();
                for c in value.chars() {
                    if keep(c) {
                        out.push(c);
                    } else {
                        let mut buf = [0; 4];
                        c.encode_utf8(&mut buf)
                            .bytes()
                            .for_each(|b| out += &format!("%{b:02X}"));
                    }
                }
                out
            };
            let items: Vec<String> = vars
                .iter()
                .filter_map(|(name, value, prefix)| {
                    let value = value.as_ref()?;
                    let value = encode(
                        &value
                            .chars()
                            .take(prefix.unwrap_or(usize::MAX))
                            .collect::<String>(),
                    );
                    Some(match (named, value.is_empty()) {
                        (false, _) => value.to_owned(),
                        (true, true) if !keep_eq => name.clone(),
                        (true, _) => format!("{name}={value}"),
                    })
                })
                .collect();
            if !items.is_empty() {
                out.push_str(first);
                out.push_str(&items.join(sep));
            }
        }
        out
    }

    fn template(parts: &Parts) -> String {
        let mut out = String::new();
        for (literal, op, vars) in parts {
            out.push_str(literal);
            let specs: Vec<String> = vars
                .iter()
                .map(|(name, _, prefix)| match prefix {
                    Some(p) => format!("{name}:{p}"),
                    None => name.clone(),
                })
                .collect();
            let op = if *op == ' ' {
                String::new()
            } else {
                op.to_string()
            };
            out.push_str(&format!("{{{op}{}}}", specs.join(",")));
        }
        out
    }

    /// A variable: name, value (`None` when undefined), prefix modifier.
    type Var = (String, Option<String>, Option<usize>);
    /// Literal, then an expression: operator (`' '` for none) and variables.
    type Parts = Vec<(String, char, Vec<Var>)>;

    fn parts() -> impl Strategy<Value = Parts> {
        // Literal characters include regex metacharacters that RFC 6570 allows in literals.
        let literal = "[a-z0-9/.:?=&#()*+\\[\\]$!;,~_-]{0,6}";
        let var = (
            "[a-z][a-z0-9_]{0,3}",
            // Values may need encoding: spaces, reserved and non-ASCII characters.
            proptest::option::weighted(0.8, "[A-Za-z0-9._~ /?=&,%é€😀-]{0,8}"),
            proptest::option::weighted(0.2, 1usize..10),
        );
        let op = proptest::sample::select(vec![' ', '+', '#', '.', '/', ';', '?', '&']);
        proptest::collection::vec((literal, op, proptest::collection::vec(var, 1..4)), 1..6)
    }

    proptest! {
        #[test]
        fn expansions_match(parts in parts()) {
            let selector = Selector::parse(&template(&parts));
            prop_assert!(selector.is_template(), "{selector:?}");
            let topic = expand(&parts);
            prop_assert!(selector.matches(&topic), "{selector:?} vs {topic:?}");
        }

        #[test]
        fn simple_values_never_take_a_slash(
            literals in proptest::collection::vec("[a-z0-9/.]{0,6}", 1..6),
            values in proptest::collection::vec("[A-Za-z0-9._~-]{0,8}", 6),
            cut in 0usize..8,
        ) {
            // With only simple expressions, a matching topic has exactly the literals' slashes,
            // so a value carrying one more can never match.
            let raw: String = literals.iter().map(|l| format!("{l}{{v}}")).collect();
            let selector = Selector::parse(&raw);
            let mut topic = String::new();
            for (i, (literal, value)) in literals.iter().zip(&values).enumerate() {
                topic.push_str(literal);
                if i == 0 {
                    let at = cut.min(value.len());
                    topic.push_str(&format!("{}/{}", &value[..at], &value[at..]));
                } else {
                    topic.push_str(value);
                }
            }
            prop_assert!(!selector.matches(&topic), "{selector:?} vs {topic:?}");
        }
    }
}
