//! The planner's HTTP API, its live stream and the dashboard. Every route is
//! described in `assets/openapi.json`, served at `/openapi.json`.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use forecast_model::{Quarter, RuleCode, Timestamp};
use futures::Stream;
use serde::Serialize;
use tokio::sync::broadcast::error::RecvError;

use crate::feed::Planner;
use crate::view::{DemandFilter, RECENT_REJECTIONS, RejectionFilter};

/// The routes of the API and the dashboard.
pub fn routes(planner: Arc<Planner>) -> Router {
    Router::new()
        .route(
            "/",
            get(|| {
                asset(
                    "text/html; charset=utf-8",
                    include_str!("../assets/index.html"),
                )
            }),
        )
        .route(
            "/dashboard.js",
            get(|| {
                asset(
                    "text/javascript; charset=utf-8",
                    include_str!("../assets/dashboard.js"),
                )
            }),
        )
        .route(
            "/dashboard.css",
            get(|| {
                asset(
                    "text/css; charset=utf-8",
                    include_str!("../assets/dashboard.css"),
                )
            }),
        )
        .route(
            "/openapi.json",
            get(|| asset("application/json", include_str!("../assets/openapi.json"))),
        )
        .route("/v1/demand", get(demand))
        .route("/v1/demand/stream", get(demand_stream))
        .route("/v1/documents/{document_id}", get(document))
        .route("/v1/rejections", get(rejections))
        .route("/v1/supply", get(supply))
        .route("/v1/coverage", get(coverage))
        .route(
            "/v1/{*rest}",
            get(|| async { ApiError::not_found("no such API path; see /openapi.json") }),
        )
        .with_state(planner)
}

async fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// An error as JSON: `{"error": message}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    fn bad_request(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
        }
    }

    fn not_found(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::NOT_FOUND,
            message: message.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        #[derive(Serialize)]
        struct Body {
            error: String,
        }
        (
            self.status,
            Json(Body {
                error: self.message,
            }),
        )
            .into_response()
    }
}

type Params = Result<Query<Vec<(String, String)>>, QueryRejection>;

/// The query's parameters, each allowed once and only those in `allowed`.
fn params<'a>(query: &'a Params, allowed: &[&str]) -> Result<Vec<(&'a str, &'a str)>, ApiError> {
    let Ok(Query(pairs)) = query else {
        return Err(ApiError::bad_request(
            "the query string is not valid URL encoding",
        ));
    };
    let mut seen = Vec::new();
    for (k, v) in pairs {
        if !allowed.contains(&k.as_str()) {
            return Err(ApiError::bad_request(format!(
                "unknown parameter `{k}`; this path takes {}",
                allowed.join(", ")
            )));
        }
        if seen.iter().any(|(s, _)| s == k) {
            return Err(ApiError::bad_request(format!(
                "parameter `{k}` given twice"
            )));
        }
        seen.push((k.as_str(), v.as_str()));
    }
    Ok(seen)
}

fn demand_filter(query: &Params) -> Result<DemandFilter, ApiError> {
    let mut f = DemandFilter::default();
    for (k, v) in params(query, &["customer", "sku", "quarter"])? {
        match k {
            "customer" => f.customer = Some(v.to_owned()),
            "sku" => f.sku = Some(v.to_owned()),
            _ => {
                f.quarter = Some(v.parse::<Quarter>().map_err(|_| {
                    ApiError::bad_request(format!(
                        "quarter `{v}` is not of the form YYYY-Qn (n from 1 to 4)"
                    ))
                })?);
            }
        }
    }
    Ok(f)
}

async fn demand(State(p): State<Arc<Planner>>, query: Params) -> Result<Response, ApiError> {
    let filter = demand_filter(&query)?;
    Ok(Json(p.read(|v| v.demand(&filter))).into_response())
}

async fn coverage(State(p): State<Arc<Planner>>, query: Params) -> Result<Response, ApiError> {
    let filter = demand_filter(&query)?;
    Ok(Json(p.read(|v| v.coverage(&filter))).into_response())
}

async fn supply(State(p): State<Arc<Planner>>, query: Params) -> Result<Response, ApiError> {
    params(&query, &[])?;
    let entries: Vec<_> = p.read(|v| v.supply().entries().cloned().collect());
    #[derive(Serialize)]
    struct Row {
        #[serde(flatten)]
        entry: crate::supply::SupplyEntry,
        available: i64,
    }
    let rows: Vec<Row> = entries
        .into_iter()
        .map(|entry| Row {
            available: entry.available(),
            entry,
        })
        .collect();
    Ok(Json(serde_json::json!({ "supply": rows })).into_response())
}

async fn document(
    State(p): State<Arc<Planner>>,
    Path(id): Path<String>,
    query: Params,
) -> Result<Response, ApiError> {
    params(&query, &[])?;
    p.read(|v| v.document(&id).map(|d| Json(d).into_response()))
        .ok_or_else(|| ApiError::not_found(format!("no verdict names document `{id}`")))
}

async fn rejections(State(p): State<Arc<Planner>>, query: Params) -> Result<Response, ApiError> {
    let mut f = RejectionFilter {
        limit: 100,
        ..RejectionFilter::default()
    };
    for (k, v) in params(&query, &["customer", "code", "limit"])? {
        match k {
            "customer" => f.customer = Some(v.to_owned()),
            "code" => {
                f.code = Some(RuleCode::from_symbol(v).ok_or_else(|| {
                    ApiError::bad_request(format!("`{v}` is not a rule code (see docs/rules.md)"))
                })?);
            }
            _ => {
                f.limit = v
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=RECENT_REJECTIONS).contains(n))
                    .ok_or_else(|| {
                        ApiError::bad_request(format!(
                            "limit `{v}` is not a number from 1 to {RECENT_REJECTIONS}"
                        ))
                    })?;
            }
        }
    }
    Ok(Json(p.read(|v| v.rejections(&f))).into_response())
}

/// Server-Sent Events: first `snapshot` (the whole demand matching the
/// filter), then one `demand` event per change of a customer's demand.
async fn demand_stream(
    State(p): State<Arc<Planner>>,
    query: Params,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let filter = demand_filter(&query)?;
    if filter.sku.is_some() || filter.quarter.is_some() {
        return Err(ApiError::bad_request("the stream filters by customer only"));
    }
    let (rx, first) = p.subscribe(|v| snapshot_event(v, &filter));
    let closed = p.closed();
    let state = (Some(first), rx, p, filter);
    let stream = futures::stream::unfold(state, |(first, mut rx, p, filter)| async move {
        if let Some(event) = first {
            return Some((Ok(event), (None, rx, p, filter)));
        }
        loop {
            match rx.recv().await {
                Ok(change) => {
                    if filter
                        .customer
                        .as_ref()
                        .is_some_and(|c| *c != change.customer_id)
                    {
                        continue;
                    }
                    #[derive(Serialize)]
                    struct Out<'a> {
                        #[serde(flatten)]
                        change: &'a crate::view::DemandChange,
                        sent_at: Timestamp,
                    }
                    let event = Event::default()
                        .event("demand")
                        .id(change.change.to_string())
                        .json_data(Out {
                            change: &change,
                            sent_at: Timestamp::now(),
                        })
                        .unwrap_or_else(|_| Event::default().comment("unserialisable change"));
                    return Some((Ok(event), (None, rx, p, filter)));
                }
                // Fell behind: send the whole demand again.
                Err(RecvError::Lagged(_)) => {
                    let event = p.read(|v| snapshot_event(v, &filter));
                    return Some((Ok(event), (None, rx, p, filter)));
                }
                Err(RecvError::Closed) => return None,
            }
        }
    });
    let stream = futures::StreamExt::take_until(stream, closed);
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

fn snapshot_event(v: &crate::view::PlannerView, filter: &DemandFilter) -> Event {
    #[derive(Serialize)]
    struct Snapshot {
        change: u64,
        #[serde(flatten)]
        demand: crate::view::Demand,
    }
    Event::default()
        .event("snapshot")
        .id(v.changes().to_string())
        .json_data(Snapshot {
            change: v.changes(),
            demand: v.demand(filter),
        })
        .unwrap_or_else(|_| Event::default().comment("unserialisable snapshot"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use axum::body::{Body, to_bytes};
    use axum::http::Request;
    use forecast_model::{DemandSnapshot, SnapshotRow, Units};
    use serde_json::Value;
    use tower::ServiceExt as _;

    use super::*;
    use crate::feed::Input;

    /// A planner holding TENCENT's demand: 10 firm units of H20 in 2026-Q3.
    fn planner() -> Arc<Planner> {
        let planner = Planner::default();
        planner.apply(vec![Input::Demand {
            key: b"TENCENT/0".to_vec(),
            snapshot: Some(DemandSnapshot {
                customer_id: "TENCENT".into(),
                sequence: 1,
                as_of: Timestamp::from_millis(0),
                rows: vec![SnapshotRow {
                    sku: "H20".into(),
                    quarter: Quarter::new(2026, 3).unwrap(),
                    units: Units {
                        firm_units: 10,
                        planning_units: 0,
                    },
                }],
            }),
            at: None,
        }]);
        Arc::new(planner)
    }

    /// GETs `uri`: status, content type and body.
    async fn get(uri: &str) -> (StatusCode, String, String) {
        let response = routes(planner())
            .oneshot(Request::get(uri).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let body = to_bytes(response.into_body(), 1 << 20).await.unwrap();
        (
            status,
            content_type,
            String::from_utf8(body.to_vec()).unwrap(),
        )
    }

    /// The `error` of a JSON error body.
    fn error(body: &str) -> String {
        let v: Value = serde_json::from_str(body).unwrap();
        v["error"].as_str().unwrap().to_owned()
    }

    #[tokio::test]
    async fn demand_is_served_as_json_and_filtered() {
        let (status, content_type, body) = get("/v1/demand?customer=TENCENT").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(content_type, "application/json");
        assert!(body.contains("\"firm_units\":10"), "{body}");
        let (_, _, other) = get("/v1/demand?customer=ALIBABA").await;
        assert!(!other.contains("TENCENT"), "{other}");
    }

    #[tokio::test]
    async fn bad_parameters_are_refused_with_a_json_reason() {
        for (uri, reason) in [
            ("/v1/demand?quarter=2026-Q5", "is not of the form YYYY-Qn"),
            ("/v1/demand?color=red", "unknown parameter `color`"),
            ("/v1/demand?sku=A&sku=B", "given twice"),
            (
                "/v1/supply?customer=TENCENT",
                "unknown parameter `customer`",
            ),
        ] {
            let (status, content_type, body) = get(uri).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}");
            assert_eq!(content_type, "application/json", "{uri}");
            assert!(error(&body).contains(reason), "{uri}: {body}");
        }
    }

    #[tokio::test]
    async fn unknown_documents_and_paths_are_json_404s() {
        let (status, _, body) = get("/v1/documents/NO-SUCH-DOC").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert!(!error(&body).is_empty());
        let (status, _, body) = get("/v1/nothing-here").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert!(error(&body).contains("/openapi.json"), "{body}");
    }

    #[tokio::test]
    async fn every_path_the_openapi_document_names_is_served() {
        let (status, content_type, body) = get("/openapi.json").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(content_type, "application/json");
        let doc: Value = serde_json::from_str(&body).unwrap();
        let paths = doc["paths"].as_object().unwrap();
        assert!(paths.contains_key("/v1/demand"));
        for path in paths.keys() {
            // Served by the runtime's routes, merged in by the command.
            if ["/metrics", "/healthz", "/readyz", "/v1/demand/stream"].contains(&path.as_str()) {
                continue;
            }
            let uri = path.replace("{document_id}", "NO-SUCH-DOC");
            let (status, _, body) = get(&uri).await;
            let expected = if uri.contains("NO-SUCH-DOC") {
                StatusCode::NOT_FOUND
            } else {
                StatusCode::OK
            };
            assert_eq!(status, expected, "{uri}: {body}");
        }
    }

    #[tokio::test]
    async fn the_rule_codes_the_openapi_document_allows_are_the_servers() {
        let (_, _, body) = get("/openapi.json").await;
        let doc: Value = serde_json::from_str(&body).unwrap();
        let code = doc["paths"]["/v1/rejections"]["get"]["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "code")
            .unwrap();
        let allowed: Vec<&str> = code["schema"]["enum"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        let server: Vec<&str> = RuleCode::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(allowed, server);
        for c in allowed {
            let (status, _, body) = get(&format!("/v1/rejections?code={c}")).await;
            assert_eq!(status, StatusCode::OK, "{c}: {body}");
        }
    }
}
