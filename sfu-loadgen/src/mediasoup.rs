//! The mediasoup baseline: a participant of `sfu-loadgen/mediasoup/server.mjs` (mediasoup 3.32's
//! routers, WebRtcTransports, producers and consumers behind a small JSON signaling over a
//! WebSocket, documented at the top of that file), with one str0m peer connection per direction
//! ([`crate::peer`], shared with the Janus client).
//!
//! mediasoup is ICE-lite and takes no SDP: [`sdp`] turns its transport parameters and consumers
//! into the SDP str0m negotiates with (str0m is then the ICE-controlling side) and str0m's offer
//! into producer parameters. Video payloads carry VP8 framing ([`crate::payload::vp8_framed`]):
//! mediasoup starts forwarding video to a consumer only at a keyframe it finds in the payload.

mod sdp;

use std::time::Instant;

use futures_util::StreamExt;
use serde_json::{json, Value};
use str0m::change::{SdpAnswer, SdpOffer};
use str0m::Rtc;
use tokio::sync::watch;

use crate::error::{LoadgenError, Result};
use crate::json_ws::{self, Ws};
use crate::peer::{BaselineConn, BaselineJoin, NewPc, Peers, SendOffer, TxTracks};

fn err(what: impl Into<String>) -> LoadgenError {
    LoadgenError::Mediasoup(what.into())
}

/// The server's signaling WebSocket: request/answer by id.
struct Signal {
    ws: Ws,
    next: u64,
}

impl Signal {
    async fn open(url: &str) -> Result<Signal> {
        let (ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .map_err(|e| err(format!("websocket to {url}: {e}")))?;
        Ok(Signal { ws, next: 1 })
    }

    /// Sends `method` with `params` and returns the answer; `ok: false` becomes `Err`.
    async fn call(&mut self, method: &str, mut params: Value) -> Result<Value> {
        let id = self.next;
        self.next += 1;
        params["id"] = json!(id);
        params["method"] = json!(method);
        let v = json_ws::request(
            &mut self.ws,
            &params,
            |v| v.get("id").and_then(Value::as_u64) == Some(id),
            LoadgenError::Mediasoup,
        )
        .await?;
        if v.get("ok").and_then(Value::as_bool) != Some(true) {
            return Err(err(format!("{method}: {}", v["error"])));
        }
        Ok(v)
    }

    /// Hands str0m's DTLS fingerprint (and role) to the transport.
    async fn connect(&mut self, transport: &str, rtc: &mut Rtc, role: &str) -> Result<()> {
        let fp = rtc.direct_api().local_dtls_fingerprint().clone();
        let value: Vec<String> = fp.bytes.iter().map(|b| format!("{b:02X}")).collect();
        let dtls = json!({
            "role": role,
            "fingerprints": [{"algorithm": fp.hash_func, "value": value.join(":")}],
        });
        self.call(
            "connect",
            json!({"transportId": transport, "dtlsParameters": dtls}),
        )
        .await
        .map(drop)
    }
}

/// Joins the room, produces (when asked), waits for the other publishers and consumes all of
/// them.
pub async fn connect(j: BaselineJoin<'_>) -> Result<BaselineConn> {
    let deadline = Instant::now() + j.timeout;
    let left = || deadline.saturating_duration_since(Instant::now());
    let mut s = tokio::time::timeout(j.timeout, Signal::open(j.url))
        .await
        .map_err(|_| LoadgenError::Timeout("the mediasoup websocket".into()))??;
    let joined = s.call("join", json!({"room": j.room})).await?;
    let caps = &joined["rtpCapabilities"];
    let mut peers = Peers::new(j.reader.clone());

    if j.audio || j.video {
        let t = s.call("transport", json!({"direction": "send"})).await?;
        let remote = sdp::Remote::from_answer(&t)?;
        let SendOffer {
            mut pc,
            offer,
            pending,
            audio: amid,
            video: vmid,
        } = NewPc::send_offer(j.bind_ip, j.audio, j.video).await?;
        let producers = sdp::producers(&offer.to_sdp_string(), caps)?;
        let answer = SdpAnswer::from_sdp_string(&sdp::answer(&remote, &producers)?)
            .map_err(|e| err(format!("the answer made for str0m: {e}")))?;
        pc.rtc
            .sdp_api()
            .accept_answer(pending, answer)
            .map_err(|e| err(format!("str0m refused the answer: {e}")))?;
        // str0m offered actpass and the answer says passive: str0m is the DTLS client.
        s.connect(&remote.id, &mut pc.rtc, "client").await?;
        s.call(
            "produce",
            json!({"transportId": remote.id, "producers": producers}),
        )
        .await?;
        let tx = TxTracks::negotiated(&pc.rtc, amid, vmid, true)
            .ok_or_else(|| err("no usable codec negotiated"))?;
        peers
            .start_publisher(pc, tx)
            .wait_connected("mediasoup", left())
            .await?;
    }

    if j.subscribe_to > 0 {
        let t = s.call("transport", json!({"direction": "recv"})).await?;
        let remote = sdp::Remote::from_answer(&t)?;
        let ask = json!({
            "transportId": remote.id,
            "rtpCapabilities": sdp::client_capabilities(caps),
            "publishers": j.subscribe_to,
        });
        let consumed = tokio::time::timeout(left(), s.call("consume", ask))
            .await
            .map_err(|_| {
                LoadgenError::Timeout(format!(
                    "{} publishers in mediasoup room {}",
                    j.subscribe_to, j.room
                ))
            })??;
        let consumers = consumed["consumers"]
            .as_array()
            .filter(|c| !c.is_empty())
            .ok_or_else(|| err(format!("nothing to consume in {consumed}")))?;
        let offer = SdpOffer::from_sdp_string(&sdp::consumer_offer(&remote, consumers)?)
            .map_err(|e| err(format!("the offer made for str0m: {e}")))?;
        let mut pc = NewPc::bind(j.bind_ip).await?;
        let answer = pc
            .rtc
            .sdp_api()
            .accept_offer(offer)
            .map_err(|e| err(format!("str0m refused the consumers' offer: {e}")))?;
        let role = sdp::dtls_role(&answer.to_sdp_string());
        s.connect(&remote.id, &mut pc.rtc, role).await?;
        peers
            .start_subscriber(pc)
            .wait_connected("mediasoup", left())
            .await?;
        // Resumed only now, as mediasoup advises: no media is lost before the connection.
        s.call("resume", json!({})).await?;
    }

    let (stop_tx, mut stop_rx) = watch::channel(false);
    let signal = tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = stop_rx.changed() => break,
                m = s.ws.next() => if !matches!(m, Some(Ok(_))) { return },
            }
        }
        let _ = s.ws.close(None).await;
    });
    Ok(BaselineConn::new(peers, signal, stop_tx))
}

/// Reads the rest of the server's ready line, `ws://IP:PORT/ workers PID[,PID...]`: the
/// WebSocket URL and the worker processes' ids.
pub fn parse_ready(rest: &str) -> Result<(String, Vec<u32>)> {
    let bad = || err(format!("unexpected ready line: {rest:?}"));
    let mut words = rest.split_whitespace();
    let url = words
        .next()
        .filter(|u| u.starts_with("ws://"))
        .ok_or_else(bad)?;
    if words.next() != Some("workers") {
        return Err(bad());
    }
    let pids = words
        .next()
        .ok_or_else(bad)?
        .split(',')
        .map(|p| p.parse().map_err(|_| bad()))
        .collect::<Result<Vec<u32>>>()?;
    Ok((url.to_string(), pids))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ready_line_gives_url_and_worker_pids() {
        let (url, pids) = parse_ready("ws://127.0.0.1:4321/ workers 17,18").unwrap();
        assert_eq!(url, "ws://127.0.0.1:4321/");
        assert_eq!(pids, vec![17, 18]);
        assert!(parse_ready("ws://x/ workers").is_err());
        assert!(parse_ready("http://x/ workers 1").is_err());
    }
}
