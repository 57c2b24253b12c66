//! Per-leg layer selection: which layer of a video track one subscriber receives. The allocation
//! sets a target; the switch happens at the next keyframe of the target layer, so the
//! subscriber's decoder never gets a delta frame it has no reference for. Pausing (a hidden tile)
//! takes effect at once.

/// The layer one leg forwards and the layer it is switching to.
#[derive(Debug, Clone, Default)]
pub struct LayerSelector {
    /// The layer forwarded now; `None` forwards nothing.
    current: Option<u8>,
    /// The layer wanted; `None` pauses the leg.
    target: Option<u8>,
    /// Switches made (a resume after a pause counts).
    pub switches: u64,
}

impl LayerSelector {
    /// A leg that forwards nothing until a target is set and its keyframe arrives.
    pub fn new() -> Self {
        Self::default()
    }

    /// The layer forwarded now.
    pub fn current(&self) -> Option<u8> {
        self.current
    }

    /// The layer wanted.
    pub fn target(&self) -> Option<u8> {
        self.target
    }

    /// Whether the leg waits for a keyframe of its target (the caller asks the publisher for one).
    pub fn awaits_keyframe(&self) -> bool {
        self.target.is_some() && self.target != self.current
    }

    /// Sets the wanted layer; true when it changed.
    pub fn set_target(&mut self, target: Option<u8>) -> bool {
        if target.is_none() {
            self.current = None;
        }
        let changed = self.target != target;
        self.target = target;
        changed
    }

    /// Stops forwarding the current layer before the target's keyframe arrives: for a downgrade
    /// forced by the link, where every packet more of the old layer deepens the congestion that
    /// delays the keyframe the switch waits for.
    pub fn drop_current(&mut self) {
        if self.awaits_keyframe() {
            self.current = None;
        }
    }

    /// Forgets the layer forwarded, keeping the target: after the track's layers were renumbered,
    /// the leg forwards nothing until a keyframe of its target arrives.
    pub fn restart(&mut self) {
        self.current = None;
    }

    /// Decides on one packet of `layer` (`keyframe`: it starts a keyframe): true to forward it.
    /// Returns `Switch` when this packet is the first of a new layer (the caller resyncs the
    /// sequence and timestamp rewriting).
    pub fn on_packet(&mut self, layer: u8, keyframe: bool) -> Decision {
        if keyframe && self.awaits_keyframe() && self.target == Some(layer) {
            self.current = self.target;
            self.switches += 1;
            return Decision::Switch;
        }
        if self.current == Some(layer) {
            Decision::Forward
        } else {
            Decision::Drop
        }
    }
}

/// What to do with one packet on one leg.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Forward it.
    Forward,
    /// Forward it: it is the first of the layer switched to.
    Switch,
    /// Not for this leg.
    Drop,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn switches_only_at_a_keyframe_of_the_target() {
        let mut s = LayerSelector::new();
        // Nothing until a target is set.
        assert_eq!(s.on_packet(0, true), Decision::Drop);
        assert!(s.set_target(Some(2)));
        assert_eq!(s.on_packet(2, false), Decision::Drop);
        // A keyframe of another layer does not switch.
        assert_eq!(s.on_packet(1, true), Decision::Drop);
        assert_eq!(s.on_packet(2, true), Decision::Switch);
        assert_eq!(s.on_packet(2, false), Decision::Forward);
        assert_eq!(s.on_packet(0, false), Decision::Drop);
        // Down: the old layer flows until the new one's keyframe.
        assert!(s.set_target(Some(0)));
        assert!(s.awaits_keyframe());
        assert_eq!(s.on_packet(2, false), Decision::Forward);
        assert_eq!(s.on_packet(0, false), Decision::Drop);
        assert_eq!(s.on_packet(0, true), Decision::Switch);
        assert_eq!(s.on_packet(2, true), Decision::Drop);
        assert_eq!(s.current(), Some(0));
        assert_eq!(s.switches, 2);
        assert!(!s.set_target(Some(0)));
    }

    #[test]
    fn a_forced_downgrade_drops_the_old_layer_at_once() {
        let mut s = LayerSelector::new();
        s.set_target(Some(2));
        s.on_packet(2, true);
        s.set_target(Some(0));
        s.drop_current();
        assert_eq!(s.on_packet(2, false), Decision::Drop);
        assert_eq!(s.on_packet(0, true), Decision::Switch);
        // Without a pending switch there is nothing to drop.
        s.drop_current();
        assert_eq!(s.on_packet(0, false), Decision::Forward);
    }

    #[test]
    fn pausing_is_immediate_and_resuming_waits_for_a_keyframe() {
        let mut s = LayerSelector::new();
        s.set_target(Some(1));
        s.on_packet(1, true);
        s.set_target(None);
        assert_eq!(s.current(), None);
        assert!(!s.awaits_keyframe());
        assert_eq!(s.on_packet(1, true), Decision::Drop);
        s.set_target(Some(1));
        assert_eq!(s.on_packet(1, false), Decision::Drop);
        assert_eq!(s.on_packet(1, true), Decision::Switch);
    }

    #[test]
    fn a_restart_waits_for_a_keyframe_of_the_same_target() {
        let mut s = LayerSelector::new();
        s.set_target(Some(0));
        s.on_packet(0, true);
        // The layers were renumbered: index 0 names another encoding now.
        s.restart();
        assert_eq!(s.target(), Some(0));
        assert!(s.awaits_keyframe());
        assert_eq!(s.on_packet(0, false), Decision::Drop);
        assert_eq!(s.on_packet(0, true), Decision::Switch);
        assert_eq!(s.on_packet(0, false), Decision::Forward);
    }
}
