//! The room's video codec policy: which codec each publisher of a room is asked to send, so that
//! no member ends up with a publisher's video it cannot decode.
//!
//! The SFU forwards packets as they come (it never transcodes), so a publisher's codec must be
//! one every other member of its room decodes. Each member's video capabilities are the codecs
//! its SDP accepts on its video m-lines ([`video_codecs_in_sdp`]); a publisher sends one of its
//! own. The policy, for one publisher: the first codec of the server's preference order
//! (`CoreConfig::video_codecs`) that the publisher has and every other member decodes. When no
//! codec is common to all (a member decoding VP8 only beside one decoding H.264 only), the codec
//! most of the others decode, in preference order among equals: the rest drop its packets
//! (counted as `no_matching_codec`), they never get what they cannot decode. A member whose
//! capabilities are not known yet (it has not sent SDP with a video m-line) constrains nothing.
//!
//! Pure: the core (`engine/codecs.rs`) hands it the room's capabilities after every SDP exchange
//! and departure, and tells each publisher whose codec changed.

use str0m::format::Codec;

/// The video codecs one member's SDP accepts: `None` until an SDP of it had a video m-line.
pub type VideoCapabilities = Option<Vec<Codec>>;

/// The codec `publisher` should send, given `others`' capabilities and the server's
/// `preference` (most preferred first); `None` when the publisher has none of them (it is left
/// as it is).
pub fn codec_for<'a>(
    preference: &[Codec],
    publisher: &VideoCapabilities,
    others: impl Iterator<Item = &'a VideoCapabilities> + Clone,
) -> Option<Codec> {
    let sendable = preference
        .iter()
        .copied()
        .filter(|c| publisher.as_ref().is_none_or(|own| own.contains(c)));
    let decoders = |codec: Codec| {
        others
            .clone()
            .filter(|caps| caps.as_ref().is_none_or(|c| c.contains(&codec)))
            .count()
    };
    let members = others.clone().count();
    let mut best: Option<(Codec, usize)> = None;
    for codec in sendable {
        let n = decoders(codec);
        if n == members {
            return Some(codec);
        }
        if best.is_none_or(|(_, most)| n > most) {
            best = Some((codec, n));
        }
    }
    best.map(|(codec, _)| codec)
}

/// The video codecs an SDP (an offer or an answer) accepts on every one of its video m-lines that
/// is not rejected (port 0), among `known`; `None` when it has no such m-line. Each m-line's
/// codecs are its `a=rtpmap` names; RTX, RED and FEC are not codecs of a picture.
pub fn video_codecs_in_sdp(sdp: &str, known: &[Codec]) -> VideoCapabilities {
    let mut common: Option<Vec<Codec>> = None;
    let mut section: Option<Vec<Codec>> = None;
    let close = |section: Option<Vec<Codec>>, common: &mut Option<Vec<Codec>>| {
        if let Some(codecs) = section {
            *common = Some(match common.take() {
                None => codecs,
                Some(c) => c.into_iter().filter(|x| codecs.contains(x)).collect(),
            });
        }
    };
    for line in sdp.lines().map(str::trim) {
        if let Some(media) = line.strip_prefix("m=") {
            close(section.take(), &mut common);
            let mut fields = media.split_whitespace();
            let video = fields.next() == Some("video");
            let rejected = fields.next() == Some("0");
            section = (video && !rejected).then(Vec::new);
        } else if let (Some(codecs), Some(map)) = (section.as_mut(), line.strip_prefix("a=rtpmap:"))
        {
            let name = map
                .split_whitespace()
                .nth(1)
                .and_then(|enc| enc.split('/').next())
                .unwrap_or("");
            let codec = Codec::from(name);
            if known.contains(&codec) && !codecs.contains(&codec) {
                codecs.push(codec);
            }
        }
    }
    close(section, &mut common);
    common
}

/// `sdp` (the SFU's answer) with `codec`'s payload types first on each video m-line, so that the
/// browser, which sends the first codec of the answer, sends that one. str0m writes its answers in
/// its configuration's order whatever the offer's; the rest of the SDP is unchanged.
pub fn prefer_codec_in_sdp(sdp: &str, codec: Codec) -> String {
    let lines: Vec<&str> = sdp.split_inclusive('\n').collect();
    let mut out = String::with_capacity(sdp.len());
    for (i, line) in lines.iter().enumerate() {
        let Some(media) = line.trim_end().strip_prefix("m=video ") else {
            out.push_str(line);
            continue;
        };
        // This m-line's payload types of `codec`, from its section's rtpmap lines.
        let preferred: Vec<&str> = lines[i + 1..]
            .iter()
            .take_while(|l| !l.starts_with("m="))
            .filter_map(|l| l.trim_end().strip_prefix("a=rtpmap:"))
            .filter_map(|map| {
                let (pt, encoding) = map.split_once(' ')?;
                (Codec::from(encoding.split('/').next()?) == codec).then_some(pt)
            })
            .collect();
        let mut fields: Vec<&str> = media.split(' ').collect();
        if fields.len() > 2 {
            // Port and protocol, then the formats: a stable sort puts `codec`'s first.
            fields[2..].sort_by_key(|pt| !preferred.contains(pt));
        }
        out.push_str("m=video ");
        out.push_str(&fields.join(" "));
        out.push_str(&line[line.trim_end().len()..]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use Codec::{Av1, Vp8, Vp9, H264};

    const PREFERENCE: [Codec; 2] = [Vp8, H264];

    fn caps(codecs: &[Codec]) -> VideoCapabilities {
        Some(codecs.to_vec())
    }

    /// A room over time: members join and leave, and after each step every publisher's codec (as
    /// the policy sets it) must be decodable by every other member whenever some codec is.
    struct Room {
        preference: Vec<Codec>,
        members: Vec<(&'static str, VideoCapabilities)>,
    }

    impl Room {
        fn new(preference: &[Codec]) -> Self {
            Room {
                preference: preference.to_vec(),
                members: Vec::new(),
            }
        }

        fn join(&mut self, name: &'static str, capabilities: VideoCapabilities) -> &mut Self {
            self.members.push((name, capabilities));
            self
        }

        fn leave(&mut self, name: &str) -> &mut Self {
            self.members.retain(|(n, _)| *n != name);
            self
        }

        fn codec_of(&self, name: &str) -> Option<Codec> {
            let (_, own) = self.members.iter().find(|(n, _)| *n == name).unwrap();
            let others = self
                .members
                .iter()
                .filter(|(n, _)| *n != name)
                .map(|(_, c)| c);
            codec_for(&self.preference, own, others)
        }
    }

    #[test]
    fn the_first_preferred_codec_every_member_decodes() {
        let mut room = Room::new(&PREFERENCE);
        room.join("chromium", caps(&[Vp8, H264]));
        // Alone: the preferred codec.
        assert_eq!(room.codec_of("chromium"), Some(Vp8));
        room.join("firefox", caps(&[Vp8, H264]));
        assert_eq!(room.codec_of("chromium"), Some(Vp8));
        assert_eq!(room.codec_of("firefox"), Some(Vp8));
        // An H.264-only member (Safari with hardware decoding only): everybody sends H.264,
        // including itself.
        room.join("iphone", caps(&[H264]));
        assert_eq!(room.codec_of("chromium"), Some(H264));
        assert_eq!(room.codec_of("firefox"), Some(H264));
        assert_eq!(room.codec_of("iphone"), Some(H264));
        // It leaves: back to the preferred codec.
        room.leave("iphone");
        assert_eq!(room.codec_of("chromium"), Some(Vp8));
    }

    #[test]
    fn unknown_capabilities_constrain_nothing() {
        let mut room = Room::new(&PREFERENCE);
        room.join("a", caps(&[Vp8, H264])).join("viewer", None);
        assert_eq!(room.codec_of("a"), Some(Vp8));
        // Its first SDP says H.264 only: the publisher switches.
        room.leave("viewer").join("viewer", caps(&[H264]));
        assert_eq!(room.codec_of("a"), Some(H264));
        // A publisher whose own capabilities are unknown gets the room's choice.
        room.join("b", None);
        assert_eq!(room.codec_of("b"), Some(H264));
    }

    #[test]
    fn a_publisher_sends_only_a_codec_it_has() {
        let mut room = Room::new(&PREFERENCE);
        room.join("vp8-only", caps(&[Vp8]))
            .join("h264-only", caps(&[H264]))
            .join("both", caps(&[Vp8, H264]));
        // Nothing is common to all: each sends what most of the others decode, and never a
        // codec it does not have.
        assert_eq!(room.codec_of("vp8-only"), Some(Vp8));
        assert_eq!(room.codec_of("h264-only"), Some(H264));
        // For "both", VP8 and H.264 each have one decoder: the preferred one.
        assert_eq!(room.codec_of("both"), Some(Vp8));
        room.join("another-h264", caps(&[H264]));
        assert_eq!(room.codec_of("both"), Some(H264));
        // A publisher with none of the server's codecs is left alone.
        room.join("av1-only", caps(&[Av1]));
        assert_eq!(room.codec_of("av1-only"), None);
    }

    #[test]
    fn any_preference_list_works() {
        // VP9 and AV1 when every member has them, in the server's order.
        let mut room = Room::new(&[Av1, Vp9, Vp8, H264]);
        room.join("new", caps(&[Av1, Vp9, Vp8, H264]))
            .join("newer", caps(&[Vp9, Av1, Vp8, H264]));
        assert_eq!(room.codec_of("new"), Some(Av1));
        room.join("no-av1", caps(&[Vp9, Vp8, H264]));
        assert_eq!(room.codec_of("new"), Some(Vp9));
        room.join("old", caps(&[Vp8, H264]));
        assert_eq!(room.codec_of("new"), Some(Vp8));
        room.leave("old").leave("no-av1");
        assert_eq!(room.codec_of("newer"), Some(Av1));
        // An empty preference list: nothing to ask for.
        assert_eq!(codec_for(&[], &caps(&[Vp8]), std::iter::empty()), None);
    }

    #[test]
    fn the_preferred_codec_goes_first_in_the_answer() {
        let answer = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=rtpmap:111 opus/48000/2\r\n\
            m=video 9 UDP/TLS/RTP/SAVPF 96 97 102 103 104\r\na=rtpmap:96 VP8/90000\r\n\
            a=rtpmap:97 rtx/90000\r\na=rtpmap:102 H264/90000\r\na=rtpmap:103 rtx/90000\r\n\
            a=rtpmap:104 H264/90000\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=rtpmap:96 VP8/90000\r\n";
        let h264 = prefer_codec_in_sdp(answer, H264);
        assert!(
            h264.contains("m=video 9 UDP/TLS/RTP/SAVPF 102 104 96 97 103\r\n"),
            "{h264}"
        );
        assert!(
            h264.contains("m=video 9 UDP/TLS/RTP/SAVPF 96\r\n"),
            "{h264}"
        );
        assert!(
            h264.contains("m=audio 9 UDP/TLS/RTP/SAVPF 111\r\n"),
            "{h264}"
        );
        assert_eq!(h264.len(), answer.len());
        assert_eq!(prefer_codec_in_sdp(answer, Vp8), answer);
        // Garbage in, the same garbage out.
        assert_eq!(
            prefer_codec_in_sdp("m=video \na=rtpmap:x", H264),
            "m=video \na=rtpmap:x"
        );
    }

    #[test]
    fn capabilities_from_sdp() {
        let known = [Vp8, H264];
        let chromium = "v=0\r\n\
            m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=rtpmap:111 opus/48000/2\r\n\
            m=video 9 UDP/TLS/RTP/SAVPF 96 97 98 99 100\r\na=mid:1\r\n\
            a=rtpmap:96 VP8/90000\r\na=rtpmap:97 rtx/90000\r\na=rtpmap:98 VP9/90000\r\n\
            a=rtpmap:99 H264/90000\r\na=rtpmap:100 H264/90000\r\n\
            m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n";
        assert_eq!(video_codecs_in_sdp(chromium, &known), caps(&[Vp8, H264]));
        assert_eq!(
            video_codecs_in_sdp(chromium, &[Vp9, Vp8]),
            caps(&[Vp8, Vp9])
        );
        // Two video m-lines: what both accept. A rejected one does not count.
        let h264_only = "m=video 9 UDP/TLS/RTP/SAVPF 96 97\r\na=rtpmap:96 VP8/90000\r\n\
            a=rtpmap:97 H264/90000\r\n\
            m=video 9 UDP/TLS/RTP/SAVPF 102\r\na=rtpmap:102 H264/90000\r\n\
            m=video 0 UDP/TLS/RTP/SAVPF 96\r\na=rtpmap:96 VP8/90000\r\n";
        assert_eq!(video_codecs_in_sdp(h264_only, &known), caps(&[H264]));
        // No video m-line: unknown. Garbage: unknown, no panic.
        assert_eq!(
            video_codecs_in_sdp("m=audio 9 X 111\na=rtpmap:111 opus/48000", &known),
            None
        );
        assert_eq!(
            video_codecs_in_sdp("m=\na=rtpmap:\na=rtpmap:1", &known),
            None
        );
        assert_eq!(
            video_codecs_in_sdp("m=video\na=rtpmap:\na=rtpmap:1 /", &known),
            caps(&[])
        );
    }
}
