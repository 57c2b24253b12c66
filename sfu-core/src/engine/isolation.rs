//! Panic isolation: a panic while handling one member (a bug here or in a dependency: str0m,
//! a codec parser) removes that member, is logged and counted (`peer_panicked`), and does not
//! take down the worker or the other rooms on it. A panic while handling a trunk closes that
//! trunk the same way (counted alike): its far tracks leave, and the end that dials sets it up
//! again.
//!
//! The boundaries are the member's share of each input: a signaling message or join, a datagram
//! for its session, its timers, polling its session. After a panic its state may be half
//! updated, so it is removed without asking its session anything ([`Core::remove_poisoned`]).
//!
//! Tests trigger a panic with a chat line of [`PANIC_FOR_TESTS`]; the hook exists only in this
//! crate's unit tests (`cfg(test)`), never in a build that serves the network.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Instant;

use tracing::error;

use super::Core;
use crate::counters::DropReason;
use crate::protocol::{ErrorCode, PeerId};

/// The chat text that makes the core panic, in unit tests only.
#[cfg(test)]
pub(super) const PANIC_FOR_TESTS: &str = "edge-sfu test: panic while handling this member";

/// The mid of a trunk `mute` message that makes the core panic, in unit tests only.
#[cfg(test)]
pub(super) const TRUNK_PANIC_MID_FOR_TESTS: &str = "panic-for-tests";

/// Panics on [`PANIC_FOR_TESTS`] (unit tests only).
#[cfg(test)]
pub(super) fn panic_if_asked(msg: &crate::protocol::ClientMessage) {
    if matches!(msg, crate::protocol::ClientMessage::Chat { text } if text == PANIC_FOR_TESTS) {
        panic!("asked to panic by a test");
    }
}

impl Core {
    /// Runs `work`, member `id`'s share of an input; if it panics, `id` is removed instead of
    /// the panic unwinding through the worker.
    pub(super) fn isolated(&mut self, now: Instant, id: PeerId, work: impl FnOnce(&mut Core)) {
        if catch_unwind(AssertUnwindSafe(|| work(self))).is_ok() {
            return;
        }
        self.counters.drop(DropReason::PeerPanicked);
        error!(
            peer = id,
            "panic while handling this member (see the panic message above): removing it"
        );
        self.remove_poisoned(now, id);
    }

    /// Runs `work`, trunk `id`'s share of an input; if it panics, the trunk is closed without
    /// asking its session anything, instead of the panic unwinding through the worker.
    pub(super) fn isolated_trunk(
        &mut self,
        now: Instant,
        id: crate::trunk::TrunkId,
        work: impl FnOnce(&mut Core),
    ) {
        if catch_unwind(AssertUnwindSafe(|| work(self))).is_ok() {
            return;
        }
        self.counters.drop(DropReason::PeerPanicked);
        self.reset_scratch();
        let Some(node) = self.trunks.get(id).map(|t| t.node.clone()) else {
            return;
        };
        error!(
            node,
            "panic while handling this trunk (see the panic message above): closing it"
        );
        if catch_unwind(AssertUnwindSafe(|| self.forget_poisoned_trunk(now, &node))).is_err() {
            error!(node, "closing the trunk panicked too");
        }
    }

    /// Clears what a panic may have left half used: events polled from a session, the receive
    /// buffer taken out for a packet.
    fn reset_scratch(&mut self) {
        self.events.clear();
        if self.rx_payload.len() < super::RX_PAYLOAD_BYTES {
            self.rx_payload = vec![0; super::RX_PAYLOAD_BYTES];
        }
    }

    /// Removes member `id` after a panic: told with an `error`, taken out of the rooms, routes
    /// and timers like any leaving member, but its session is not asked to close (it may be in
    /// any state), and dropping it is guarded as well.
    fn remove_poisoned(&mut self, now: Instant, id: PeerId) {
        // Events polled from the session before the panic belong to it; the receive buffer may
        // have been taken out for its packet.
        self.reset_scratch();
        let Some(peer) = self.members.remove(id) else {
            return;
        };
        self.error(
            id,
            ErrorCode::Unavailable,
            "the server failed while handling your session: join again",
        );
        self.forget_member(now, id, &peer, "the server panicked while handling it");
        if catch_unwind(AssertUnwindSafe(move || drop(peer))).is_err() {
            error!(peer = id, "dropping the member's session panicked too");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::CoreConfig;
    use crate::engine::Action;
    use crate::permissions::Permissions;
    use crate::protocol::{ClientMessage, ServerMessage, PROTOCOL_VERSION};

    fn join(core: &mut Core, now: Instant, id: PeerId, room: &str) {
        let msg = ClientMessage::Join {
            version: PROTOCOL_VERSION,
            room: room.into(),
            name: format!("member {id}"),
            capacity: None,
            token: None,
        };
        core.handle_join(now, id, msg, Permissions::ALL);
    }

    fn signals(core: &mut Core) -> Vec<(PeerId, ServerMessage)> {
        let mut out = Vec::new();
        while let Some(action) = core.poll_output() {
            if let Action::Signal(peer, msg) = action {
                out.push((peer, msg));
            }
        }
        out
    }

    /// Asserts that `core` told `joined` it joined and `member` that `joined` did: the worker
    /// still serves its rooms.
    fn assert_joined_and_seen(core: &mut Core, joined: PeerId, member: PeerId) {
        let out = signals(core);
        assert!(out
            .iter()
            .any(|(p, m)| *p == joined && matches!(m, ServerMessage::Joined { .. })));
        assert!(out.iter().any(|(p, m)| *p == member
            && matches!(m, ServerMessage::PeerJoined { peer } if peer.id == joined)));
    }

    #[test]
    fn a_panic_removes_its_member_only() {
        let now = Instant::now();
        let mut core = Core::new(CoreConfig::default());
        join(&mut core, now, 1, "a");
        join(&mut core, now, 2, "a");
        join(&mut core, now, 3, "b");
        signals(&mut core);

        let panic = ClientMessage::Chat {
            text: PANIC_FOR_TESTS.into(),
        };
        core.handle_message(now, 1, panic);

        assert!(
            !core.has_peer(1),
            "the member whose handling panicked is gone"
        );
        assert!(core.has_peer(2) && core.has_peer(3));
        assert_eq!(core.counters().drops(DropReason::PeerPanicked), 1);
        let out = signals(&mut core);
        assert!(out.iter().any(|(p, m)| *p == 1
            && matches!(
                m,
                ServerMessage::Error {
                    code: ErrorCode::Unavailable,
                    ..
                }
            )));
        assert!(out
            .iter()
            .any(|(p, m)| *p == 2 && matches!(m, ServerMessage::PeerLeft { peer_id: 1 })));

        // The worker goes on: the others are served, and room "a" takes a new member.
        core.handle_message(
            now,
            2,
            ClientMessage::Chat {
                text: "still here".into(),
            },
        );
        join(&mut core, now, 4, "a");
        assert_joined_and_seen(&mut core, 4, 2);
        assert_eq!(core.peer_count(), 3);
    }

    /// Two cores whose trunk is up (ICE and DTLS): `(a, b, now)`.
    fn connected_trunk() -> (Core, Core, Instant) {
        use crate::trunk::{TrunkEndpoint, TrunkMedia};
        let config = |ip: [u8; 4], name: &str| CoreConfig {
            candidates: vec![std::net::SocketAddr::from((ip, 4000))],
            trunk_endpoint: Some(TrunkEndpoint {
                name: name.into(),
                advertised: None,
                media: TrunkMedia::Srtp,
            }),
            ..CoreConfig::default()
        };
        let mut now = Instant::now();
        let mut a = Core::new(config([127, 0, 0, 1], "a/0"));
        let mut b = Core::new(config([127, 0, 0, 2], "b/0"));
        let offer = a.open_trunk(now, "b/0").unwrap();
        let answer = b.accept_trunk(now, "a/0", &offer).unwrap();
        a.trunk_answer(now, "b/0", &answer).unwrap();
        for _ in 0..500 {
            exchange(&mut a, &mut b, now);
            let up = |c: &Core| c.trunk_infos().iter().any(|t| t.connected);
            if up(&a) && up(&b) {
                return (a, b, now);
            }
            now += std::time::Duration::from_millis(10);
            a.handle_timeout(now);
            b.handle_timeout(now);
        }
        panic!("the trunk did not come up");
    }

    /// Moves datagrams between two cores until none moves.
    fn exchange(a: &mut Core, b: &mut Core, now: Instant) {
        while pass(a, b, now) | pass(b, a, now) {}
    }

    /// Moves what `from` has to send to `to`; false when it had nothing.
    fn pass(from: &mut Core, to: &mut Core, now: Instant) -> bool {
        let mut moved = false;
        while let Some(action) = from.poll_output() {
            if let Action::Transmit(t) = action {
                to.handle_datagram(now, t.source, t.destination, &t.contents);
                moved = true;
            }
        }
        moved
    }

    #[test]
    fn a_panic_while_handling_a_trunk_closes_that_trunk_only() {
        let (mut a, mut b, mut now) = connected_trunk();
        join(&mut b, now, 1, "kitchen");
        signals(&mut b);
        let id = a.trunks.ids()[0];
        let trunk = a.trunks.get_mut(id).unwrap();
        trunk.send_control(&crate::trunk::ControlMessage::Mute {
            peer: 9,
            mid: TRUNK_PANIC_MID_FOR_TESTS.into(),
            muted: true,
        });
        trunk.dirty = true;
        a.drive(now);
        // The message waits for the control channel, which opens within a few round trips.
        for _ in 0..300 {
            exchange(&mut a, &mut b, now);
            if b.trunk_infos().is_empty() {
                break;
            }
            now += std::time::Duration::from_millis(10);
            a.handle_timeout(now);
            b.handle_timeout(now);
        }
        assert!(
            b.trunk_infos().is_empty(),
            "b closed the trunk it panicked on"
        );
        assert_eq!(b.counters().drops(DropReason::PeerPanicked), 1);
        assert_eq!(a.trunk_infos().len(), 1, "a's end is untouched");
        // The worker goes on: its member is served, and a new one joins.
        join(&mut b, now, 2, "kitchen");
        assert_joined_and_seen(&mut b, 2, 1);
    }
}
