//! `--lan`: the URLs under which phones and laptops on the local network reach the demo page, and
//! a QR code of one of them for the terminal.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use qrcode::render::unicode::Dense1x2;
use qrcode::QrCode;

/// The address `--lan` listens on: every interface, IPv4 and IPv6 (`[::]` is dual-stack, see
/// [`crate::net::bind_tcp_listener`]), at `port`.
pub fn listen_address(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv6Addr::UNSPECIFIED, port))
}

/// The demo page's URL at every non-loopback address of this machine that a server listening on
/// `listen` answers on (every interface's for `0.0.0.0` and `[::]`, else just its own): the IPv4
/// ones first (what a phone on a home LAN uses, and the QR code shows), then the IPv6 ones
/// (`https://[fd00::2]:8080/`), each in interface order. Link-local addresses are left out:
/// phones do not get one on a normal LAN, and a URL cannot carry their zone.
pub fn page_urls(scheme: &str, listen: SocketAddr) -> Vec<String> {
    let mut ips: Vec<IpAddr> = if listen.ip().is_unspecified() {
        crate::net::interface_ips()
    } else {
        vec![listen.ip()]
    };
    ips.retain(|ip| match ip {
        IpAddr::V4(v4) => !v4.is_loopback() && !v4.is_link_local() && !v4.is_unspecified(),
        // An IPv4 server (`0.0.0.0`) does not answer on IPv6.
        IpAddr::V6(v6) => {
            !listen.is_ipv4()
                && !v6.is_loopback()
                && !v6.is_unicast_link_local()
                && !v6.is_unspecified()
        }
    });
    ips.sort_by_key(IpAddr::is_ipv6);
    let mut urls: Vec<String> = ips
        .into_iter()
        .map(|ip| format!("{scheme}://{}/", SocketAddr::new(ip, listen.port())))
        .collect();
    urls.dedup();
    urls
}

/// `text` as a QR code drawn with Unicode half blocks, two modules per character cell, light
/// modules and the quiet zone as blocks: on a terminal with light text on a dark background
/// (the usual) it shows the normal dark-on-light code that phone cameras expect.
pub fn terminal_qr_code(text: &str) -> Result<String, qrcode::types::QrError> {
    let code = QrCode::new(text.as_bytes())?;
    Ok(code
        .render::<Dense1x2>()
        .dark_color(Dense1x2::Light)
        .light_color(Dense1x2::Dark)
        .quiet_zone(true)
        .build())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_specific_address_gives_its_own_url_only() {
        let urls = page_urls("https", "192.0.2.7:8443".parse().unwrap());
        assert_eq!(urls, vec!["https://192.0.2.7:8443/".to_string()]);
        assert!(page_urls("https", "127.0.0.1:8443".parse().unwrap()).is_empty());
    }

    #[test]
    fn an_ipv6_address_gives_a_bracketed_url() {
        let urls = page_urls("https", "[fd00::7]:8443".parse().unwrap());
        assert_eq!(urls, vec!["https://[fd00::7]:8443/".to_string()]);
        assert!(page_urls("https", "[::1]:8443".parse().unwrap()).is_empty());
        assert!(page_urls("https", "[fe80::1]:8443".parse().unwrap()).is_empty());
    }

    #[test]
    fn an_ipv4_server_lists_no_ipv6_url_and_ipv4_comes_first() {
        let v4 = page_urls("https", "0.0.0.0:8080".parse().unwrap());
        assert!(v4.iter().all(|u| !u.contains('[')), "{v4:?}");
        let all = page_urls("https", listen_address(8080));
        if let Some(first_v6) = all.iter().position(|u| u.contains('[')) {
            assert!(all[first_v6..].iter().all(|u| u.contains('[')), "{all:?}");
        }
    }

    #[test]
    fn all_interfaces_give_no_loopback_url() {
        let urls = page_urls("https", listen_address(8080));
        assert!(urls
            .iter()
            .all(|u| u.starts_with("https://") && u.ends_with(":8080/")));
        assert!(!urls
            .iter()
            .any(|u| u.contains("127.0.0.1") || u.contains("[::1]")));
    }

    #[test]
    fn qr_code_is_square_blocks() {
        let qr = terminal_qr_code("https://192.0.2.7:8080/").unwrap();
        let lines: Vec<&str> = qr.lines().collect();
        assert!(lines.len() > 10);
        let width = lines[0].chars().count();
        assert!(lines.iter().all(|l| l.chars().count() == width));
        // Two modules per character cell: about half as many lines as columns.
        assert!(lines.len() * 2 >= width && lines.len() * 2 <= width + 2);
    }
}
