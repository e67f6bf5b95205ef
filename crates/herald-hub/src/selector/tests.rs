//! Selector matching tables, properties and timing bounds.
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
    let mixed = Selector::parse(&"{.a}{.b}{/c}{;d}{?e}{&f}{#g}{+h}".repeat(MAX_EXPRESSIONS / 8));
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
