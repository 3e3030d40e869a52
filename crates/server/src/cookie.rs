//! The session cookie, named as Harper names it.
//!
//! Its name is `<origin>-hdb-session`, where `<origin>` is the request's `Origin` (or,
//! without one, its `Host`) less any `http://` or `https://`: a page from another origin
//! makes the browser send a cookie of another name, which no session answers, so one
//! site cannot use another's session (CSRF). Harper turns the first character that is
//! not a letter, digit or `_` into `_` (`localhost:9926` gives
//! `localhost_9926-hdb-session`); here every such character is, so that the name is
//! always a valid cookie name (`127.0.0.1:9926` gives `127_0_0_1_9926-hdb-session`).

use std::time::{Duration, UNIX_EPOCH};

use axum::http::{HeaderMap, HeaderValue, header};
use shoal_auth::Session;

/// What follows the origin in the cookie's name.
const SUFFIX: &str = "hdb-session";

/// Longest cookie name looked for; the rest of an overlong `Origin` or `Host` is ignored
/// (a browser sends no such header, and no cookie of that name then matches).
const MAX_NAME_LEN: usize = 256;

/// The session cookie's name for a request with these headers.
pub(crate) fn name(headers: &HeaderMap) -> String {
    let origin = [header::ORIGIN, header::HOST]
        .iter()
        .find_map(|h| headers.get(h).and_then(|v| v.to_str().ok()))
        .map(|o| {
            o.strip_prefix("https://")
                .or_else(|| o.strip_prefix("http://"))
                .unwrap_or(o)
        });
    let mut name = String::new();
    if let Some(origin) = origin {
        name.extend(origin.chars().map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        }));
        name.push('-');
    }
    name.push_str(SUFFIX);
    name
}

/// The session id the request's cookie carries, if it has the session cookie.
pub(crate) fn session_id(headers: &HeaderMap) -> Option<String> {
    let name = name(headers);
    if name.len() > MAX_NAME_LEN {
        return None;
    }
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, id)| id.trim_matches('"').to_owned())
}

/// `Set-Cookie` for a new session: only for this origin's path `/`, not for scripts
/// (`HttpOnly`), until the session expires; over HTTPS only over HTTPS (`Secure`), and
/// then also from pages of other sites (`SameSite=None`), as Harper sets it.
pub(crate) fn set(headers: &HeaderMap, session: &Session, secure: bool) -> Option<HeaderValue> {
    let expires = httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(session.expires));
    let cookie = format!(
        "{}={}; Path=/; Expires={expires}; HttpOnly{}",
        name(headers),
        session.id,
        attributes(secure)
    );
    HeaderValue::from_str(&cookie).ok()
}

/// `Set-Cookie` that makes a browser forget the session cookie.
pub(crate) fn clear(headers: &HeaderMap, secure: bool) -> Option<HeaderValue> {
    let cookie = format!(
        "{}=; Path=/; Expires=Thu, 01 Jan 1970 00:00:00 GMT; HttpOnly{}",
        name(headers),
        attributes(secure)
    );
    HeaderValue::from_str(&cookie).ok()
}

fn attributes(secure: bool) -> &'static str {
    if secure {
        "; Secure; SameSite=None"
    } else {
        ""
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn named_for_the_origin_or_the_host() {
        assert_eq!(
            name(&headers(&[("host", "localhost:9926")])),
            "localhost_9926-hdb-session"
        );
        assert_eq!(
            name(&headers(&[
                ("host", "localhost:9926"),
                ("origin", "https://app.example.com")
            ])),
            "app_example_com-hdb-session"
        );
        assert_eq!(
            name(&headers(&[("host", "127.0.0.1:9925")])),
            "127_0_0_1_9925-hdb-session"
        );
        assert_eq!(name(&HeaderMap::new()), "hdb-session");
    }

    #[test]
    fn finds_its_cookie_among_others() {
        let h = headers(&[
            ("host", "localhost:9926"),
            ("cookie", "a=1; localhost_9925-hdb-session=other"),
            ("cookie", "b=2;localhost_9926-hdb-session=abc ; c=3"),
        ]);
        assert_eq!(session_id(&h).as_deref(), Some("abc"));
        let foreign = headers(&[
            ("host", "localhost:9926"),
            ("origin", "http://evil.example"),
            ("cookie", "localhost_9926-hdb-session=abc"),
        ]);
        assert_eq!(session_id(&foreign), None, "another origin's request");
        assert_eq!(session_id(&headers(&[("host", "h")])), None);
    }
}
