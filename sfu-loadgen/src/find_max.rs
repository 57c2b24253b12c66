//! `--find-max`: the highest load a server sustains on its core, found by raising the load step by
//! step (a fresh server and fresh participants each step), then a run at half of it.
//!
//! The load grows along a preset's [`Ladder`]: subscribers first, up to the room capacity, then
//! rooms (every room alike). The search doubles the asked out-pps while steps pass, then bisects
//! between the last step that passed and the first that did not until they are within
//! [`PRECISION`] of each other or the ladder has no configuration in between. A step passes when
//! its loss stays at or below [`LOSS_LIMIT_PCT`], every join succeeded and media reached every
//! receiver; it ends the search when the server's core was saturated (its CPU share at least
//! [`SATURATED_SHARE`]) or the generator was the bottleneck.

use std::fmt::Write as _;

use serde::Serialize;

use crate::report::Report;
use crate::scenario::Scenario;

/// edge-sfu's largest room (sfu-core's default and maximum capacity); the ladder never goes past it.
pub const ROOM_CAPACITY: u32 = 64;
/// Loss above this (percent of the measured packets) fails a step.
pub const LOSS_LIMIT_PCT: f64 = 0.5;
/// The server's core counts as saturated from this CPU share on.
pub const SATURATED_SHARE: f64 = 0.95;
/// The bisection stops once the failing step asks at most this many times the passing one.
pub const PRECISION: f64 = 1.1;
/// A step whose receivers got less than this share of what it asks was not loaded as asked (the
/// publishers fell behind; UDP does not push back, so it is not the server): generator-bound.
const DELIVERED_SHARE: f64 = 0.9;
/// Joins the ramp-up plans per second (bigger steps get a longer ramp).
const JOINS_PER_S: f64 = 60.0;

/// How a preset's load grows: subscribers up to the room capacity, then rooms.
#[derive(Debug, Clone)]
pub struct Ladder {
    base: Scenario,
}

impl Ladder {
    /// The ladder of `base` (its publishers per room, media and rates stay as they are).
    pub fn new(base: Scenario) -> Ladder {
        Ladder { base }
    }

    /// The smallest configuration on the ladder asking at least `target` out-pps of the server:
    /// one room with enough subscribers, or as many full-size rooms as needed with the
    /// subscribers spread evenly over them. Presets without subscribers (`meeting-10`) grow by
    /// rooms only. Bigger configurations get a longer ramp-up (about 60 joins a second).
    pub fn at(&self, target: f64) -> Scenario {
        let with = |rooms: u32, subscribers: u32| {
            let mut s = self.base.clone();
            s.rooms = rooms;
            s.subscribers = subscribers;
            s.ramp_up_s = s
                .ramp_up_s
                .max(f64::from(s.stable_participants()) / JOINS_PER_S);
            s
        };
        let room_of = |subscribers: u32| with(1, subscribers).expected_out_pps();
        if self.base.subscribers == 0 {
            let per_room = room_of(0).max(1.0);
            let rooms = (target / per_room).ceil().max(1.0) as u32;
            return with(rooms, 0);
        }
        let most = ROOM_CAPACITY.saturating_sub(self.base.publishers).max(1);
        let rooms = (target / room_of(most).max(1.0)).ceil().max(1.0) as u32;
        let per_room = target / f64::from(rooms);
        let subscribers = (1..=most).find(|&k| room_of(k) >= per_room).unwrap_or(most);
        with(rooms, subscribers)
    }
}

/// What a step showed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Passed, with room to spare on the server's core.
    Sustained,
    /// Passed with the server's core saturated: the maximum.
    Saturated,
    /// Loss above the limit.
    Lossy,
    /// A join failed or media did not reach every receiver.
    Incomplete,
    /// The generator, not the server, was the limit (it said so, or its publishers did not send
    /// what the step asks): the step says nothing about the server.
    GeneratorBound,
}

impl Verdict {
    /// Whether the server sustained the step.
    pub fn passed(self) -> bool {
        matches!(self, Verdict::Sustained | Verdict::Saturated)
    }
}

/// Judges a step's report; `server_cores` is how many cores the server may use.
pub fn judge(r: &Report, server_cores: f64) -> Verdict {
    let short = r.loss_pct <= LOSS_LIMIT_PCT && r.out_pps < DELIVERED_SHARE * r.scenario_out_pps;
    if short || r.generator.as_ref().is_some_and(|g| g.bottleneck) {
        return Verdict::GeneratorBound;
    }
    if r.joins.failed > 0 || !r.settled {
        return Verdict::Incomplete;
    }
    if r.loss_pct > LOSS_LIMIT_PCT {
        return Verdict::Lossy;
    }
    let busy = r.server.as_ref().map_or(0.0, |u| u.cpu_cores);
    if busy >= SATURATED_SHARE * server_cores {
        Verdict::Saturated
    } else {
        Verdict::Sustained
    }
}

/// One step's figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Step {
    /// Rooms.
    pub rooms: u32,
    /// Subscribers per room.
    pub subscribers: u32,
    /// Stable participants.
    pub participants: u32,
    /// Out-pps the scenario asks of the server.
    pub asked_pps: f64,
    /// Packets per second that arrived at the receivers in the window.
    pub out_pps: f64,
    /// Cores the server was busy (its CPU share of the pinned core).
    pub server_cores: f64,
    /// Out-pps per server core: `out_pps / server_cores`.
    pub out_pps_per_core: f64,
    /// Server CPU µs per forwarded packet.
    pub server_us_per_packet: f64,
    /// One-way latency p50, µs.
    pub p50_us: u64,
    /// One-way latency p99, µs.
    pub p99_us: u64,
    /// Growth of the server's RSS per subscriber leg, KiB.
    pub rss_per_leg_kib: f64,
    /// Loss, percent of the measured packets.
    pub loss_pct: f64,
    /// Failed joins.
    pub failed_joins: u64,
    /// Cores the generator was busy.
    pub generator_cores: f64,
    /// Generator CPU µs per received packet.
    pub generator_us_per_packet: f64,
    /// What the step showed.
    pub verdict: Verdict,
}

impl Step {
    /// The figures of `r`, judged for a server on `server_cores` cores.
    pub fn of(r: &Report, server_cores: f64) -> Step {
        let s = &r.scenario;
        let u = r.server.as_ref();
        let g = r.generator.as_ref();
        Step {
            rooms: s.rooms,
            subscribers: s.subscribers,
            participants: s.stable_participants(),
            asked_pps: s.expected_out_pps(),
            out_pps: r.out_pps,
            server_cores: u.map_or(0.0, |u| u.cpu_cores),
            out_pps_per_core: u.map_or(0.0, |u| u.out_pps_per_core),
            server_us_per_packet: u.map_or(0.0, |u| u.cpu_s_per_mpkt),
            p50_us: r.latency_us.p50,
            p99_us: r.latency_us.p99,
            rss_per_leg_kib: u.map_or(0.0, |u| u.rss_per_leg_kib),
            loss_pct: r.loss_pct,
            failed_joins: r.joins.failed,
            generator_cores: g.map_or(0.0, |g| g.cpu_cores),
            generator_us_per_packet: g.map_or(0.0, |g| g.us_per_received_packet),
            verdict: judge(r, server_cores),
        }
    }
}

/// Where the search starts and how long it may go on.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Out-pps the first step asks.
    pub start_pps: f64,
    /// Steps at most.
    pub max_steps: usize,
    /// Cores the server may use (1 when pinned).
    pub server_cores: f64,
}

/// The search's result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Search {
    /// Every step, in order.
    pub steps: Vec<Step>,
    /// The highest step that passed.
    pub best: Option<Step>,
    /// Why the search ended.
    pub ended: String,
}

/// Searches the ladder, running each step with `run` (its error ends the search).
pub fn search<E>(
    ladder: &Ladder,
    limits: Limits,
    mut run: impl FnMut(&Scenario) -> Result<Report, E>,
) -> Result<Search, E> {
    let mut steps: Vec<Step> = Vec::new();
    let mut best: Option<Step> = None;
    let mut bad_pps: Option<f64> = None;
    let mut target = limits.start_pps;
    let ended = loop {
        if steps.len() >= limits.max_steps {
            break format!("{} steps done", limits.max_steps);
        }
        let s = ladder.at(target);
        let tried = |st: &Step| st.rooms == s.rooms && st.subscribers == s.subscribers;
        if steps.iter().any(tried) {
            break "no configuration on the ladder between the last passing and failing steps"
                .to_string();
        }
        let step = Step::of(&run(&s)?, limits.server_cores);
        let verdict = step.verdict;
        let asked = step.asked_pps;
        steps.push(step.clone());
        match verdict {
            Verdict::Saturated => {
                best = Some(step);
                break "the server's core is saturated".to_string();
            }
            Verdict::GeneratorBound => break "the generator was the bottleneck".to_string(),
            Verdict::Sustained => best = Some(step),
            Verdict::Lossy | Verdict::Incomplete => bad_pps = Some(asked),
        }
        let good_pps = best.as_ref().map(|b| b.asked_pps);
        target = match (good_pps, bad_pps) {
            (Some(_), None) => asked * 2.0,
            (None, Some(bad)) => bad / 2.0,
            (Some(good), Some(bad)) => {
                if bad <= good * PRECISION {
                    break format!(
                        "bracketed: passed at {good:.0} pkt/s asked, failed at {bad:.0}"
                    );
                }
                (good * bad).sqrt()
            }
            (None, None) => unreachable!("every step passes or fails"),
        };
        if target < 1.0 {
            break "even the smallest step failed".to_string();
        }
    };
    Ok(Search { steps, best, ended })
}

/// The half-load run: at half the server's maximum, the server's latency against the reflector's
/// floor at the same load.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HalfLoad {
    /// The server's run.
    pub server: Step,
    /// The reflector's run at the same configuration (none when the server is the reflector).
    pub reflector: Option<Step>,
    /// Server p99 minus reflector p99, µs: the latency the server adds.
    pub added_p99_us: Option<i64>,
}

impl HalfLoad {
    /// From the two runs' figures.
    pub fn new(server: Step, reflector: Option<Step>) -> HalfLoad {
        let added_p99_us = reflector
            .as_ref()
            .map(|r| server.p99_us as i64 - r.p99_us as i64);
        HalfLoad {
            server,
            reflector,
            added_p99_us,
        }
    }
}

/// Everything `--find-max` found, for `--json` and the table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FindMax {
    /// The preset or scenario name.
    pub scenario: String,
    /// The server under test.
    pub target: String,
    /// What was pinned where.
    pub pinning: Option<String>,
    /// The search.
    pub search: Search,
    /// The half-load run, when the search found a maximum.
    pub half_load: Option<HalfLoad>,
}

impl FindMax {
    /// A human-readable summary: every step, the maximum, the half-load line.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "find-max: {} on {}", self.scenario, self.target);
        if let Some(p) = &self.pinning {
            let _ = writeln!(out, "pinning: {p}");
        }
        let _ = writeln!(
            out,
            "{:>5} {:>5} {:>6} {:>9} {:>9} {:>6} {:>10} {:>7} {:>8} {:>8} {:>8} {:>7} {:>6} {:>7}  verdict",
            "rooms", "subs", "part.", "asked/s", "out/s", "srv", "pkt/s/core", "µs/pkt", "p50 µs", "p99 µs", "KiB/leg", "loss %", "gen", "gen µs"
        );
        for s in &self.search.steps {
            let _ = writeln!(out, "{}", step_line(s));
        }
        let _ = writeln!(out, "ended: {}", self.search.ended);
        match &self.search.best {
            Some(b) => {
                let _ = writeln!(
                    out,
                    "maximum sustained: {:.0} out pkt/s at {:.0} % of the server's core = {:.0} pkt/s per core, \
                     {:.2} µs/pkt, p50 {} µs, p99 {} µs, {:.0} KiB per leg; generator {:.2} µs per received packet",
                    b.out_pps,
                    b.server_cores * 100.0,
                    b.out_pps_per_core,
                    b.server_us_per_packet,
                    b.p50_us,
                    b.p99_us,
                    b.rss_per_leg_kib,
                    b.generator_us_per_packet
                );
                if b.verdict != Verdict::Saturated {
                    let _ = writeln!(
                        out,
                        "  (the server's core was not saturated there: the per-core figure is extrapolated)"
                    );
                }
            }
            None => {
                let _ = writeln!(out, "no step passed");
            }
        }
        if let Some(h) = &self.half_load {
            let _ = writeln!(
                out,
                "half load: {:.0} out pkt/s ({} rooms x {} subscribers): p99 {} µs, p50 {} µs, loss {:.3} %",
                h.server.out_pps, h.server.rooms, h.server.subscribers, h.server.p99_us, h.server.p50_us, h.server.loss_pct
            );
            if let (Some(r), Some(added)) = (&h.reflector, h.added_p99_us) {
                let _ = writeln!(
                    out,
                    "  reflector at the same load: p99 {} µs: added p99 {added} µs",
                    r.p99_us
                );
            }
        }
        out
    }
}

fn step_line(s: &Step) -> String {
    format!(
        "{:>5} {:>5} {:>6} {:>9.0} {:>9.0} {:>5.0}% {:>10.0} {:>7.2} {:>8} {:>8} {:>8.0} {:>7.3} {:>6.2} {:>7.2}  {:?}",
        s.rooms,
        s.subscribers,
        s.participants,
        s.asked_pps,
        s.out_pps,
        s.server_cores * 100.0,
        s.out_pps_per_core,
        s.server_us_per_packet,
        s.p50_us,
        s.p99_us,
        s.rss_per_leg_kib,
        s.loss_pct,
        s.generator_cores,
        s.generator_us_per_packet,
        s.verdict
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ladder_fills_rooms_with_subscribers_before_adding_rooms() {
        let ladder = Ladder::new(Scenario::preset("livestream").unwrap());
        let one = Ladder::new(Scenario::preset("livestream").unwrap()).at(1.0);
        assert_eq!((one.rooms, one.subscribers), (1, 1));
        let per_viewer = one.expected_out_pps();
        let s = ladder.at(per_viewer * 10.0);
        assert_eq!((s.rooms, s.subscribers), (1, 10));
        // More than one room's worth: rooms are added and the viewers spread evenly.
        let s = ladder.at(per_viewer * 100.0);
        assert_eq!(s.rooms, 2);
        assert_eq!(s.subscribers, 50);
        assert!(s.publishers + s.subscribers <= ROOM_CAPACITY);
        assert!(s.expected_out_pps() >= per_viewer * 100.0 - 1e-6);
        let s = ladder.at(per_viewer * 1000.0);
        assert!(s.publishers + s.subscribers <= ROOM_CAPACITY, "{s:?}");
        assert!(s.expected_out_pps() >= per_viewer * 1000.0 - 1e-6);
        // Bigger steps ramp up longer.
        assert!(s.ramp_up_s > one.ramp_up_s);
    }

    #[test]
    fn meetings_grow_by_rooms() {
        let ladder = Ladder::new(Scenario::preset("meeting-10").unwrap());
        let one = ladder.at(1.0);
        assert_eq!((one.rooms, one.subscribers, one.publishers), (1, 0, 10));
        let s = ladder.at(one.expected_out_pps() * 3.5);
        assert_eq!((s.rooms, s.subscribers), (4, 0));
    }

    /// A fake server that sustains up to `max_pps` asked and saturates its core from `full_pps`.
    fn fake(max_pps: f64, full_pps: f64) -> impl FnMut(&Scenario) -> Result<Report, ()> {
        move |s: &Scenario| {
            let asked = s.expected_out_pps();
            Ok(fake_report(s, asked, asked > max_pps, asked >= full_pps))
        }
    }

    fn fake_report(s: &Scenario, asked: f64, lossy: bool, full: bool) -> Report {
        Report {
            scenario: s.clone(),
            target: "fake".into(),
            pinning: None,
            settled: true,
            window_s: 1.0,
            participants: u64::from(s.stable_participants()),
            legs: 0,
            sent_packets: 1000,
            expected_packets: 1000,
            received_packets: if lossy { 900 } else { 1000 },
            lost_packets: if lossy { 100 } else { 0 },
            loss_pct: if lossy { 10.0 } else { 0.0 },
            out_pps: asked,
            out_payload_bps: 0.0,
            server_forwarded: None,
            server_out_pps: None,
            scenario_out_pps: asked,
            latency_us: Default::default(),
            audio_latency_us: Default::default(),
            video_latency_us: Default::default(),
            joins: Default::default(),
            server: Some(crate::report::ServerUsage {
                cpu_cores: if full { 0.97 } else { 0.5 },
                ..Default::default()
            }),
            generator: None,
            lean_rx: None,
            continuity: Default::default(),
            receivers: Vec::new(),
        }
    }

    #[test]
    fn the_search_doubles_then_bisects_to_the_last_passing_step() {
        let base = Scenario::preset("audio-room").unwrap();
        let ladder = Ladder::new(base);
        let limits = Limits {
            start_pps: 1000.0,
            max_steps: 20,
            server_cores: 1.0,
        };
        let got = search(&ladder, limits, fake(30_000.0, f64::INFINITY)).unwrap();
        let best = got.best.clone().expect("a passing step");
        assert!(best.asked_pps <= 30_000.0, "{got:?}");
        assert!(best.asked_pps > 30_000.0 / PRECISION / 1.1, "{got:?}");
        assert!(got.steps.iter().any(|s| s.verdict == Verdict::Lossy));
        assert!(got.steps.len() < 20, "{}", got.steps.len());
    }

    #[test]
    fn a_step_its_publishers_could_not_send_is_the_generators_limit() {
        let s = Scenario::preset("livestream").unwrap();
        let mut r = fake_report(&s, s.expected_out_pps(), false, false);
        assert_eq!(judge(&r, 1.0), Verdict::Sustained);
        r.out_pps = s.expected_out_pps() * 0.5;
        assert_eq!(judge(&r, 1.0), Verdict::GeneratorBound);
        // With loss above the limit the shortfall is the server's.
        r.loss_pct = 5.0;
        assert_eq!(judge(&r, 1.0), Verdict::Lossy);
    }

    #[test]
    fn a_saturated_core_ends_the_search_at_once() {
        let ladder = Ladder::new(Scenario::preset("livestream").unwrap());
        let limits = Limits {
            start_pps: 1000.0,
            max_steps: 20,
            server_cores: 1.0,
        };
        let got = search(&ladder, limits, fake(f64::INFINITY, 5000.0)).unwrap();
        let last = got.steps.last().unwrap();
        assert_eq!(last.verdict, Verdict::Saturated);
        assert_eq!(got.best.as_ref(), Some(last));
        assert_eq!(got.ended, "the server's core is saturated");
    }

    #[test]
    fn failing_from_the_start_halves_the_load() {
        let ladder = Ladder::new(Scenario::preset("livestream").unwrap());
        let limits = Limits {
            start_pps: 100_000.0,
            max_steps: 6,
            server_cores: 1.0,
        };
        let got = search(&ladder, limits, fake(20_000.0, f64::INFINITY)).unwrap();
        assert!(got.steps[0].verdict == Verdict::Lossy);
        assert!(got.steps[1].asked_pps < got.steps[0].asked_pps);
        assert!(got.best.is_some_and(|b| b.asked_pps <= 20_000.0));
    }
}
