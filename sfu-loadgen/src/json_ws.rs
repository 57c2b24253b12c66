//! JSON requests over a baseline server's signaling WebSocket: send one message, read text
//! frames until the answer to it arrives. Janus and the mediasoup baseline match answers
//! differently (a transaction string, a numeric id) and check them differently; the exchange
//! itself is this one.

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::error::{LoadgenError, Result};

/// A client WebSocket to a baseline server.
pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Sends `msg` on `ws` and returns the first JSON message `is_answer` accepts, skipping the
/// others (events, answers to other requests). `err` makes the caller's kind of error.
pub async fn request(
    ws: &mut Ws,
    msg: &Value,
    is_answer: impl Fn(&Value) -> bool,
    err: fn(String) -> LoadgenError,
) -> Result<Value> {
    ws.send(Message::text(msg.to_string()))
        .await
        .map_err(|e| err(format!("websocket send: {e}")))?;
    loop {
        let frame = ws
            .next()
            .await
            .ok_or_else(|| err("the server closed the websocket".into()))?
            .map_err(|e| err(format!("websocket: {e}")))?;
        let Message::Text(text) = frame else {
            continue;
        };
        let v: Value = serde_json::from_str(text.as_str())
            .map_err(|e| err(format!("unparseable message from the server: {e}")))?;
        if is_answer(&v) {
            return Ok(v);
        }
    }
}
