//! Live events as Server-Sent Events: `GET /runs/{id}/events` (one run) and
//! `GET /compare/events?runs=a,b,...` (up to 10 runs over one connection, for the compare page:
//! browsers allow only about six connections per host). First the stored events after the
//! client's `Last-Event-ID`, then live ones from the broadcast. The id is the store's `seq`, which
//! grows across all runs, so one number resumes a multiplexed stream too. A client that falls
//! behind the broadcast is resynced from the store, so it never misses an event and never slows
//! the sender down.
//!
//! On the multiplexed stream each event's data is `{"run_id": "...", "payload": {...}}`; the
//! per-run stream sends the payload alone.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::routing::get;
use axum::Router;
use futures::stream::Stream;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::broadcast::Receiver;

use crate::store::{EventRow, Store};
use crate::web::routes::compare::{run_ids, Pairs};
use crate::web::{AppError, AppState};

/// Comments this often keep proxies and browsers from closing an idle stream.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/runs/{id}/events", get(run_events))
        .route("/compare/events", get(compare_events))
}

async fn run_events(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    Query(query): Query<StreamQuery>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, AppError> {
    if state.store.run(&id)?.is_none() {
        return Err(AppError::unknown_run(&id));
    }
    let after = resume_point(&headers, query.after)?;
    event_stream(&state, vec![id], after, false)
}

async fn compare_events(
    State(state): State<Arc<AppState>>,
    Query(pairs): Query<Pairs>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, AppError> {
    // The same run list, limits and messages as the compare page.
    let ids = run_ids(&pairs)?;
    for id in &ids {
        if state.store.run(id)?.is_none() {
            return Err(AppError::unknown_run(id));
        }
    }
    let after = pairs.iter().find(|(k, _)| k == "after").map(|(_, v)| v.clone());
    let after = resume_point(&headers, after)?;
    event_stream(&state, ids, after, true)
}

/// A reconnecting browser sends `Last-Event-ID`; a page opening its first stream says where its
/// server-rendered state ended with `?after=`.
fn resume_point(headers: &HeaderMap, after: Option<String>) -> Result<i64, AppError> {
    let given = headers
        .get("last-event-id")
        .map(|v| v.to_str().unwrap_or("").to_string())
        .or(after);
    match given {
        None => Ok(0),
        Some(text) => text
            .trim()
            .parse::<i64>()
            .map_err(|_| AppError::BadRequest(format!("the last event id must be an event number, not '{text}'"))),
    }
}

fn event_stream(
    state: &AppState,
    run_ids: Vec<String>,
    after: i64,
    tagged: bool,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>> + use<>>, AppError> {
    // Subscribe before reading the backlog: an event sent in between is then both in the backlog
    // and in the channel, and the `seq` check drops the copy, instead of being lost.
    let live = state.events.subscribe();
    // An id beyond anything stored comes from another store (the data folder was replaced or
    // restored from a backup): that client has seen none of these events, so it gets them all,
    // instead of a stream that stays silent until the sequence catches up.
    let after = if after > state.store.last_event_seq()? {
        0
    } else {
        after
    };
    let (backlog, newest) = state.store.events_of_runs_after(&run_ids, after)?;
    let feed = Feed {
        store: state.store.clone(),
        run_ids,
        last_seq: after,
        covered: newest.max(after),
        pending: backlog.into(),
        live,
    };
    let stream = futures::stream::unfold(feed, move |mut feed| async move {
        let row = feed.next().await?;
        Some((Ok(to_sse(&row, tagged)), feed))
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(KEEP_ALIVE)))
}

#[derive(Debug, Default, serde::Deserialize)]
struct StreamQuery {
    after: Option<String>,
}

struct Feed {
    store: Arc<Store>,
    run_ids: Vec<String>,
    /// The last `seq` handed to the client (its next `Last-Event-ID`).
    last_seq: i64,
    /// Every event with a `seq` up to this one is in `pending`, delivered, or of another run.
    /// The broadcast usually brings `covered + 1` next; anything else means an event is still on
    /// its way from another writer or was never broadcast, and the store (where it is already
    /// committed) is read instead, so ids stay increasing with no gaps.
    covered: i64,
    pending: VecDeque<EventRow>,
    live: Receiver<EventRow>,
}

impl Feed {
    /// The next event of these runs, or `None` when the sender is gone (server shutting down).
    async fn next(&mut self) -> Option<EventRow> {
        loop {
            if let Some(row) = self.pending.pop_front() {
                if row.seq > self.last_seq {
                    self.last_seq = row.seq;
                    return Some(row);
                }
                continue;
            }
            match self.live.recv().await {
                Ok(row) if row.seq <= self.covered => {}
                Ok(row) if row.seq == self.covered + 1 => {
                    self.covered = row.seq;
                    if self.run_ids.contains(&row.run_id) {
                        self.pending.push_back(row);
                    }
                }
                Ok(row) => {
                    tracing::debug!(
                        seq = row.seq,
                        covered = self.covered,
                        "event out of order; reading the store"
                    );
                    self.resync().await?;
                }
                Err(RecvError::Lagged(missed)) => {
                    tracing::debug!(runs = ?self.run_ids, missed, "event stream fell behind; resyncing from the store");
                    self.resync().await?;
                }
                Err(RecvError::Closed) => return None,
            }
        }
    }

    /// Queues this feed's stored events after `covered`; `None` when the store cannot be read.
    async fn resync(&mut self) -> Option<()> {
        let store = self.store.clone();
        let (run_ids, after) = (self.run_ids.clone(), self.covered);
        let reread = tokio::task::spawn_blocking(move || store.events_of_runs_after(&run_ids, after)).await;
        match reread {
            Ok(Ok((rows, newest))) => {
                self.covered = newest.max(rows.last().map_or(after, |r| r.seq));
                self.pending.extend(rows);
                Some(())
            }
            Ok(Err(e)) => {
                tracing::error!(error = %e, "cannot resync an event stream; closing it");
                None
            }
            Err(e) => {
                tracing::error!(error = %e, "event resync task failed; closing the stream");
                None
            }
        }
    }
}

fn to_sse(row: &EventRow, tagged: bool) -> Event {
    let data = if tagged {
        serde_json::json!({"run_id": row.run_id, "payload": row.payload}).to_string()
    } else {
        row.payload.to_string()
    };
    Event::default()
        .id(row.seq.to_string())
        .event(sse_event_name(&row.kind))
        .data(data)
}

/// Event kinds become SSE event names; anything that could break the framing becomes `message`.
fn sse_event_name(kind: &str) -> &str {
    if !kind.is_empty() && kind.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
        kind
    } else {
        "message"
    }
}
