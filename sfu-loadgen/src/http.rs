//! A minimal HTTP/1.0 GET for the SFU's `/api/stats` (no client library needed for one JSON
//! document on loopback).

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::error::{LoadgenError, Result};

/// The counters of `/api/stats` that the report uses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SfuStats {
    /// RTP packets written to subscriber legs, since the SFU started.
    pub forwarded_packets: u64,
    /// RTP packets received from publishers.
    pub received_packets: u64,
    /// Members in all rooms.
    pub peers: u64,
    /// Sum of every refusal counter.
    pub drops: u64,
}

/// `GET http://addr/api/stats`, parsed.
pub async fn sfu_stats(addr: SocketAddr) -> Result<SfuStats> {
    let body = get(addr, "/api/stats").await?;
    let v: serde_json::Value =
        serde_json::from_str(&body).map_err(|e| LoadgenError::Http(format!("not JSON: {e}")))?;
    let num = |k: &str| v.get(k).and_then(|x| x.as_u64()).unwrap_or(0);
    let drops = v
        .get("drops")
        .and_then(|d| d.as_object())
        .map(|o| o.values().filter_map(|x| x.as_u64()).sum())
        .unwrap_or(0);
    Ok(SfuStats {
        forwarded_packets: num("forwardedPackets"),
        received_packets: num("receivedPackets"),
        peers: num("peers"),
        drops,
    })
}

/// GET `path` with HTTP/1.0 and returns the body of a 200 answer.
pub async fn get(addr: SocketAddr, path: &str) -> Result<String> {
    let fut = async {
        let mut tcp = TcpStream::connect(addr).await?;
        let req = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n");
        tcp.write_all(req.as_bytes()).await?;
        let mut raw = Vec::new();
        tcp.read_to_end(&mut raw).await?;
        let text = String::from_utf8_lossy(&raw).into_owned();
        let (head, body) = text
            .split_once("\r\n\r\n")
            .ok_or_else(|| LoadgenError::Http("no end of headers".into()))?;
        let status = head.split_whitespace().nth(1).unwrap_or("");
        if status != "200" {
            return Err(LoadgenError::Http(format!("GET {path} answered {status}")));
        }
        if head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
        {
            return dechunk(body);
        }
        Ok(body.to_string())
    };
    tokio::time::timeout(Duration::from_secs(5), fut)
        .await
        .map_err(|_| LoadgenError::Timeout(format!("GET {path}")))?
}

fn dechunk(mut body: &str) -> Result<String> {
    let bad = || LoadgenError::Http("bad chunked body".into());
    let mut out = String::new();
    loop {
        let (size, rest) = body.split_once("\r\n").ok_or_else(bad)?;
        let size = usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| bad())?;
        if size == 0 {
            return Ok(out);
        }
        out.push_str(rest.get(..size).ok_or_else(bad)?);
        body = rest.get(size + 2..).ok_or_else(bad)?;
    }
}

/// `ws://host:port/ws` and the HTTP address from a URL the user gave: `http://host:port/`,
/// `ws://host:port/ws`, or `host:port`.
pub fn parse_sfu_url(url: &str) -> Result<(String, SocketAddr)> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("ws://"))
        .unwrap_or(url);
    let host_port = rest.split('/').next().unwrap_or("");
    let addr: SocketAddr = host_port.parse().map_err(|_| {
        LoadgenError::Scenario(format!(
            "cannot use {url:?} as the SFU address: give http://IP:PORT/ (an IP, not a name)"
        ))
    })?;
    Ok((format!("ws://{addr}/ws"), addr))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_of_every_form_parse() {
        for u in [
            "http://127.0.0.1:8080/",
            "ws://127.0.0.1:8080/ws",
            "127.0.0.1:8080",
        ] {
            let (ws, addr) = parse_sfu_url(u).unwrap();
            assert_eq!(ws, "ws://127.0.0.1:8080/ws");
            assert_eq!(addr.port(), 8080);
        }
        assert!(parse_sfu_url("http://localhost:8080/").is_err());
    }

    #[test]
    fn chunked_bodies_are_joined() {
        assert_eq!(
            dechunk("3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n").unwrap(),
            "abcde"
        );
    }
}
