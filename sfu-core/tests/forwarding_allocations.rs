//! The forwarding path allocates nothing after warm-up. A counting global allocator counts every
//! allocation made inside the core's calls (str0m's sessions included) while one publisher's
//! video and audio are forwarded to ten subscribers: forwarding a packet must cost none at all,
//! and the timers (RTCP, BWE, TWCC feedback, layer ticks) a bounded few per second, not one per
//! packet.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use common::{connected_room, server_addr, World};
use sfu_core::str0m::format::Codec;
use sfu_core::str0m::media::MediaKind;
use sfu_core::str0m::rtp::{RtpWrite, SeqNo};
use sfu_core::str0m::{Input, Output as RtcOutput};
use sfu_core::Action;

/// Allocations made while [`COUNTING`] is on, on any thread that turned it on.
static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// Whether this thread's allocations are counted (a const initializer: reading it never
    /// allocates).
    static COUNTING: Cell<bool> = const { Cell::new(false) };
}

/// The system allocator, counting.
struct Counting;

// SAFETY: every call is forwarded to the system allocator unchanged; counting has no effect on
// the memory handed out.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

fn count() {
    if COUNTING.with(Cell::get) {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Runs `f` with this thread's allocations counted; returns how many it made.
fn counted(f: impl FnOnce()) -> u64 {
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    COUNTING.with(|c| c.set(true));
    f();
    COUNTING.with(|c| c.set(false));
    ALLOCATIONS.load(Ordering::Relaxed) - before
}

/// Video payload bytes per packet, as a camera's packetizer makes them.
const VIDEO_PAYLOAD: usize = 1100;
/// Subscribers of the publisher's tracks.
const SUBSCRIBERS: usize = 10;

/// The SRTP datagrams publisher 0 sends for `n` packets of `kind` from sequence number `seq`
/// on (made by its own session, outside any count).
fn publisher_datagrams(w: &mut World, kind: MediaKind, seq: &mut u64, n: usize) -> Vec<Vec<u8>> {
    let c = &mut w.clients[0];
    let (mid, codec, step, len) = match kind {
        MediaKind::Audio => (c.audio.unwrap(), Codec::Opus, 960, 100),
        MediaKind::Video => (c.video.unwrap(), Codec::Vp8, 3000, VIDEO_PAYLOAD),
    };
    let pt = c
        .rtc
        .codec_config()
        .find(|p| p.spec().codec == codec)
        .unwrap()
        .pt();
    let mut out = Vec::new();
    for _ in 0..n {
        let mut payload = vec![0u8; len];
        // A VP8 descriptor (start of a partition, no extensions) and a delta frame tag.
        payload[0] = 0x10;
        payload[1] = 0x01;
        let mut api = c.rtc.direct_api();
        api.stream_tx_by_mid(mid, None).unwrap().write_rtp(
            RtpWrite::new(pt, SeqNo::from(*seq), *seq as u32 * step, w.now, payload)
                .nackable(kind == MediaKind::Video),
        );
        *seq += 1;
        c.rtc.handle_input(Input::Timeout(w.now)).unwrap();
        loop {
            match c.rtc.poll_output().unwrap() {
                RtcOutput::Transmit(t) => out.push(t.contents.to_vec()),
                RtcOutput::Timeout(_) => break,
                RtcOutput::Event(_) => {}
            }
        }
    }
    out
}

/// Hands `datagrams` from publisher 0 to the core and takes everything it sends back (the
/// buffers go back to its pool, as the shell does); returns the datagrams the core sent.
fn forward(w: &mut World, datagrams: &[Vec<u8>]) -> usize {
    let from = w.clients[0].addr;
    let mut sent = 0;
    for d in datagrams {
        w.core.handle_datagram(w.now, from, server_addr(), d);
        while let Some(action) = w.core.poll_output() {
            if let Action::Transmit(t) = action {
                sent += 1;
                w.core.recycle(t.contents);
            }
        }
    }
    sent
}

#[test]
fn forwarding_to_ten_subscribers_allocates_nothing_after_warm_up() {
    let mut w = connected_room(1 + SUBSCRIBERS);
    let mut video_seq = 1000;
    let mut audio_seq = 1000;
    // Warm-up: media flows as it will below for simulated seconds, with everything delivered
    // both ways, so that queues, pools and registers (str0m keeps the last 1000 packets' TWCC
    // records per session) have grown to their working size.
    for _ in 0..150 {
        let video = publisher_datagrams(&mut w, MediaKind::Video, &mut video_seq, 30);
        let audio = publisher_datagrams(&mut w, MediaKind::Audio, &mut audio_seq, 1);
        for d in video.iter().chain(&audio) {
            let from = w.clients[0].addr;
            w.core.handle_datagram(w.now, from, server_addr(), d);
        }
        w.advance(Duration::from_millis(20));
    }
    let before = w.core.counters().forwarded_packets;
    assert!(
        before >= 150 * 31 * SUBSCRIBERS as u64 * 9 / 10,
        "media flows during warm-up: {before} forwarded"
    );

    // Forwarding alone: four simulated seconds of video frames (30 packets each, 50 per
    // second) and audio, each packet to ten subscribers. Only the core's handling of the
    // publisher's datagrams is counted; time, the session timers and the subscribers' feedback
    // run in between, uncounted (the next phase counts them).
    let mut sent = 0;
    let mut allocations = 0;
    for _ in 0..200 {
        let video = publisher_datagrams(&mut w, MediaKind::Video, &mut video_seq, 30);
        let audio = publisher_datagrams(&mut w, MediaKind::Audio, &mut audio_seq, 1);
        allocations += counted(|| {
            sent += forward(&mut w, &video);
            sent += forward(&mut w, &audio);
        });
        w.now += Duration::from_millis(20);
        let now = w.now;
        w.core.handle_timeout(now);
        w.pump();
    }
    assert_eq!(
        sent,
        200 * 31 * SUBSCRIBERS,
        "every packet went to every subscriber"
    );
    assert_eq!(
        allocations, 0,
        "allocations while forwarding {sent} datagrams"
    );

    // Timers (RTCP, TWCC feedback and BWE, stats, layer ticks) allocate in str0m: a number per
    // second that must not grow with the packet rate. Two simulated seconds at 10 and then at
    // 30 video packets per frame, everything counted.
    let mut per_rate = Vec::new();
    for frame_packets in [10, 30] {
        let mut packets = 0;
        let mut allocations = 0;
        for _ in 0..100 {
            let video =
                publisher_datagrams(&mut w, MediaKind::Video, &mut video_seq, frame_packets);
            let audio = publisher_datagrams(&mut w, MediaKind::Audio, &mut audio_seq, 1);
            allocations += counted(|| {
                packets += forward(&mut w, &video);
                packets += forward(&mut w, &audio);
            });
            w.now += Duration::from_millis(20);
            let now = w.now;
            allocations += counted(|| w.core.handle_timeout(now));
            w.pump();
        }
        assert_eq!(packets, 100 * (frame_packets + 1) * SUBSCRIBERS);
        eprintln!(
            "{allocations} allocations in 2 simulated seconds with timers, {packets} datagrams forwarded"
        );
        per_rate.push((packets as f64, allocations as f64));
    }
    let [(low_packets, low), (high_packets, high)] = per_rate[..] else {
        unreachable!("two rates");
    };
    let per_extra_packet = (high - low) / (high_packets - low_packets);
    assert!(
        per_extra_packet < 0.01,
        "allocations grow with the packet rate: {low} for {low_packets} datagrams, {high} for \
         {high_packets} ({per_extra_packet:.3} per extra datagram)"
    );
}
