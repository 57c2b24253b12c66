//! SRTP sealing cost per protection profile: one RTP packet, 1100 bytes (video) or 100 bytes
//! (audio), a 12-byte header and no extensions, sealed in place with each profile str0m
//! negotiates (AES-128-CM-HMAC-SHA1-80, AEAD-AES-128-GCM, AEAD-AES-256-GCM).
//!
//! The context is str0m's own (`str0m::rtp::SrtpSender`, an edge-sfu addition in vendor/str0m),
//! made from made-up keying material: the key derivation, the aws-lc-rs ciphers and the in-place
//! sealing are exactly what a session does per packet in `Rtc::send_rtp_direct`, including what
//! str0m adds around aws-lc-rs (AES-CM builds its key schedule again for every packet; the
//! HMAC-SHA1 runs over the header, payload and rollover counter). Calling aws-lc-rs directly would
//! leave that out, and a connected `Rtc` pair (the `srtp_seal` bench in `forwarding.rs`) would
//! add serialisation and bookkeeping and fix the profile to the one DTLS picks.
//!
//! aws-lc picks its AES, GHASH and SHA-1 code by CPU features; `OPENSSL_ia32cap` masks them, which
//! is how `docs/benchmarks.md` approximates a CPU without AES instructions (Raspberry Pi 4 class).
//! AES-NI and PCLMULQDQ alone are not enough where the CPU has VAES/VPCLMULQDQ and AVX-512:
//! `OPENSSL_ia32cap='~0x200000200000000:~0x60020000000' cargo bench --bench srtp_profiles`.
//! `scripts/srtp-profiles` runs it alternating with and without masks.
//!
//! Run: `cargo bench --bench srtp_profiles`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use str0m::config::KeyingMaterial;
use str0m::crypto::dtls::SrtpProfile;
use str0m::rtp::SrtpSender;

/// An RTP header without CSRCs or extensions.
const HEADER_LEN: usize = 12;
/// Room after the packet for the tag: GCM's 16 bytes, the longest (HMAC-SHA1-80 writes 10).
const TAG_ROOM: usize = 16;
const SSRC: u32 = 0x1234_5678;

fn srtp_profiles(c: &mut Criterion) {
    let crypto = str0m::crypto::from_feature_flags();
    let mut g = c.benchmark_group("srtp_profile");
    for (name, profile) in [
        ("aes128_cm_sha1_80", SrtpProfile::AES128_CM_SHA1_80),
        ("aead_aes128_gcm", SrtpProfile::AEAD_AES_128_GCM),
        ("aead_aes256_gcm", SrtpProfile::AEAD_AES_256_GCM),
    ] {
        let len = profile.keying_material_len();
        let material: Vec<u8> = (0..len).map(|i| (i as u8).wrapping_mul(37)).collect();
        let mut sender = SrtpSender::new(&crypto, profile, &KeyingMaterial::new(&material));
        for size in [100usize, 1100] {
            let mut buf = vec![0x5a_u8; size + TAG_ROOM];
            buf[0] = 0x80; // RTP version 2
            buf[8..12].copy_from_slice(&SSRC.to_be_bytes());
            let mut index: u64 = 70_000;
            g.throughput(Throughput::BytesDecimal(size as u64));
            g.bench_with_input(BenchmarkId::new(name, size), &size, |b, &size| {
                b.iter(|| {
                    // Each packet its own index, as on the wire; sealing the previous
                    // ciphertext again is the same work as sealing a fresh payload.
                    index += 1;
                    buf[2..4].copy_from_slice(&(index as u16).to_be_bytes());
                    black_box(sender.protect_rtp_in_place(
                        black_box(&mut buf),
                        HEADER_LEN,
                        SSRC,
                        index,
                        size,
                    ))
                })
            });
        }
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = srtp_profiles
}
criterion_main!(benches);
