//! The planner's HTTP API, its live stream and the dashboard. Every route is
//! described in `assets/openapi.json`, served at `/openapi.json`.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Extension, Path, Query, State};
use axum::http::header;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use forecast_model::{Quarter, RuleCode, Timestamp};
use futures::Stream;
use serde::Serialize;
use tokio::sync::broadcast::error::RecvError;

use crate::auth::Principal;
pub use crate::error::ApiError;
use crate::feed::Planner;
use crate::view::{DemandFilter, Found, PlannerView, RECENT_REJECTIONS, RejectionFilter};

/// The routes of the API and the dashboard. Serve them inside
/// [`crate::auth::protect`]: every data route needs the caller's
/// [`Principal`] it puts in the request, and answers 500 without it (fails
/// closed).
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
        .route("/v1/exposure", get(exposure))
        .route("/v1/commits", get(commits))
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

/// Refuses a customer's token on a planner's route.
fn planner_only(caller: &Principal) -> Result<(), ApiError> {
    match caller.customer() {
        None => Ok(()),
        Some(_) => Err(ApiError::forbidden()),
    }
}

/// A planner's route that answers `view(filter)` for the demand filters
/// of the query.
fn filtered<T: Serialize>(
    p: &Planner,
    caller: &Principal,
    query: &Params,
    view: impl FnOnce(&PlannerView, &DemandFilter) -> T,
) -> Result<Response, ApiError> {
    planner_only(caller)?;
    let filter = demand_filter(query)?;
    Ok(Json(p.read(|v| view(v, &filter))).into_response())
}

async fn demand(
    State(p): State<Arc<Planner>>,
    Extension(caller): Extension<Principal>,
    query: Params,
) -> Result<Response, ApiError> {
    filtered(&p, &caller, &query, PlannerView::demand)
}

async fn coverage(
    State(p): State<Arc<Planner>>,
    Extension(caller): Extension<Principal>,
    query: Params,
) -> Result<Response, ApiError> {
    filtered(&p, &caller, &query, PlannerView::coverage)
}

async fn exposure(
    State(p): State<Arc<Planner>>,
    Extension(caller): Extension<Principal>,
    query: Params,
) -> Result<Response, ApiError> {
    filtered(&p, &caller, &query, PlannerView::exposure)
}

async fn supply(
    State(p): State<Arc<Planner>>,
    Extension(caller): Extension<Principal>,
    query: Params,
) -> Result<Response, ApiError> {
    planner_only(&caller)?;
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

/// Whose data a route of one customer's answers: the `customer` the query
/// names (a customer token may name only its own: 403), else the token's
/// own customer (`None` for a planner naming none).
fn whose(caller: &Principal, query: &Params) -> Result<Option<String>, ApiError> {
    let mut customer = caller.customer().map(str::to_owned);
    for (_, v) in params(query, &["customer"])? {
        if caller.customer().is_some_and(|own| own != v) {
            return Err(ApiError::forbidden());
        }
        customer = Some(v.to_owned());
    }
    Ok(customer)
}

/// The supplier's commits, as signed: a customer reads its own only; a
/// planner every customer's, or one's with `?customer=`.
async fn commits(
    State(p): State<Arc<Planner>>,
    Extension(caller): Extension<Principal>,
    query: Params,
) -> Result<Response, ApiError> {
    let customer = whose(&caller, &query)?;
    Ok(p.read(|v| {
        #[derive(Serialize)]
        struct List<'a> {
            commits: Vec<&'a forecast_model::commit::SignedCommit>,
        }
        Json(List {
            commits: v.commits().signed(customer.as_deref()),
        })
        .into_response()
    }))
}

async fn document(
    State(p): State<Arc<Planner>>,
    Extension(caller): Extension<Principal>,
    Path(id): Path<String>,
    query: Params,
) -> Result<Response, ApiError> {
    // Document ids are each customer's own: a customer reads its own, a
    // planner names the customer (or gets the one customer holding the id).
    let customer = whose(&caller, &query)?;
    let unknown = || ApiError::not_found(format!("no verdict names document `{id}`"));
    p.read(|v| match &customer {
        Some(c) => v
            .verdicts()
            .document(Some(c), &id)
            .map(|d| Json(d).into_response())
            .ok_or_else(unknown),
        None => match v.verdicts().find(&id) {
            Found::None => Err(unknown()),
            Found::One(d) => Ok(Json(d).into_response()),
            Found::Several(owners) => {
                let names: Vec<&str> = owners.iter().map(|o| o.as_deref().unwrap_or("(nobody)")).collect();
                Err(ApiError::bad_request(format!(
                    "document id `{id}` is held by several customers ({}): name one with ?customer=",
                    names.join(", ")
                )))
            }
        },
    })
}

async fn rejections(
    State(p): State<Arc<Planner>>,
    Extension(caller): Extension<Principal>,
    query: Params,
) -> Result<Response, ApiError> {
    let mut f = RejectionFilter {
        limit: 100,
        // A customer sees its own rejections only.
        customer: caller.customer().map(str::to_owned),
        ..RejectionFilter::default()
    };
    for (k, v) in params(&query, &["customer", "code", "limit"])? {
        match k {
            "customer" => {
                if caller.customer().is_some_and(|own| own != v) {
                    return Err(ApiError::forbidden());
                }
                f.customer = Some(v.to_owned());
            }
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
/// filter), then one `demand` event per change of a customer's demand, and
/// a `licences` event (`customer_id`, `null` for a licence decision) when
/// demand by licence status may have changed: `/v1/exposure` has it; a
/// `commit` event (`customer_id`) when the supplier's commit to a customer
/// changed: `/v1/commits` has it.
async fn demand_stream(
    State(p): State<Arc<Planner>>,
    Extension(caller): Extension<Principal>,
    query: Params,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    planner_only(&caller)?;
    let filter = demand_filter(&query)?;
    if filter.sku.is_some() || filter.quarter.is_some() {
        return Err(ApiError::bad_request("the stream filters by customer only"));
    }
    let permit = p.stream_permit().map_err(|max| {
        ApiError::unavailable(format!(
            "{max} live streams are open, as many as this planner serves (--max-streams); try again later"
        ))
    })?;
    let (rx, first) = p.subscribe(|v| snapshot_event(v, &filter));
    let closed = p.closed();
    // The permit lives in the stream's state: freed when the client goes.
    let state = (Some(first), rx, p, filter, permit);
    let stream = futures::stream::unfold(state, |(first, mut rx, p, filter, permit)| async move {
        if let Some(event) = first {
            return Some((Ok(event), (None, rx, p, filter, permit)));
        }
        loop {
            match rx.recv().await {
                Ok(live) => {
                    // Whose change it is, and the demand change itself (the
                    // others' figures are in /v1/exposure or /v1/commits: no
                    // data in their events but whose it is).
                    use crate::feed::LiveChange;
                    let (name, customer_id, demand) = match &*live {
                        LiveChange::Demand(change) => {
                            ("demand", Some(&change.customer_id), Some(change))
                        }
                        LiveChange::Licences { customer_id } => {
                            ("licences", customer_id.as_ref(), None)
                        }
                        LiveChange::Commit { customer_id } => ("commit", Some(customer_id), None),
                    };
                    if let (Some(want), Some(got)) = (&filter.customer, customer_id)
                        && want != got
                    {
                        continue;
                    }
                    let Some(change) = demand else {
                        let event = Event::default()
                            .event(name)
                            .json_data(serde_json::json!({
                                "customer_id": customer_id,
                                "sent_at": Timestamp::now(),
                            }))
                            .unwrap_or_else(|_| Event::default().comment("unserialisable change"));
                        return Some((Ok(event), (None, rx, p, filter, permit)));
                    };
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
                            change,
                            sent_at: Timestamp::now(),
                        })
                        .unwrap_or_else(|_| Event::default().comment("unserialisable change"));
                    return Some((Ok(event), (None, rx, p, filter, permit)));
                }
                // Fell behind: send the whole demand again.
                Err(RecvError::Lagged(_)) => {
                    let event = p.read(|v| snapshot_event(v, &filter));
                    return Some((Ok(event), (None, rx, p, filter, permit)));
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
mod tests;
