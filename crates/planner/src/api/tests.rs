#![allow(clippy::unwrap_used)]

use axum::body::{Body, to_bytes};
use axum::http::Request;
use serde_json::Value;
use tower::ServiceExt as _;

use super::*;
use axum::http::StatusCode;

fn planner() -> Arc<Planner> {
    Arc::new(crate::testing::sample_planner())
}

/// The live streams a planner serves are bounded: one more is 503 (JSON,
/// naming the flag), and a stream whose client went frees its place.
#[tokio::test]
async fn live_streams_are_bounded_and_a_closed_one_frees_its_place() {
    let planner = Arc::new(Planner::default().with_max_streams(2));
    let app = crate::auth::protect(routes(planner), crate::auth::Access::open());
    let open = || {
        app.clone().oneshot(
            Request::get("/v1/demand/stream")
                .body(Body::empty())
                .unwrap(),
        )
    };
    let first = open().await.unwrap();
    let second = open().await.unwrap();
    assert_eq!(first.status(), StatusCode::OK);
    assert_eq!(second.status(), StatusCode::OK);
    let refused = open().await.unwrap();
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body = to_bytes(refused.into_body(), 1 << 20).await.unwrap();
    let message = error(&String::from_utf8_lossy(&body));
    assert!(message.contains("--max-streams"), "{message}");
    drop(first);
    assert_eq!(open().await.unwrap().status(), StatusCode::OK);
    drop(second);
}

/// GETs `uri` with no tokens configured: status, content type and body.
async fn get(uri: &str) -> (StatusCode, String, String) {
    get_as(uri, crate::auth::Access::open(), None).await
}

/// GETs `uri` from the routes behind `access`, with `token` if any.
async fn get_as(
    uri: &str,
    access: crate::auth::Access,
    token: Option<&str>,
) -> (StatusCode, String, String) {
    let mut request = Request::get(uri);
    if let Some(token) = token {
        request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let router = Router::new()
        .route("/metrics", axum::routing::get(|| async { "metrics\n" }))
        .merge(routes(planner()));
    let response = crate::auth::protect(router, access)
        .oneshot(request.body(Body::empty()).unwrap())
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

/// Tokens for a planner, TENCENT and BYTEDANCE.
fn tokens() -> (crate::auth::Access, [String; 3]) {
    use crate::auth::{Role, Tokens};
    let mut tokens = Tokens::default();
    let mut out = Vec::new();
    for (name, role) in [
        ("alice", Role::Planner),
        ("tencent-erp", Role::Customer("TENCENT".into())),
        ("bytedance-erp", Role::Customer("BYTEDANCE".into())),
    ] {
        let (token, entry) = Tokens::generate(name, &role).unwrap();
        tokens.add(entry).unwrap();
        out.push(token);
    }
    (
        crate::auth::Access::Tokens(Arc::new(tokens)),
        out.try_into().unwrap(),
    )
}

#[tokio::test]
async fn with_tokens_no_route_with_data_answers_without_one() {
    let (access, [planner, ..]) = tokens();
    let planner_view = super::tests::planner;
    for uri in [
        "/v1/demand",
        "/v1/demand/stream",
        "/v1/coverage",
        "/v1/supply",
        "/v1/rejections",
        "/v1/documents/TCT-1",
        "/v1/commits",
        "/v1/nothing",
        "/metrics",
    ] {
        for token in [None, Some("fct_not-a-token"), Some("")] {
            let (status, content_type, body) = get_as(uri, access.clone(), token).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{uri} {token:?}");
            assert_eq!(content_type, "application/json");
            assert!(error(&body).contains("token"), "{body}");
            assert!(!body.contains("TENCENT"), "{body}");
        }
        if uri != "/v1/demand/stream" {
            // (The stream's body never ends: its status is checked below.)
            let (status, _, _) = get_as(uri, access.clone(), Some(&planner)).await;
            assert_ne!(status, StatusCode::UNAUTHORIZED, "{uri}");
            assert_ne!(status, StatusCode::FORBIDDEN, "{uri}");
        }
    }
    let router = crate::auth::protect(routes(planner_view()), access.clone());
    let response = router
        .oneshot(
            Request::get("/v1/demand/stream")
                .header(header::AUTHORIZATION, format!("Bearer {planner}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    // The page, its files, the description and the probes stay public.
    for uri in ["/", "/dashboard.js", "/dashboard.css", "/openapi.json"] {
        assert_eq!(
            get_as(uri, access.clone(), None).await.0,
            StatusCode::OK,
            "{uri}"
        );
    }
}

#[tokio::test]
async fn a_401_says_how_to_authenticate() {
    let (access, _) = tokens();
    let response = crate::auth::protect(routes(planner()), access)
        .oneshot(Request::get("/v1/demand").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        response.headers().get(header::WWW_AUTHENTICATE).unwrap(),
        "Bearer realm=\"forecast\""
    );
}

#[tokio::test]
async fn a_customer_reads_its_own_documents_rejections_and_commit_and_nothing_else() {
    let (access, [planner, tencent, bytedance]) = tokens();
    let as_tencent = |uri: &'static str| get_as(uri, access.clone(), Some(&tencent));
    // Its own document, and not ByteDance's (as unknown as a missing one).
    let (status, _, body) = as_tencent("/v1/documents/TCT-1").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.contains("SKU_UNKNOWN"), "{body}");
    let (status, _, body) = as_tencent("/v1/documents/BYT-1").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(!body.contains("BYTEDANCE"), "{body}");
    assert_eq!(
        body,
        as_tencent("/v1/documents/NO-SUCH")
            .await
            .2
            .replace("NO-SUCH", "BYT-1")
    );
    // Its own rejections only, whatever it asks.
    let (status, _, body) = as_tencent("/v1/rejections").await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("TCT-1") && !body.contains("BYT-1"), "{body}");
    assert_eq!(
        as_tencent("/v1/rejections?customer=TENCENT").await.0,
        StatusCode::OK
    );
    let (status, _, body) = as_tencent("/v1/rejections?customer=BYTEDANCE").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(!body.contains("BYT-1"), "{body}");
    // The supplier's commit to it, and not ByteDance's.
    let (status, _, body) = as_tencent("/v1/commits").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let commits: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(commits["commits"].as_array().unwrap().len(), 1, "{body}");
    assert_eq!(commits["commits"][0]["key"], "TENCENT");
    assert!(!body.contains("BYTEDANCE"), "{body}");
    let (status, _, body) = as_tencent("/v1/commits?customer=BYTEDANCE").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(!body.contains("attestation"), "{body}");
    // A planner reads both.
    let (status, _, body) = get_as("/v1/commits", access.clone(), Some(&planner)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        body.contains("TENCENT") && body.contains("BYTEDANCE"),
        "{body}"
    );
    // No demand, coverage, supply, stream or metrics.
    for uri in [
        "/v1/demand",
        "/v1/demand?customer=TENCENT",
        "/v1/coverage",
        "/v1/supply",
        "/v1/demand/stream",
        "/metrics",
    ] {
        let (status, _, body) = as_tencent(uri).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{uri}");
        assert!(error(&body).contains("for planners"), "{body}");
    }
    // And the other way round.
    let (status, _, body) = get_as("/v1/rejections", access.clone(), Some(&bytedance)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("BYT-1") && !body.contains("TCT-1"), "{body}");
}

/// Without tokens, a request naming another host (a page that rebound its
/// name to this address) is refused with 421 and a JSON reason; the same
/// request to localhost is answered.
#[tokio::test]
async fn without_tokens_a_rebound_host_is_refused() {
    let ask = |host: &'static str| {
        let app = crate::auth::protect(routes(planner()), crate::auth::Access::open());
        app.oneshot(
            Request::get("/v1/demand")
                .header(header::HOST, host)
                .body(Body::empty())
                .unwrap(),
        )
    };
    let refused = ask("evil.example:8080").await.unwrap();
    assert_eq!(refused.status(), StatusCode::MISDIRECTED_REQUEST);
    let body = to_bytes(refused.into_body(), 1 << 20).await.unwrap();
    assert!(error(&String::from_utf8_lossy(&body)).contains("--allowed-host"));
    assert_eq!(
        ask("localhost:8080").await.unwrap().status(),
        StatusCode::OK
    );
}
