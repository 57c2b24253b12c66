//! Panic isolation: a panic while handling one member (a bug here or in a dependency: str0m,
//! a codec parser) removes that member, is logged and counted (`peer_panicked`), and does not
//! take down the worker or the other rooms on it.
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

    /// Removes member `id` after a panic: told with an `error`, taken out of the rooms, routes
    /// and timers like any leaving member, but its session is not asked to close (it may be in
    /// any state), and dropping it is guarded as well.
    fn remove_poisoned(&mut self, now: Instant, id: PeerId) {
        // Events polled from the session before the panic belong to it; the receive buffer may
        // have been taken out for its packet.
        self.events.clear();
        if self.rx_payload.len() < super::RX_PAYLOAD_BYTES {
            self.rx_payload = vec![0; super::RX_PAYLOAD_BYTES];
        }
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
        let out = signals(&mut core);
        assert!(out
            .iter()
            .any(|(p, m)| *p == 4 && matches!(m, ServerMessage::Joined { .. })));
        assert!(out
            .iter()
            .any(|(p, m)| *p == 2 && matches!(m, ServerMessage::PeerJoined { .. })));
        assert_eq!(core.peer_count(), 3);
    }
}
