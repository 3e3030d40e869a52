//! Real-time subscriptions on REST URLs: a WebSocket upgrade or `Accept:
//! text/event-stream` on `/T/id` or `/T/` subscribes to that record or table. Events
//! show what the subscriber's role may read as each commit is delivered; a subscriber
//! that may no longer read is told why (`event: error`, close code 1008) and cut off.

mod subscription;

use std::convert::Infallible;
use std::sync::Mutex;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, Sse};
use axum::response::{IntoResponse, Response};
use tokio_stream::StreamExt;

use subscription::Viewer;
pub(crate) use subscription::{Filter, Start};

use shoal_auth::User;
use shoal_store::SYSTEM_DATABASE;

use crate::AppState;
use crate::error::ApiError;
use crate::rest::Target;

/// Longest a blocked socket write may take before the connection is dropped.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// WebSocket close code for "policy violation", used for cut-off slow consumers.
const CLOSE_POLICY: u16 = 1008;

/// Where to start, from `?startTime=<ms>` or an SSE `Last-Event-ID`.
pub(crate) fn start(query: Option<&str>, headers: &HeaderMap) -> Result<Start, ApiError> {
    if let Some(id) = headers.get("last-event-id").and_then(|v| v.to_str().ok()) {
        let bad = || ApiError::bad_request("Last-Event-ID must be an event id");
        let (seq, index) = match id.trim().split_once('.') {
            Some((seq, index)) => (seq, Some(index.parse().map_err(|_| bad())?)),
            None => (id.trim(), None),
        };
        let seq = seq.parse().map_err(|_| bad())?;
        return Ok(Start::After { seq, index });
    }
    for pair in query.unwrap_or_default().split('&') {
        if let Some(value) = pair.strip_prefix("startTime=") {
            let ms = value.parse().map_err(|_| {
                ApiError::bad_request("startTime must be milliseconds since the epoch")
            })?;
            return Ok(Start::Time(ms));
        }
    }
    Ok(Start::Now)
}

fn subscribe(
    state: &AppState,
    target: &Target,
    start: Start,
    user: &User,
) -> Result<subscription::Subscriber, ApiError> {
    let viewer = Viewer {
        auth: state.auth.clone(),
        username: user.username.clone(),
        database: target.db.name().to_owned(),
        system: state.store.database(SYSTEM_DATABASE)?.watch_commits(),
        asked: Mutex::new(None),
    };
    let limits = subscription::Limits {
        max_lag: state.rest.subscription_max_lag,
        max_buffer_bytes: state.rest.subscription_max_buffer_bytes,
    };
    Ok(subscription::subscribe(
        target.db.clone(),
        target.filter()?,
        viewer,
        start,
        limits,
        state.store.workers(),
    ))
}

/// Server-Sent Events: `event: put|patch|delete`, `data: <json>`, `id: <sequence>`.
pub(crate) fn sse(
    state: &AppState,
    target: &Target,
    start: Start,
    user: &User,
) -> Result<Response, ApiError> {
    let stream = subscribe(state, target, start, user)?.map(|item| {
        Ok::<_, Infallible>(match item {
            Ok(event) => SseEvent::default()
                .event(event.kind)
                .id(event.sse_id())
                .data(event.data().to_string()),
            Err(ended) => SseEvent::default().event("error").data(ended.0),
        })
    });
    Ok(Sse::new(stream)
        .keep_alive(axum::response::sse::KeepAlive::default())
        .into_response())
}

/// WebSocket: one JSON message per change, `{type, id, value, timestamp}`. The upgraded
/// connection is served by worker `server/websocket/<database>/<table>`, so that shutdown
/// waits for it to send its close frame.
pub(crate) fn websocket(
    state: &AppState,
    target: &Target,
    start: Start,
    user: &User,
    upgrade: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    let rx = subscribe(state, target, start, user)?;
    let workers = state.store.workers().clone();
    let name = format!(
        "server/websocket/{}/{}",
        target.db.name(),
        target.table.name
    );
    Ok(upgrade.on_upgrade(move |socket| {
        let pump = workers.spawn(name, move |_| pump(socket, rx));
        async move { pump.finished().await }
    }))
}

async fn pump(mut socket: WebSocket, mut rx: subscription::Subscriber) {
    loop {
        tokio::select! {
            item = rx.recv() => {
                let message = match item {
                    Some(Ok(event)) => Message::Text(event.to_message().to_string().into()),
                    Some(Err(ended)) => Message::Close(Some(CloseFrame {
                        code: CLOSE_POLICY,
                        reason: ended.0.into(),
                    })),
                    None => return,
                };
                let closing = matches!(message, Message::Close(_));
                match tokio::time::timeout(WRITE_TIMEOUT, socket.send(message)).await {
                    Ok(Ok(())) if !closing => {}
                    _ => return,
                }
            }
            incoming = socket.recv() => match incoming {
                // Clients may ping; axum answers pings itself. Anything else is ignored.
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return,
                Some(Ok(_)) => {}
            },
        }
    }
}
