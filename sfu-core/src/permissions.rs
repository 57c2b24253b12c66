//! What a member may do in its room: publish, subscribe, chat, record.
//!
//! The signaling layer decides (from a room token, or "everything" when rooms are open) and hands
//! the answer to the core with the join; the core enforces it where each action happens, so no
//! path around the check exists (an offer's m-lines, a leg to a new track, a chat line over the
//! WebSocket or over the data channel).

/// What one member may do. [`Permissions::default`] is [`Permissions::OPEN_ROOM`]: a room
/// without tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Permissions {
    /// May send audio and video into the room (declare tracks, offer sending m-lines).
    pub publish: bool,
    /// May receive the other members' tracks.
    pub subscribe: bool,
    /// May send chat lines.
    pub chat: bool,
    /// May start and stop the room's recording from the page (a token's `record` claim; never
    /// in an open room, where only the loopback API records).
    pub record: bool,
}

impl Permissions {
    /// Everything allowed.
    pub const ALL: Permissions = Permissions {
        publish: true,
        subscribe: true,
        chat: true,
        record: true,
    };

    /// What every member of an open room gets: everything but recording.
    pub const OPEN_ROOM: Permissions = Permissions {
        record: false,
        ..Permissions::ALL
    };
}

impl Default for Permissions {
    fn default() -> Self {
        Permissions::OPEN_ROOM
    }
}

/// Whether an SDP offer has an audio or video m-line the offerer sends on (`sendonly` or
/// `sendrecv`, the latter also by default). A rejected m-line (port 0 without `bundle-only`) does
/// not count.
///
/// This reads the text itself rather than asking str0m, because a member without the publish
/// permission must be refused *before* its offer is applied to its session. Any text is accepted:
/// what does not parse as an m-line simply does not count as one.
pub(crate) fn offer_sends_media(sdp: &str) -> bool {
    /// Direction of the current section, as far as read.
    #[derive(Clone, Copy, PartialEq)]
    enum Dir {
        Sends,
        Silent,
    }
    struct Section {
        media: bool,
        rejected: bool,
        bundle_only: bool,
        dir: Option<Dir>,
    }
    impl Section {
        fn sends(&self, session_dir: Dir) -> bool {
            self.media
                && (!self.rejected || self.bundle_only)
                && self.dir.unwrap_or(session_dir) == Dir::Sends
        }
    }
    let mut session_dir = Dir::Sends; // RFC 4566: sendrecv unless said otherwise
    let mut section: Option<Section> = None;
    for line in sdp.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("m=") {
            if section.as_ref().is_some_and(|s| s.sends(session_dir)) {
                return true;
            }
            let mut fields = rest.split_whitespace();
            let kind = fields.next().unwrap_or("");
            let port = fields.next().unwrap_or("");
            section = Some(Section {
                media: kind == "audio" || kind == "video",
                // "0" or "0/2": the m-line is rejected or stopped.
                rejected: port.split('/').next() == Some("0"),
                bundle_only: false,
                dir: None,
            });
            continue;
        }
        let dir = match line {
            "a=sendrecv" | "a=sendonly" => Some(Dir::Sends),
            "a=recvonly" | "a=inactive" => Some(Dir::Silent),
            _ => None,
        };
        match (&mut section, dir) {
            (Some(s), Some(d)) => s.dir = Some(d),
            (None, Some(d)) => session_dir = d,
            (Some(s), None) if line == "a=bundle-only" => s.bundle_only = true,
            _ => {}
        }
    }
    section.is_some_and(|s| s.sends(session_dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEAD: &str = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n";

    fn sdp(sections: &[&str]) -> String {
        let mut s = HEAD.to_string();
        for sec in sections {
            s.push_str(sec);
        }
        s
    }

    #[test]
    fn a_data_channel_only_offer_sends_no_media() {
        let offer = sdp(&["m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=mid:0\r\n"]);
        assert!(!offer_sends_media(&offer));
    }

    #[test]
    fn sendonly_and_default_sendrecv_media_sends() {
        let sendonly = sdp(&[
            "m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=mid:0\r\n",
            "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:1\r\na=sendonly\r\n",
        ]);
        assert!(offer_sends_media(&sendonly));
        let implicit = sdp(&["m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:0\r\n"]);
        assert!(offer_sends_media(&implicit), "no direction means sendrecv");
    }

    #[test]
    fn receiving_inactive_and_rejected_media_does_not_send() {
        let offer = sdp(&[
            "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\na=recvonly\r\n",
            "m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:1\r\na=inactive\r\n",
            "m=video 0 UDP/TLS/RTP/SAVPF 96\r\na=mid:2\r\na=sendonly\r\n",
        ]);
        assert!(!offer_sends_media(&offer));
        let bundle_only =
            sdp(&["m=video 0 UDP/TLS/RTP/SAVPF 96\r\na=mid:0\r\na=bundle-only\r\na=sendonly\r\n"]);
        assert!(
            offer_sends_media(&bundle_only),
            "bundle-only port 0 is live"
        );
    }

    #[test]
    fn a_session_level_direction_is_the_default() {
        let offer = format!("{HEAD}a=recvonly\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\n");
        assert!(!offer_sends_media(&offer));
    }

    #[test]
    fn garbage_is_not_media() {
        assert!(!offer_sends_media(""));
        assert!(!offer_sends_media("m="));
        assert!(!offer_sends_media("\u{0}\u{ffff}m=\r\na=sendonly"));
    }
}
