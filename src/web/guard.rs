//! Request checks that keep other web sites out of the dashboard: the `Host` header must name
//! loopback on a loopback server (no DNS rebinding), and state-changing requests must come from the
//! dashboard's own pages (`Origin`, else `Referer`, matching `Host`: no cross-site request forgery).
//! Also marks API answers `Cache-Control: no-store`. The rules are spelled out in README's
//! "Security" section.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::AppState;

/// Content types a browser may send cross-site without asking first (CORS "simple" requests): a
/// request of one of these kinds without `Origin` or `Referer` could be a forged form post.
const FORM_CONTENT_TYPES: [&str; 3] = ["application/x-www-form-urlencoded", "multipart/form-data", "text/plain"];

pub async fn check_host_and_origin(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let host = request_host(&request);
    // A token server is meant to be reached by whatever name the network gives it; the token
    // keeps strangers out there. Without a token we listen on loopback only, so any other name in
    // `Host` means a browser was pointed here by a DNS name that was rebound to 127.0.0.1.
    if state.token.is_none() {
        if let Some(host) = host.as_deref() {
            if !is_loopback_authority(host) {
                let port = split_authority(host, 80).map(|(_, port)| port).unwrap_or(80);
                return refuse(
                    StatusCode::MISDIRECTED_REQUEST,
                    format!(
                        "this dashboard answers only to its loopback address, not to '{host}': \
                         use http://127.0.0.1:{port}/"
                    ),
                );
            }
        }
    }
    if changes_state(request.method()) {
        if let Err(refusal) = same_origin(request.headers(), host.as_deref()) {
            return refuse(StatusCode::FORBIDDEN, refusal.to_string());
        }
    }
    let api = request.uri().path().starts_with("/api/");
    let mut response = next.run(request).await;
    if api {
        // Run data is live and may be private: never keep it in a browser or proxy cache.
        response
            .headers_mut()
            .entry(header::CACHE_CONTROL)
            .or_insert(HeaderValue::from_static("no-store"));
    }
    response
}

fn refuse(status: StatusCode, message: String) -> Response {
    (status, Json(serde_json::json!({ "error": message }))).into_response()
}

/// Everything but reads changes something (submit, cancel, resume, delete).
fn changes_state(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// `Host`, or the HTTP/2 `:authority` that replaces it.
fn request_host(request: &Request) -> Option<String> {
    match request.headers().get(header::HOST) {
        Some(value) => Some(String::from_utf8_lossy(value.as_bytes()).into_owned()),
        None => request.uri().authority().map(|a| a.as_str().to_string()),
    }
}

/// Why a state-changing request was refused as not coming from this dashboard's pages.
#[derive(Debug, thiserror::Error)]
enum CrossSite {
    #[error(
        "refused a {content_type} request without an Origin or Referer header: forms must be \
         sent from the dashboard's own pages (scripts: send JSON)"
    )]
    FormWithoutOrigin { content_type: String },
    #[error("cannot check {header} '{claimed}': the request has no Host header")]
    NoHost { header: &'static str, claimed: String },
    #[error(
        "refused a cross-site request: its {header} '{claimed}' is not this dashboard ({host}); \
         open the dashboard at http://{host}/ and use its pages"
    )]
    OtherSite {
        header: &'static str,
        claimed: String,
        host: String,
    },
}

/// Whether a state-changing request comes from a page this server sent.
fn same_origin(headers: &HeaderMap, host: Option<&str>) -> Result<(), CrossSite> {
    let text = |name| {
        headers
            .get(name)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
    };
    let (source, claimed) = match (text(header::ORIGIN), text(header::REFERER)) {
        (Some(origin), _) => ("Origin", origin),
        (None, Some(referer)) => ("Referer", referer),
        (None, None) => {
            // Every current browser sends Origin with such requests, so its absence means a
            // script or curl, unless the body is of a kind an old browser's form could post.
            let content_type = text(header::CONTENT_TYPE).unwrap_or_default().to_ascii_lowercase();
            let essence = content_type.split(';').next().unwrap_or_default().trim();
            if FORM_CONTENT_TYPES.contains(&essence) {
                return Err(CrossSite::FormWithoutOrigin {
                    content_type: essence.to_string(),
                });
            }
            return Ok(());
        }
    };
    let Some(host) = host else {
        return Err(CrossSite::NoHost {
            header: source,
            claimed,
        });
    };
    let matches = url_authority(&claimed).is_some_and(|(scheme, authority)| {
        let default = if scheme.eq_ignore_ascii_case("https") { 443 } else { 80 };
        match (split_authority(&authority, default), split_authority(host, default)) {
            (Some(a), Some(b)) => a == b,
            _ => false,
        }
    });
    if matches {
        Ok(())
    } else {
        Err(CrossSite::OtherSite {
            header: source,
            claimed,
            host: host.to_string(),
        })
    }
}

/// The scheme and `host[:port]` of an absolute URL (userinfo dropped); `None` for `null` and
/// anything else without `scheme://`.
fn url_authority(url: &str) -> Option<(String, String)> {
    let (scheme, rest) = url.trim().split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    (!authority.is_empty()).then(|| (scheme.to_string(), authority.to_string()))
}

/// `host[:port]` → (lower-case host, port), with `default_port` when none is written.
fn split_authority(authority: &str, default_port: u16) -> Option<(String, u16)> {
    let authority = authority.trim();
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (inside, after) = rest.split_once(']')?;
        (format!("[{}]", inside), after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host.to_string(), Some(port)),
            None => (authority.to_string(), None),
        }
    };
    if host.is_empty() || host == "[]" {
        return None;
    }
    let port = match port {
        None => default_port,
        Some(p) => p.parse().ok()?,
    };
    Some((host.to_ascii_lowercase(), port))
}

/// `localhost`, `127.x.x.x` or `[::1]`, with any port.
fn is_loopback_authority(authority: &str) -> bool {
    let Some((host, _)) = split_authority(authority, 80) else {
        return false;
    };
    if host == "localhost" {
        return true;
    }
    if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return inner.parse::<Ipv6Addr>().is_ok_and(|ip| ip.is_loopback());
    }
    host.parse::<Ipv4Addr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_names() {
        for ok in [
            "127.0.0.1:8080",
            "localhost:8080",
            "LOCALHOST",
            "[::1]:8080",
            "127.0.0.2",
            "[::1]",
        ] {
            assert!(is_loopback_authority(ok), "{ok} is loopback");
        }
        for bad in [
            "evil.example:8080",
            "127.0.0.1.evil.example:8080",
            "localhost.evil.example",
            "[::2]:8080",
            "0.0.0.0:8080",
            "10.0.0.1",
            "",
            ":8080",
            "127.0.0.1:notaport",
        ] {
            assert!(!is_loopback_authority(bad), "{bad} is not loopback");
        }
    }

    #[test]
    fn origin_must_match_host() {
        let headers = |name: header::HeaderName, value: &str| {
            let mut h = HeaderMap::new();
            h.insert(name, HeaderValue::from_str(value).unwrap());
            h
        };
        let host = Some("127.0.0.1:8080");
        assert!(same_origin(&headers(header::ORIGIN, "http://127.0.0.1:8080"), host).is_ok());
        assert!(same_origin(&headers(header::REFERER, "http://127.0.0.1:8080/runs/new?x=1"), host).is_ok());
        assert!(same_origin(&headers(header::ORIGIN, "http://localhost"), Some("localhost:80")).is_ok());
        assert!(same_origin(&headers(header::ORIGIN, "http://127.0.0.1:9090"), host).is_err());
        assert!(same_origin(&headers(header::ORIGIN, "http://evil.example:8080"), host).is_err());
        assert!(same_origin(&headers(header::ORIGIN, "null"), host).is_err());
        assert!(same_origin(&headers(header::REFERER, "http://127.0.0.1:8080@evil.example/"), host).is_err());
        assert!(matches!(
            same_origin(&headers(header::ORIGIN, "http://127.0.0.1:8080"), None),
            Err(CrossSite::NoHost { header: "Origin", .. })
        ));
        assert!(matches!(
            same_origin(&headers(header::ORIGIN, "http://evil.example"), host),
            Err(CrossSite::OtherSite { header: "Origin", .. })
        ));
        let form = headers(header::CONTENT_TYPE, "application/x-www-form-urlencoded; charset=utf-8");
        assert!(matches!(
            same_origin(&form, host),
            Err(CrossSite::FormWithoutOrigin { .. })
        ));
        assert!(same_origin(&headers(header::CONTENT_TYPE, "Text/Plain"), host).is_err());
        assert!(same_origin(&headers(header::CONTENT_TYPE, "application/json"), host).is_ok());
        assert!(same_origin(&HeaderMap::new(), host).is_ok());
    }
}
