//! Scalable VP9 (SVC, L3T3_KEY as Chromium sends it) through the core with simulated time: each
//! subscriber gets the spatial layers its tile wants, as one gap-free stream whose pictures end
//! with a marker on the highest layer it takes; layers change at the right pictures.

mod common;

use std::time::Duration;

use common::*;
use sfu_core::codec::Vp9Descriptor;
use sfu_core::protocol::ClientMessage;
use sfu_core::str0m::format::Codec;
use sfu_core::str0m::rtp::{RtpWrite, SeqNo};
use sfu_core::CoreConfig;

/// Spatial layers of the publisher's stream.
const LAYERS: u8 = 3;
/// Marks the media payload after the descriptor, to tell it from anything else received.
const TAG: u8 = 0xEE;

/// The publishing side: picture count and sequence numbers.
struct Publisher {
    picture: u16,
    seq: u64,
}

/// One packet of a picture: its VP9 payload descriptor (non-flexible, picture id, layer
/// indices, the scalability structure on a keyframe's first packet), then `TAG`, the picture,
/// the spatial layer and the part.
fn packet(picture: u16, sid: u8, part: u8, keyframe: bool) -> Vec<u8> {
    let begins = part == 0;
    let ends = part == 1;
    let mut flags = 0xa0; // I L
    if !keyframe {
        flags |= 0x40; // P
    }
    if begins {
        flags |= 0x08;
    }
    if ends {
        flags |= 0x04;
    }
    let structure = keyframe && sid == 0 && begins;
    if structure {
        flags |= 0x02;
    }
    let inter_layer = u8::from(keyframe && sid > 0);
    let pid = picture & 0x7fff;
    let mut p = vec![
        flags,
        0x80 | (pid >> 8) as u8,
        pid as u8,
        (sid << 1) | inter_layer,
        picture as u8,
    ];
    if structure {
        p.push(((LAYERS - 1) << 5) | 0x10);
        for (w, h) in [(320u16, 180u16), (640, 360), (1280, 720)] {
            p.extend_from_slice(&w.to_be_bytes());
            p.extend_from_slice(&h.to_be_bytes());
        }
    }
    p.extend_from_slice(&[TAG, picture as u8, sid, part]);
    p
}

impl Publisher {
    /// Sends one picture (every spatial layer, two packets each), 60 ms in all.
    fn picture(&mut self, w: &mut World, keyframe: bool) {
        let c = &mut w.clients[0];
        let mid = c.video.unwrap();
        let pt = c
            .rtc
            .codec_config()
            .find(|p| p.spec().codec == Codec::Vp9)
            .unwrap()
            .pt();
        let timestamp = u32::from(self.picture) * 3000;
        for sid in 0..LAYERS {
            for part in 0..2 {
                let payload = packet(self.picture, sid, part, keyframe);
                let last = sid == LAYERS - 1 && part == 1;
                let now = w.now;
                let mut api = w.clients[0].rtc.direct_api();
                let tx = api.stream_tx_by_mid(mid, None).unwrap();
                tx.write_rtp(
                    RtpWrite::new(pt, SeqNo::from(self.seq), timestamp, now, payload)
                        .marker(last)
                        .nackable(true),
                );
                self.seq += 1;
                // One packet per step: a str0m receiver keeps one RTP packet until polled,
                // and the simulated network delivers a whole step's datagrams before that.
                w.advance(Duration::from_millis(10));
            }
        }
        self.picture += 1;
    }

    /// Sends `n` pictures, a keyframe every ten.
    fn pictures(&mut self, w: &mut World, n: u16) {
        for _ in 0..n {
            let keyframe = self.picture.is_multiple_of(10);
            self.picture(w, keyframe);
        }
    }
}

/// What a subscriber received of the publisher's pictures: (picture, spatial layer, part,
/// marker), from the received index `from` on.
fn received(w: &World, sub: usize, from: usize) -> Vec<(u8, u8, u8, bool)> {
    w.client(sub)
        .received
        .iter()
        .skip(from)
        .filter_map(|r| {
            let d = Vp9Descriptor::new_checked(&r.payload).ok()?;
            let tail = r.payload.len().checked_sub(4)?;
            let [tag, picture, sid, part] = r.payload[tail..] else {
                return None;
            };
            assert_eq!(sid, d.spatial);
            (tag == TAG).then_some((picture, sid, part, r.marker))
        })
        .collect()
}

/// The spatial layers a subscriber got in the pictures of `got`, and checks that each picture
/// ends with the marker on the end of its highest layer, and nowhere else.
fn layers_with_markers(got: &[(u8, u8, u8, bool)]) -> Vec<u8> {
    let top = got.iter().map(|g| g.1).max().unwrap();
    for &(picture, sid, part, marker) in got {
        assert_eq!(
            marker,
            sid == top && part == 1,
            "marker of picture {picture} layer {sid} part {part}"
        );
    }
    let mut layers: Vec<u8> = got.iter().map(|g| g.1).collect();
    layers.sort();
    layers.dedup();
    layers
}

fn tile(w: &mut World, sub: usize, width: u32, height: u32) {
    let publisher = w.client(0);
    let track_id = format!("{}:{}", publisher.id, publisher.video.unwrap());
    let id = w.client(sub).id;
    w.to_core.push_back((
        id,
        ClientMessage::TileSize {
            track_id,
            width,
            height,
        },
    ));
    w.pump();
}

fn vp9_room() -> World {
    let mut w = World::with_config(CoreConfig {
        video_codecs: vec![Codec::Vp9],
        ..CoreConfig::default()
    });
    for i in 0..3 {
        w.join(&format!("p{i}"));
    }
    w.advance(Duration::from_secs(2));
    w
}

#[test]
fn each_viewer_gets_the_spatial_layers_its_tile_wants_as_one_gap_free_stream() {
    let mut w = vp9_room();
    let mut publisher = Publisher {
        picture: 0,
        seq: 100,
    };
    // Viewer 1 shows a small tile; viewer 2 reports none and takes the top.
    tile(&mut w, 1, 320, 180);
    publisher.pictures(&mut w, 60);
    let (mark1, mark2) = (
        w.client(1).received.len() - 20,
        w.client(2).received.len() - 20,
    );
    publisher.pictures(&mut w, 20);
    let small = received(&w, 1, mark1);
    let big = received(&w, 2, mark2);
    assert!(!small.is_empty() && !big.is_empty());
    assert_eq!(layers_with_markers(&small), [0], "the small tile: S0 only");
    assert_eq!(layers_with_markers(&big), [0, 1, 2], "no tile: every layer");
    for sub in [1, 2] {
        let got = &w.client(sub).received;
        for pair in got.windows(2) {
            assert_eq!(
                pair[1].seq,
                pair[0].seq.wrapping_add(1),
                "viewer {sub}: no gap where layers were dropped"
            );
        }
    }

    // Viewer 2's tile shrinks to the middle layer: down at the next picture, no keyframe needed.
    tile(&mut w, 2, 640, 360);
    let mark = w.client(2).received.len();
    // Between keyframes (the last one was picture 80).
    publisher.picture(&mut w, false);
    publisher.picture(&mut w, false);
    let middle = received(&w, 2, mark);
    // The picture under way when the tile changed may end at its old top; the next one not.
    let last_picture = middle.last().unwrap().0;
    let last: Vec<_> = middle
        .iter()
        .filter(|g| g.0 == last_picture)
        .copied()
        .collect();
    assert_eq!(layers_with_markers(&last), [0, 1]);

    // Viewer 1's tile grows: up only at the next keyframe.
    tile(&mut w, 1, 1280, 720);
    let mark = w.client(1).received.len();
    publisher.picture(&mut w, false);
    let before_keyframe = received(&w, 1, mark);
    assert_eq!(layers_with_markers(&before_keyframe), [0]);
    let mark = w.client(1).received.len();
    publisher.picture(&mut w, true);
    let at_keyframe = received(&w, 1, mark);
    assert_eq!(layers_with_markers(&at_keyframe), [0, 1, 2]);
}
