//! `api_bodies`: the JSON bodies of the plain RTP HTTP API (`POST /api/ingests`,
//! `POST /api/outputs`, `PUT /api/outputs/{id}/targets`) through serde and into a core, which
//! must refuse what it cannot do and leave nothing behind once the leg is removed.
//!
//! Input: one byte choosing the body (ingest spec, output spec, target list), then the JSON.

use std::time::Instant;

use sfu_core::plain::{IngestSpec, OutputSpec, OutputTarget};
use sfu_core::{Core, CoreConfig};

/// The ingest id and the output id the target uses.
const INGEST: u64 = 1;
const OUTPUT: u64 = 2;

/// Parses the chosen body from `data` and applies it to a core.
pub fn run(data: &[u8]) {
    let Some((&choice, json)) = data.split_first() else {
        return;
    };
    let now = Instant::now();
    let mut core = Core::new(CoreConfig::default());
    match choice % 3 {
        0 => {
            let Ok(spec) = serde_json::from_slice::<IngestSpec>(json) else {
                return;
            };
            if core.add_ingest(now, INGEST, spec).is_ok() {
                drain(&mut core);
                core.remove_ingest(now, INGEST)
                    .expect("the ingest just added");
            }
        }
        1 => {
            let Ok(spec) = serde_json::from_slice::<OutputSpec>(json) else {
                return;
            };
            add_ingest(&mut core, now);
            if core.add_output(OUTPUT, spec).is_ok() {
                drain(&mut core);
                core.remove_output(OUTPUT).expect("the output just added");
            }
            core.remove_ingest(now, INGEST)
                .expect("the ingest added first");
        }
        _ => {
            let Ok(targets) = serde_json::from_slice::<Vec<OutputTarget>>(json) else {
                return;
            };
            let track_id = add_ingest(&mut core, now);
            let receiver = OutputTarget {
                address: std::net::SocketAddr::from(([127, 0, 0, 1], 6000)),
                ssrc: None,
                payload_type: None,
            };
            let spec = OutputSpec {
                room: "r".into(),
                track_id,
                targets: vec![receiver],
            };
            core.add_output(OUTPUT, spec)
                .expect("an output of the ingest's track");
            let _ = core.set_output_targets(OUTPUT, targets);
            drain(&mut core);
            core.remove_output(OUTPUT).expect("the output just added");
            core.remove_ingest(now, INGEST)
                .expect("the ingest added first");
        }
    }
    drain(&mut core);
    assert_eq!(core.room_count(), 0, "a removed leg's room is gone");
    assert!(core.output_infos().is_empty() && core.ingest_infos().is_empty());
}

/// Adds a VP8 ingest into room `r`; returns its track id.
fn add_ingest(core: &mut Core, now: Instant) -> String {
    let spec = IngestSpec {
        room: "r".into(),
        name: "camera".into(),
        codec: sfu_core::plain::IngestCodec::Vp8,
        payload_type: 96,
        source: None,
    };
    core.add_ingest(now, INGEST, spec)
        .expect("a valid ingest")
        .track_id
}

/// Takes every action out of the core, as the shell would.
fn drain(core: &mut Core) {
    while core.poll_output().is_some() {}
}
