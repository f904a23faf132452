//! The bearer-token check of `--token`: a store reachable over the network is not open to
//! whoever finds its port.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::ApiError;

/// Lets the request through when it carries `Authorization: Bearer <token>`, answers 401
/// otherwise.
pub(crate) async fn require_token(State(token): State<Arc<str>>, request: Request, next: Next) -> Response {
    let given = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match given {
        Some(given) if same_bytes(given.as_bytes(), token.as_bytes()) => next.run(request).await,
        _ => {
            let message = if given.is_some() {
                "wrong bearer token"
            } else {
                "missing bearer token: send the header Authorization: Bearer <token>"
            };
            let mut response = ApiError::new(StatusCode::UNAUTHORIZED, message).into_response();
            response
                .headers_mut()
                .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            response
        }
    }
}

/// Compares in a time that does not depend on where the first difference is (only on the
/// lengths), so that the token cannot be guessed byte by byte from response times.
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::same_bytes;

    #[test]
    fn tokens_match_only_when_equal() {
        assert!(same_bytes(b"secret", b"secret"));
        assert!(!same_bytes(b"secret", b"secreT"));
        assert!(!same_bytes(b"secret", b"secrets"));
        assert!(same_bytes(b"", b""));
    }
}
