//! What every handler of the API shares: its state, error answers (with the
//! HTTP status chosen here for each typed refusal of the node), and asking
//! the running node.

use super::guard::Access;
use crate::control::{ApiQuery, Refusal};
use crate::views::ErrorBody;
use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

#[derive(Clone, Debug)]
pub(crate) struct ApiState {
    pub(super) node: mpsc::Sender<ApiQuery>,
    /// The token, the dashboard's logins and sessions, the names the API answers to.
    pub(super) access: Arc<Access>,
    /// The OpenAPI document, generated once from the REST routes.
    pub(super) openapi: Arc<serde_json::Value>,
}

/// A bound API server, ready to run.
pub(super) fn unavailable() -> ApiFail {
    ApiFail(
        StatusCode::SERVICE_UNAVAILABLE,
        "the node is shutting down".into(),
    )
}

pub(crate) async fn ask<T>(
    state: &ApiState,
    make: impl FnOnce(oneshot::Sender<T>) -> ApiQuery,
) -> Result<T, ApiFail> {
    let (tx, rx) = oneshot::channel();
    state.node.send(make(tx)).await.map_err(|_| unavailable())?;
    rx.await.map_err(|_| unavailable())
}

/// An error answer, as `{"error": "..."}` with its status.
#[derive(Debug)]
pub(crate) struct ApiFail(pub(crate) StatusCode, pub(crate) String);

impl IntoResponse for ApiFail {
    fn into_response(self) -> Response {
        (self.0, Json(ErrorBody { error: self.1 })).into_response()
    }
}

/// The HTTP status of each refusal, chosen here at the edge.
impl From<Refusal> for ApiFail {
    fn from(r: Refusal) -> Self {
        let status = match &r {
            Refusal::Invalid(_) => StatusCode::BAD_REQUEST,
            // Nothing on the network offers it: the adapter or model named
            // is not found, though the request is well formed.
            Refusal::NotOffered(_) => StatusCode::NOT_FOUND,
            Refusal::NoOrchestrator(_) => StatusCode::SERVICE_UNAVAILABLE,
            Refusal::UnknownJob(_) => StatusCode::NOT_FOUND,
            Refusal::AlreadyEnded(_) => StatusCode::CONFLICT,
        };
        ApiFail(status, r.to_string())
    }
}

pub(super) async fn method_not_allowed() -> ApiFail {
    ApiFail(
        StatusCode::METHOD_NOT_ALLOWED,
        "this endpoint does not take that method; see /api/v1/openapi.json".into(),
    )
}

pub(super) async fn not_found() -> ApiFail {
    ApiFail(
        StatusCode::NOT_FOUND,
        "no such endpoint; see /api/v1/openapi.json for the API".into(),
    )
}

/// Whole numbers as JSON Schema counts them: the document types a field
/// `integer`, which `12.0` is too, so a request may send either.
pub(crate) mod whole {
    use serde::de::Error as _;
    use serde::{Deserialize, Deserializer};

    /// An optional whole number of type `T`: an integer, or a float with no
    /// fraction, in `T`'s range.
    pub(crate) fn opt<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
    where
        D: Deserializer<'de>,
        T: TryFrom<u64> + TryFrom<i64>,
    {
        let Some(n) = Option::<serde_json::Number>::deserialize(d)? else {
            return Ok(None);
        };
        let v = if let Some(u) = n.as_u64() {
            T::try_from(u).ok()
        } else if let Some(i) = n.as_i64() {
            T::try_from(i).ok()
        } else {
            // 2^63: beyond it no f64 converts to an i64 or u64 exactly here.
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && f.abs() < 9.2e18)
                .and_then(|f| {
                    if f >= 0.0 {
                        T::try_from(f as u64).ok()
                    } else {
                        T::try_from(f as i64).ok()
                    }
                })
        };
        v.map(Some)
            .ok_or_else(|| D::Error::custom(format!("{n} is not a whole number in range")))
    }

    #[cfg(test)]
    mod tests {
        #[derive(Debug, serde::Deserialize)]
        struct T {
            #[serde(default, deserialize_with = "super::opt")]
            n: Option<u8>,
        }

        #[test]
        fn integral_floats_count_and_others_do_not() {
            let n = |j: &str| serde_json::from_str::<T>(j).map(|t| t.n);
            assert_eq!(n(r#"{"n": 7}"#).expect("int"), Some(7));
            assert_eq!(n(r#"{"n": 7.0}"#).expect("float"), Some(7));
            assert_eq!(n(r#"{}"#).expect("absent"), None);
            assert_eq!(n(r#"{"n": null}"#).expect("null"), None);
            for bad in [
                r#"{"n": 7.5}"#,
                r#"{"n": 256}"#,
                r#"{"n": -1}"#,
                r#"{"n": "7"}"#,
                r#"{"n": 1e300}"#,
            ] {
                assert!(n(bad).is_err(), "{bad}");
            }
        }
    }
}
