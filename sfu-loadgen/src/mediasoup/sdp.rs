//! mediasoup speaks no SDP, str0m negotiates only with SDP: this turns mediasoup's ICE, DTLS and
//! RTP parameters into the SDP str0m needs, and str0m's offer into the RTP parameters of
//! mediasoup's producers (what mediasoup-client's handlers do for a browser).
//!
//! Sending: str0m offers its send-only m-lines; [`producers`] keeps, per m-line, its Opus or VP8
//! codec, its SSRC and the header extensions the router knows, and [`answer`] writes mediasoup's
//! answer from the same parameters (ICE-lite, DTLS server). Receiving: [`consumer_offer`] writes
//! an offer with one send-only m-line per consumer, which str0m answers.

use std::fmt::Write;

use serde_json::{json, Map, Value};

use crate::error::{LoadgenError, Result};

fn err(what: impl Into<String>) -> LoadgenError {
    LoadgenError::Mediasoup(what.into())
}

/// The codecs the generator sends (and str0m enables): mediasoup's MIME types.
const CODECS: [&str; 2] = ["audio/opus", "video/VP8"];

/// Header extensions str0m understands; the others of the router are left out of the SDP.
const EXTENSIONS: [&str; 5] = [
    "urn:ietf:params:rtp-hdrext:sdes:mid",
    "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time",
    "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01",
    "urn:ietf:params:rtp-hdrext:ssrc-audio-level",
    "urn:3gpp:video-orientation",
];

/// A mediasoup WebRtcTransport as the `transport` answer describes it.
#[derive(Debug)]
pub(super) struct Remote {
    /// Its id, for `connect`, `produce` and `consume`.
    pub(super) id: String,
    ufrag: String,
    pwd: String,
    /// `sha-256 AB:CD:...`.
    fingerprint: String,
    /// `a=candidate:` values.
    candidates: Vec<String>,
}

impl Remote {
    /// Reads the `transport` answer: `{transportId, iceParameters, iceCandidates, dtlsParameters}`.
    pub(super) fn from_answer(v: &Value) -> Result<Remote> {
        let s = |ptr: &str| {
            v.pointer(ptr)
                .and_then(Value::as_str)
                .map(str::to_string)
                .ok_or_else(|| err(format!("no {ptr} in the transport answer")))
        };
        let fingerprint = v
            .pointer("/dtlsParameters/fingerprints")
            .and_then(Value::as_array)
            .and_then(|fps| {
                fps.iter()
                    .find(|f| f["algorithm"] == "sha-256")
                    .and_then(|f| f["value"].as_str())
            })
            .ok_or_else(|| err("no sha-256 fingerprint in the transport answer"))?;
        let candidates = v
            .get("iceCandidates")
            .and_then(Value::as_array)
            .map(|cs| {
                cs.iter()
                    .filter_map(|c| {
                        let addr = c.get("address").or_else(|| c.get("ip"))?.as_str()?;
                        Some(format!(
                            "{} 1 {} {} {addr} {} typ {}",
                            c["foundation"].as_str()?,
                            c["protocol"].as_str()?,
                            c["priority"].as_u64()?,
                            c["port"].as_u64()?,
                            c["type"].as_str()?,
                        ))
                    })
                    .collect::<Vec<_>>()
            })
            .filter(|cs| !cs.is_empty())
            .ok_or_else(|| err("no usable ICE candidate in the transport answer"))?;
        Ok(Remote {
            id: s("/transportId")?,
            ufrag: s("/iceParameters/usernameFragment")?,
            pwd: s("/iceParameters/password")?,
            fingerprint: format!("sha-256 {fingerprint}"),
            candidates,
        })
    }

    /// The session part, then one m-section per `(kind, rtpParameters)`.
    fn sdp(&self, sections: &[(&str, &Value)], direction: &str, setup: &str) -> Result<String> {
        let mut mids = Vec::new();
        for (_, p) in sections {
            mids.push(
                p["mid"]
                    .as_str()
                    .ok_or_else(|| err("an m-line without mid"))?,
            );
        }
        let mut sdp = format!(
            "v=0\r\no=mediasoup 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\na=ice-lite\r\na=group:BUNDLE {}\r\na=msid-semantic: WMS *\r\n",
            mids.join(" ")
        );
        for (kind, p) in sections {
            self.m_section(&mut sdp, kind, p, direction, setup)?;
        }
        Ok(sdp)
    }

    fn m_section(
        &self,
        sdp: &mut String,
        kind: &str,
        p: &Value,
        direction: &str,
        setup: &str,
    ) -> Result<()> {
        let codecs = p["codecs"]
            .as_array()
            .filter(|c| !c.is_empty())
            .ok_or_else(|| err("rtpParameters without codecs"))?;
        let pts: Vec<u64> = codecs
            .iter()
            .map(|c| c["payloadType"].as_u64())
            .collect::<Option<_>>()
            .ok_or_else(|| err("a codec without payload type"))?;
        let pts_text: Vec<String> = pts.iter().map(u64::to_string).collect();
        // Infallible: writing to a String.
        let _ = write!(
            sdp,
            "m={kind} 7 UDP/TLS/RTP/SAVPF {}\r\nc=IN IP4 127.0.0.1\r\na=mid:{}\r\na={direction}\r\n\
             a=ice-ufrag:{}\r\na=ice-pwd:{}\r\na=fingerprint:{}\r\na=setup:{setup}\r\na=rtcp-mux\r\na=rtcp-rsize\r\n",
            pts_text.join(" "),
            p["mid"].as_str().unwrap_or_default(),
            self.ufrag,
            self.pwd,
            self.fingerprint,
        );
        for (c, pt) in codecs.iter().zip(&pts) {
            let mime = c["mimeType"].as_str().unwrap_or_default();
            let name = mime.split_once('/').map_or(mime, |(_, n)| n);
            let clock = c["clockRate"].as_u64().unwrap_or(90_000);
            let _ = match c["channels"].as_u64() {
                Some(ch) if ch > 1 => write!(sdp, "a=rtpmap:{pt} {name}/{clock}/{ch}\r\n"),
                _ => write!(sdp, "a=rtpmap:{pt} {name}/{clock}\r\n"),
            };
            if let Some(params) = c["parameters"].as_object().filter(|m| !m.is_empty()) {
                let fmtp: Vec<String> = params
                    .iter()
                    .map(|(k, v)| match v {
                        Value::String(s) => format!("{k}={s}"),
                        v => format!("{k}={v}"),
                    })
                    .collect();
                let _ = write!(sdp, "a=fmtp:{pt} {}\r\n", fmtp.join(";"));
            }
            for fb in c["rtcpFeedback"].as_array().into_iter().flatten() {
                let ty = fb["type"].as_str().unwrap_or_default();
                let _ = match fb["parameter"].as_str().filter(|s| !s.is_empty()) {
                    Some(param) => write!(sdp, "a=rtcp-fb:{pt} {ty} {param}\r\n"),
                    None => write!(sdp, "a=rtcp-fb:{pt} {ty}\r\n"),
                };
            }
        }
        for e in p["headerExtensions"].as_array().into_iter().flatten() {
            if let (Some(id), Some(uri)) = (e["id"].as_u64(), e["uri"].as_str()) {
                let _ = write!(sdp, "a=extmap:{id} {uri}\r\n");
            }
        }
        if direction == "sendonly" {
            let cname = p.pointer("/rtcp/cname").and_then(Value::as_str);
            let ssrcs = p["encodings"].as_array().into_iter().flatten();
            for ssrc in ssrcs.filter_map(|e| e["ssrc"].as_u64()) {
                let _ = write!(
                    sdp,
                    "a=ssrc:{ssrc} cname:{}\r\n",
                    cname.unwrap_or("mediasoup")
                );
            }
        }
        for c in &self.candidates {
            let _ = write!(sdp, "a=candidate:{c}\r\n");
        }
        sdp.push_str("a=end-of-candidates\r\n");
        Ok(())
    }
}

/// One m-section of str0m's offer, as far as a producer needs it.
#[derive(Debug, Default)]
struct Section {
    kind: String,
    mid: String,
    /// `a=rtpmap`: payload type, encoding name, clock rate, channels.
    rtpmap: Vec<(u64, String, u64, Option<u64>)>,
    fmtp: Vec<(u64, String)>,
    fb: Vec<(u64, String)>,
    ext: Vec<(u64, String)>,
    ssrc: Option<u64>,
    cname: Option<String>,
}

fn sections(sdp: &str) -> Vec<Section> {
    let mut out: Vec<Section> = Vec::new();
    for line in sdp.lines() {
        if let Some(m) = line.strip_prefix("m=") {
            out.push(Section {
                kind: m.split(' ').next().unwrap_or_default().to_string(),
                ..Section::default()
            });
            continue;
        }
        let Some(s) = out.last_mut() else { continue };
        let Some(attr) = line.strip_prefix("a=") else {
            continue;
        };
        let (name, value) = attr.split_once(':').unwrap_or((attr, ""));
        let (first, rest) = value.split_once(' ').unwrap_or((value, ""));
        let pt = first.parse::<u64>().ok();
        match (name, pt) {
            ("mid", _) => s.mid = value.to_string(),
            ("rtpmap", Some(pt)) => {
                let mut parts = rest.split('/');
                let name = parts.next().unwrap_or_default().to_string();
                let clock = parts.next().and_then(|c| c.parse().ok()).unwrap_or(90_000);
                let channels = parts.next().and_then(|c| c.parse().ok());
                s.rtpmap.push((pt, name, clock, channels));
            }
            ("fmtp", Some(pt)) => s.fmtp.push((pt, rest.to_string())),
            ("rtcp-fb", Some(pt)) => s.fb.push((pt, rest.to_string())),
            ("extmap", _) => {
                // `a=extmap:ID[/direction] URI`
                let id = first.split('/').next().and_then(|i| i.parse().ok());
                if let Some(id) = id {
                    let uri = rest.split(' ').next().unwrap_or_default().to_string();
                    s.ext.push((id, uri));
                }
            }
            ("ssrc", Some(ssrc)) => {
                // The first SSRC is the media one (an RTX one follows in its FID group).
                s.ssrc.get_or_insert(ssrc);
                if let Some(cname) = rest.strip_prefix("cname:") {
                    s.cname.get_or_insert_with(|| cname.to_string());
                }
            }
            _ => {}
        }
    }
    out
}

/// fmtp `a=b;c=d` as mediasoup's codec parameters (numbers where they are numbers).
fn fmtp_parameters(fmtp: &str) -> Map<String, Value> {
    fmtp.split(';')
        .filter_map(|kv| kv.trim().split_once('='))
        .map(|(k, v)| {
            let v = v
                .parse::<u64>()
                .map(Value::from)
                .unwrap_or_else(|_| Value::from(v));
            (k.to_string(), v)
        })
        .collect()
}

/// The `produce` entries (`{kind, rtpParameters}`) for str0m's offer `offer_sdp`: per m-line its
/// Opus or VP8 codec (no RTX), its first SSRC and the header extensions the router supports for
/// that kind.
pub(super) fn producers(offer_sdp: &str, router_caps: &Value) -> Result<Vec<Value>> {
    let router_ext = router_caps["headerExtensions"].as_array();
    sections(offer_sdp)
        .into_iter()
        .map(|s| {
            let (pt, name, clock, channels) = s
                .rtpmap
                .iter()
                .find(|(_, name, ..)| {
                    CODECS
                        .iter()
                        .any(|m| m.eq_ignore_ascii_case(&format!("{}/{name}", s.kind)))
                })
                .ok_or_else(|| err(format!("no opus or VP8 in str0m's {} m-line", s.kind)))?;
            let fb: Vec<Value> = s
                .fb
                .iter()
                .filter(|(p, _)| p == pt)
                .map(|(_, f)| match f.split_once(' ') {
                    Some((ty, param)) => json!({"type": ty, "parameter": param}),
                    None => json!({"type": f}),
                })
                .collect();
            let params = s
                .fmtp
                .iter()
                .find(|(p, _)| p == pt)
                .map(|(_, f)| fmtp_parameters(f))
                .unwrap_or_default();
            let mut codec = json!({
                "mimeType": format!("{}/{name}", s.kind),
                "payloadType": pt,
                "clockRate": clock,
                "parameters": params,
                "rtcpFeedback": fb,
            });
            if let Some(ch) = channels {
                codec["channels"] = json!(ch);
            }
            let ext: Vec<Value> = s
                .ext
                .iter()
                .filter(|(_, uri)| {
                    router_ext.into_iter().flatten().any(|e| {
                        e["uri"] == uri.as_str()
                            && e["kind"] == s.kind.as_str()
                            && e["direction"] != "sendonly"
                    })
                })
                .map(|(id, uri)| json!({"uri": uri, "id": id}))
                .collect();
            let ssrc = s
                .ssrc
                .ok_or_else(|| err(format!("no SSRC in str0m's {} m-line", s.kind)))?;
            Ok(json!({
                "kind": s.kind,
                "rtpParameters": {
                    "mid": s.mid,
                    "codecs": [codec],
                    "headerExtensions": ext,
                    "encodings": [{"ssrc": ssrc}],
                    "rtcp": {"cname": s.cname.unwrap_or_else(|| "edge-sfu-loadgen".into()), "reducedSize": true},
                },
            }))
        })
        .collect()
}

/// mediasoup's answer to str0m's offer, for the `producers` it was given.
pub(super) fn answer(remote: &Remote, producers: &[Value]) -> Result<String> {
    let sections: Vec<(&str, &Value)> = producers
        .iter()
        .map(|p| (p["kind"].as_str().unwrap_or_default(), &p["rtpParameters"]))
        .collect();
    remote.sdp(&sections, "recvonly", "passive")
}

/// An offer of every consumer (`{kind, rtpParameters}` of the `consume` answer) to str0m.
pub(super) fn consumer_offer(remote: &Remote, consumers: &[Value]) -> Result<String> {
    let sections: Vec<(&str, &Value)> = consumers
        .iter()
        .map(|c| (c["kind"].as_str().unwrap_or_default(), &c["rtpParameters"]))
        .collect();
    remote.sdp(&sections, "sendonly", "actpass")
}

/// What the receiving side can take, for `consume`: the router's Opus and VP8 (no RTX) and the
/// header extensions str0m understands, with the router's own preferred ids (mediasoup matches
/// on them).
pub(super) fn client_capabilities(router_caps: &Value) -> Value {
    let codecs: Vec<&Value> = router_caps["codecs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| {
            c["mimeType"]
                .as_str()
                .is_some_and(|m| CODECS.iter().any(|k| k.eq_ignore_ascii_case(m)))
        })
        .collect();
    let ext: Vec<&Value> = router_caps["headerExtensions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["uri"].as_str().is_some_and(|u| EXTENSIONS.contains(&u)))
        .collect();
    json!({"codecs": codecs, "headerExtensions": ext})
}

/// The DTLS role str0m took in its `answer` (`a=setup:active`: it is the client), as mediasoup's
/// `connect` wants it.
pub(super) fn dtls_role(answer: &str) -> &'static str {
    if answer.lines().any(|l| l.trim() == "a=setup:active") {
        "client"
    } else {
        "server"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use str0m::change::{SdpAnswer, SdpOffer};
    use str0m::media::{Direction, MediaKind};

    /// Shapes of mediasoup 3.32's answers, trimmed to what the client reads.
    fn transport() -> Value {
        json!({
            "transportId": "t1",
            "iceParameters": {"usernameFragment": "abcdefgh12345678", "password": "0123456789abcdef0123456789abcdef", "iceLite": true},
            "iceCandidates": [{"foundation": "udpcandidate", "priority": 1_076_302_079u64, "ip": "127.0.0.1", "address": "127.0.0.1", "protocol": "udp", "port": 40_000, "type": "host"}],
            "dtlsParameters": {"role": "auto", "fingerprints": [
                {"algorithm": "sha-1", "value": "AA:BB"},
                {"algorithm": "sha-256", "value": "6D:3A:8E:42:15:0C:9B:71:2F:D0:44:18:A6:7E:93:5B:C1:0F:22:8D:77:E4:39:B2:5A:06:F1:9C:3E:81:D7:2B"}
            ]},
        })
    }

    fn router_caps() -> Value {
        json!({
            "codecs": [
                {"kind": "audio", "mimeType": "audio/opus", "clockRate": 48000, "channels": 2, "preferredPayloadType": 100, "parameters": {}, "rtcpFeedback": [{"type": "nack", "parameter": ""}, {"type": "transport-cc", "parameter": ""}]},
                {"kind": "video", "mimeType": "video/VP8", "clockRate": 90000, "preferredPayloadType": 101, "parameters": {}, "rtcpFeedback": [{"type": "nack", "parameter": ""}, {"type": "nack", "parameter": "pli"}, {"type": "ccm", "parameter": "fir"}, {"type": "goog-remb", "parameter": ""}, {"type": "transport-cc", "parameter": ""}]},
                {"kind": "video", "mimeType": "video/rtx", "clockRate": 90000, "preferredPayloadType": 102, "parameters": {"apt": 101}, "rtcpFeedback": []}
            ],
            "headerExtensions": [
                {"kind": "audio", "uri": "urn:ietf:params:rtp-hdrext:sdes:mid", "preferredId": 1, "preferredEncrypt": false, "direction": "sendrecv"},
                {"kind": "video", "uri": "urn:ietf:params:rtp-hdrext:sdes:mid", "preferredId": 1, "preferredEncrypt": false, "direction": "sendrecv"},
                {"kind": "video", "uri": "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time", "preferredId": 4, "preferredEncrypt": false, "direction": "sendrecv"},
                {"kind": "video", "uri": "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01", "preferredId": 5, "preferredEncrypt": false, "direction": "sendrecv"},
                {"kind": "audio", "uri": "urn:ietf:params:rtp-hdrext:ssrc-audio-level", "preferredId": 6, "preferredEncrypt": false, "direction": "sendrecv"},
                {"kind": "video", "uri": "urn:mediasoup:params:rtp-hdrext:packet-id", "preferredId": 11, "preferredEncrypt": false, "direction": "sendrecv"}
            ],
        })
    }

    #[test]
    fn str0m_accepts_mediasoups_answer_to_its_offer() {
        let mut rtc = sfu_client::participant_rtc();
        let mut api = rtc.sdp_api();
        let amid = api.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None);
        let vmid = api.add_media(MediaKind::Video, Direction::SendOnly, None, None, None);
        let (offer, pending) = api.apply().unwrap();
        let producers = producers(&offer.to_sdp_string(), &router_caps()).unwrap();
        assert_eq!(producers.len(), 2);
        let video = &producers[1]["rtpParameters"];
        assert_eq!(video["codecs"][0]["mimeType"], "video/VP8");
        assert_eq!(video["mid"], vmid.to_string());
        assert!(video["encodings"][0]["ssrc"].as_u64().is_some());
        assert_eq!(producers[0]["rtpParameters"]["codecs"][0]["channels"], 2);
        let remote = Remote::from_answer(&transport()).unwrap();
        let sdp = answer(&remote, &producers).unwrap();
        let answer = SdpAnswer::from_sdp_string(&sdp).unwrap();
        rtc.sdp_api().accept_answer(pending, answer).unwrap();
        assert!(crate::peer::TxTracks::negotiated(&rtc, Some(amid), Some(vmid), true).is_some());
    }

    #[test]
    fn str0m_answers_an_offer_of_mediasoups_consumers() {
        let consumers = json!([
            {"kind": "audio", "rtpParameters": {"mid": "0", "codecs": [{"mimeType": "audio/opus", "payloadType": 100, "clockRate": 48000, "channels": 2, "parameters": {"useinbandfec": 1}, "rtcpFeedback": [{"type": "transport-cc", "parameter": ""}]}],
                "headerExtensions": [{"uri": "urn:ietf:params:rtp-hdrext:sdes:mid", "id": 1}, {"uri": "urn:ietf:params:rtp-hdrext:ssrc-audio-level", "id": 6}],
                "encodings": [{"ssrc": 111_222}], "rtcp": {"cname": "x", "reducedSize": true}}},
            {"kind": "video", "rtpParameters": {"mid": "1", "codecs": [{"mimeType": "video/VP8", "payloadType": 101, "clockRate": 90000, "parameters": {}, "rtcpFeedback": [{"type": "nack", "parameter": ""}, {"type": "nack", "parameter": "pli"}, {"type": "goog-remb", "parameter": ""}]}],
                "headerExtensions": [{"uri": "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01", "id": 5}],
                "encodings": [{"ssrc": 333_444}], "rtcp": {"cname": "x", "reducedSize": true}}}
        ]);
        let remote = Remote::from_answer(&transport()).unwrap();
        let sdp = consumer_offer(&remote, consumers.as_array().unwrap()).unwrap();
        let offer = SdpOffer::from_sdp_string(&sdp).unwrap();
        let mut rtc = sfu_client::participant_rtc();
        let answer = rtc.sdp_api().accept_offer(offer).unwrap().to_sdp_string();
        assert!(answer.contains("a=recvonly"), "{answer}");
        // str0m answers an actpass offer as the DTLS client (vendor/README.md).
        assert_eq!(dtls_role(&answer), "client");
    }

    #[test]
    fn client_capabilities_keep_opus_vp8_and_known_extensions() {
        let caps = client_capabilities(&router_caps());
        assert_eq!(caps["codecs"].as_array().unwrap().len(), 2);
        let ext = caps["headerExtensions"].as_array().unwrap();
        assert_eq!(ext.len(), 5);
        assert!(ext.iter().all(|e| e["preferredId"] != 11));
    }
}
