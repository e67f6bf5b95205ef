//! Finding and checking the caller's JWT, Mercure's way: the `Authorization: Bearer` header, else
//! the `authorization` query parameter, else the authorization cookie.

use axum::http::{header, HeaderMap};
use herald_hub::auth::{Claims, Verifier};

/// Where a token came from (a cookie-authenticated POST needs a CSRF check).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenSource {
    /// `Authorization: Bearer …`.
    Header,
    /// The `authorization` query parameter.
    Query,
    /// The authorization cookie.
    Cookie,
}

/// Who the caller is.
#[derive(Debug)]
pub enum Caller {
    /// No token at all.
    Anonymous,
    /// A valid token.
    Authenticated(Claims, TokenSource),
}

/// The `authorization` query parameter of a raw query string, if any (a query that does not
/// decode has none).
pub fn query_token(query: Option<&str>) -> Option<String> {
    crate::form::parse(query?.as_bytes())
        .ok()?
        .into_iter()
        .find(|(name, _)| name == "authorization")
        .map(|(_, value)| value)
}

/// Finds the token and verifies it with `verifier`. `Err` holds a message for a 401 answer.
pub fn identify(
    headers: &HeaderMap,
    query_token: Option<&str>,
    cookie_name: &str,
    verifier: Option<&Verifier>,
) -> Result<Caller, String> {
    let (token, source) = match find(headers, query_token, cookie_name)? {
        None => return Ok(Caller::Anonymous),
        Some(found) => found,
    };
    let Some(verifier) = verifier else {
        return Err("this hub has no key configured to check tokens".into());
    };
    verifier
        .verify(token)
        .map(|claims| Caller::Authenticated(claims, source))
        .map_err(|e| e.to_string())
}

fn find<'a>(
    headers: &'a HeaderMap,
    query_token: Option<&'a str>,
    cookie_name: &str,
) -> Result<Option<(&'a str, TokenSource)>, String> {
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let text = value
            .to_str()
            .map_err(|_| "the Authorization header is not valid text".to_owned())?;
        let (scheme, token) = text.split_once(' ').unwrap_or((text, ""));
        if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
            return Err("the Authorization header must be \"Bearer <JWT>\"".into());
        }
        return Ok(Some((token.trim(), TokenSource::Header)));
    }
    if let Some(token) = query_token {
        return Ok(Some((token, TokenSource::Query)));
    }
    for value in headers.get_all(header::COOKIE) {
        let Ok(text) = value.to_str() else { continue };
        for pair in text.split(';') {
            if let Some((name, token)) = pair.trim().split_once('=') {
                if name == cookie_name && !token.is_empty() {
                    return Ok(Some((token, TokenSource::Cookie)));
                }
            }
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn order_is_header_query_cookie() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=b; mercureAuthorization=c"),
        );
        assert_eq!(
            find(&h, None, "mercureAuthorization").unwrap(),
            Some(("c", TokenSource::Cookie))
        );
        assert_eq!(
            find(&h, Some("q"), "mercureAuthorization").unwrap(),
            Some(("q", TokenSource::Query))
        );
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer x.y.z"),
        );
        assert_eq!(
            find(&h, Some("q"), "mercureAuthorization").unwrap(),
            Some(("x.y.z", TokenSource::Header))
        );
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert!(find(&h, None, "mercureAuthorization").is_err());
        assert_eq!(find(&HeaderMap::new(), None, "m").unwrap(), None);
    }
}
