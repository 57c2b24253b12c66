//! Stopping a whole core: what the shell does once when the server shuts down.

use std::time::Instant;

use super::Core;

impl Core {
    /// Removes every member and every plain RTP leg, each the way it goes when it leaves or is
    /// removed through the API: subscriptions are detached, outputs closed (the shell gets
    /// [`super::Action::PlainOutputClosed`] and [`super::Action::PeerClosed`] for each), so
    /// whatever ends with a member or a leg ends cleanly here too. Members are not told: the
    /// signaling layer told every client the server is stopping before this runs.
    pub fn shutdown(&mut self, now: Instant) {
        for id in self.members.ids() {
            self.remove_peer(now, id, None);
        }
        for output in self.output_infos() {
            // Outputs of ingests and members went with them; the rest go here. A missing one was
            // closed by a removal above, which is what was wanted.
            let _ = self.remove_output(output.id);
        }
        for ingest in self.ingest_infos() {
            let _ = self.remove_ingest(now, ingest.id);
        }
        self.drive(now);
    }
}
