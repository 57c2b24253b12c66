//! Small helpers over SDP text.

use std::net::{IpAddr, SocketAddr};

/// The UDP addresses of every `a=candidate` line in an SDP text (deduplicated, in order).
///
/// edge-sfu is ICE-lite and lists one host candidate per worker socket; tests use this to find the
/// media ports.
pub fn sdp_candidates(sdp: &str) -> Vec<SocketAddr> {
    let mut out = Vec::new();
    for line in sdp.lines() {
        let Some(rest) = line.trim().strip_prefix("a=candidate:") else {
            continue;
        };
        // foundation component transport priority address port "typ" type ...
        let fields: Vec<&str> = rest.split_ascii_whitespace().collect();
        if fields.len() < 6 || !fields[2].eq_ignore_ascii_case("udp") {
            continue;
        }
        let (Ok(ip), Ok(port)) = (fields[4].parse::<IpAddr>(), fields[5].parse::<u16>()) else {
            continue;
        };
        let addr = SocketAddr::new(ip, port);
        if !out.contains(&addr) {
            out.push(addr);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_udp_host_candidates() {
        let sdp = "v=0\r\n\
            a=candidate:1 1 udp 2130706431 127.0.0.1 40000 typ host\r\n\
            a=candidate:2 1 UDP 2130706431 127.0.0.1 40001 typ host\r\n\
            a=candidate:3 1 tcp 2130706431 127.0.0.1 40002 typ host tcptype passive\r\n\
            a=candidate:1 1 udp 2130706431 127.0.0.1 40000 typ host\r\n\
            a=candidate:broken\r\n";
        assert_eq!(
            sdp_candidates(sdp),
            vec![
                "127.0.0.1:40000".parse::<SocketAddr>().unwrap(),
                "127.0.0.1:40001".parse().unwrap()
            ]
        );
    }
}
