//! `GET /runs/{id}/events`: a run's events as Server-Sent Events. First the stored events after
//! the client's `Last-Event-ID` (the store's `seq`), then live ones from the broadcast. A client
//! that falls behind the broadcast is resynced from the store, so it never misses an event and
//! never slows the sender down.

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
use crate::web::{AppError, AppState};

/// Comments this often keep proxies and browsers from closing an idle stream.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

pub fn router() -> Router<Arc<AppState>> {
    Router::new().route("/runs/{id}/events", get(run_events))
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
    // A reconnecting browser sends Last-Event-ID; a page opening its first stream says where its
    // server-rendered log ended with `?after=`.
    let given = headers
        .get("last-event-id")
        .map(|v| v.to_str().unwrap_or("").to_string())
        .or(query.after);
    let after = match given {
        None => 0,
        Some(text) => text
            .trim()
            .parse::<i64>()
            .map_err(|_| AppError::BadRequest(format!("the last event id must be an event number, not '{text}'")))?,
    };
    // Subscribe before reading the backlog: an event sent in between is then both in the backlog
    // and in the channel, and the `seq` check drops the copy, instead of being lost.
    let live = state.events.subscribe();
    let backlog = state.store.events_after(&id, after)?;
    let feed = Feed {
        store: state.store.clone(),
        run_id: id,
        last_seq: after,
        pending: backlog.into(),
        live,
    };
    let stream = futures::stream::unfold(feed, |mut feed| async move {
        let row = feed.next().await?;
        Some((Ok(to_sse(&row)), feed))
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(KEEP_ALIVE)))
}

#[derive(Debug, Default, serde::Deserialize)]
struct StreamQuery {
    after: Option<String>,
}

struct Feed {
    store: Arc<Store>,
    run_id: String,
    last_seq: i64,
    pending: VecDeque<EventRow>,
    live: Receiver<EventRow>,
}

impl Feed {
    /// The next event of this run, or `None` when the sender is gone (server shutting down).
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
                Ok(row) if row.run_id == self.run_id => self.pending.push_back(row),
                Ok(_) => {}
                Err(RecvError::Lagged(missed)) => {
                    tracing::debug!(run = %self.run_id, missed, "event stream fell behind; resyncing from the store");
                    let store = self.store.clone();
                    let (run_id, after) = (self.run_id.clone(), self.last_seq);
                    let reread = tokio::task::spawn_blocking(move || store.events_after(&run_id, after)).await;
                    match reread {
                        Ok(Ok(rows)) => self.pending.extend(rows),
                        Ok(Err(e)) => {
                            tracing::error!(error = %e, "cannot resync an event stream; closing it");
                            return None;
                        }
                        Err(e) => {
                            tracing::error!(error = %e, "event resync task failed; closing the stream");
                            return None;
                        }
                    }
                }
                Err(RecvError::Closed) => return None,
            }
        }
    }
}

fn to_sse(row: &EventRow) -> Event {
    Event::default()
        .id(row.seq.to_string())
        .event(sse_event_name(&row.kind))
        .data(row.payload.to_string())
}

/// Event kinds become SSE event names; anything that could break the framing becomes `message`.
fn sse_event_name(kind: &str) -> &str {
    if !kind.is_empty() && kind.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
        kind
    } else {
        "message"
    }
}
