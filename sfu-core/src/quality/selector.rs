//! Per-leg layer selection: which layer of a video track one subscriber receives. The allocation
//! sets a target; the switch happens at the next keyframe of the target layer, so the
//! subscriber's decoder never gets a delta frame it has no reference for. Pausing (a hidden tile)
//! takes effect at once.
//!
//! A scalable (SVC) track's layers are nested instead: spatial layer `n` is forwarded with every
//! layer below it, in one RTP stream. Its leg switches at picture starts
//! ([`LayerSelector::on_picture`]): up only at a keyframe (the new layer's frames predict from
//! its own earlier frames, which the leg did not forward), down at any picture (the lower
//! layers' references were all forwarded).

/// The layer one leg forwards and the layer it is switching to.
#[derive(Debug, Clone, Default)]
pub struct LayerSelector {
    /// The layer forwarded now; `None` forwards nothing.
    current: Option<u8>,
    /// The layer wanted; `None` pauses the leg.
    target: Option<u8>,
    /// Switches made (a resume after a pause counts).
    pub switches: u64,
    /// The track's layers are nested spatial layers (SVC), switched by [`Self::on_picture`].
    nested: bool,
    /// The highest temporal layer of a scalable stream forwarded now; `None`: all.
    temporal: Option<u8>,
    /// The highest temporal layer wanted; `None`: all.
    temporal_target: Option<u8>,
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

    /// Whether the leg carries a scalable (SVC) stream: it has seen one of its pictures.
    pub fn is_scalable(&self) -> bool {
        self.nested
    }

    /// The layer wanted.
    pub fn target(&self) -> Option<u8> {
        self.target
    }

    /// Whether the leg waits for a keyframe of its target (the caller asks the publisher for one).
    pub fn awaits_keyframe(&self) -> bool {
        match (self.target, self.current) {
            (None, _) => false,
            // Down in a nested stream happens at the next picture, without a keyframe.
            (Some(t), Some(c)) if self.nested => t > c,
            (t, c) => t != c,
        }
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

impl LayerSelector {
    /// Decides at the start of a picture of a scalable (SVC) track (`keyframe`: the picture is
    /// one) which spatial layers the leg forwards from this picture on. Returns `Switch` when
    /// it starts forwarding after forwarding nothing (the caller resyncs the numbering),
    /// `Forward` when it forwards this picture, `Drop` when it forwards nothing.
    pub fn on_picture(&mut self, keyframe: bool) -> Decision {
        self.nested = true;
        let resumed = match (self.target, self.current) {
            (Some(t), Some(c)) if t < c || (t > c && keyframe) => {
                self.current = Some(t);
                self.switches += 1;
                false
            }
            (Some(t), None) if keyframe => {
                self.current = Some(t);
                self.switches += 1;
                true
            }
            _ => false,
        };
        match self.current {
            None => Decision::Drop,
            Some(_) if resumed => Decision::Switch,
            Some(_) => Decision::Forward,
        }
    }

    /// Whether the leg forwards spatial layer `layer` of a scalable track: every layer up to
    /// the current one.
    pub fn forwards_nested(&self, layer: u8) -> bool {
        self.current.is_some_and(|c| layer <= c)
    }

    /// Caps the temporal layers of a scalable stream the leg forwards (`None`: all); true when
    /// it changed.
    pub fn set_temporal_target(&mut self, target: Option<u8>) -> bool {
        let changed = self.temporal_target != target;
        self.temporal_target = target;
        changed
    }

    /// The highest temporal layer forwarded now (`None`: all).
    pub fn temporal(&self) -> Option<u8> {
        self.temporal
    }

    /// The temporal layer cap wanted (`None`: all).
    pub fn temporal_target(&self) -> Option<u8> {
        self.temporal_target
    }

    /// Decides at the start of a picture of temporal layer `temporal` (`switch_up`: the stream
    /// allows switching up to that layer here; `keyframe`: the picture is one) whether the leg
    /// forwards the picture's temporal layer. Down takes effect at once (no lower layer
    /// references a higher one); up waits for a switching point of the layer, or a keyframe.
    pub fn on_temporal(&mut self, temporal: u8, switch_up: bool, keyframe: bool) -> bool {
        // u8::MAX stands for every layer.
        let wanted = self.temporal_target.unwrap_or(u8::MAX);
        let cap = self.temporal.unwrap_or(u8::MAX);
        let cap = if keyframe || wanted < cap {
            wanted
        } else if switch_up && temporal > cap {
            temporal.min(wanted)
        } else {
            cap
        };
        self.temporal = (cap != u8::MAX).then_some(cap);
        self.forwards_temporal(temporal)
    }

    /// Whether the leg forwards temporal layer `temporal` now.
    pub fn forwards_temporal(&self, temporal: u8) -> bool {
        self.temporal.is_none_or(|cap| temporal <= cap)
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
    fn nested_layers_go_up_at_keyframes_and_down_at_any_picture() {
        let mut s = LayerSelector::new();
        // Nothing before a target, nor before a keyframe.
        assert_eq!(s.on_picture(true), Decision::Drop);
        s.set_target(Some(1));
        assert_eq!(s.on_picture(false), Decision::Drop);
        assert!(s.awaits_keyframe());
        assert_eq!(s.on_picture(true), Decision::Switch);
        assert!(s.forwards_nested(0) && s.forwards_nested(1) && !s.forwards_nested(2));
        // Up waits for a keyframe, and asks for one.
        s.set_target(Some(2));
        assert!(s.awaits_keyframe());
        assert_eq!(s.on_picture(false), Decision::Forward);
        assert!(!s.forwards_nested(2));
        assert_eq!(s.on_picture(true), Decision::Forward);
        assert!(s.forwards_nested(2));
        // Down at the next picture, no keyframe asked for.
        s.set_target(Some(0));
        assert!(!s.awaits_keyframe());
        assert!(s.forwards_nested(2), "the picture under way is finished");
        assert_eq!(s.on_picture(false), Decision::Forward);
        assert!(s.forwards_nested(0) && !s.forwards_nested(1));
        assert_eq!(s.switches, 3);
        // A hidden tile stops it at once; showing it again waits for a keyframe.
        s.set_target(None);
        assert!(!s.forwards_nested(0));
        s.set_target(Some(0));
        assert_eq!(s.on_picture(false), Decision::Drop);
        assert_eq!(s.on_picture(true), Decision::Switch);
    }

    #[test]
    fn temporal_layers_go_down_at_once_and_up_at_switching_points() {
        let mut s = LayerSelector::new();
        assert!(s.on_temporal(2, false, false), "all layers until capped");
        s.set_temporal_target(Some(0));
        assert!(!s.on_temporal(2, false, false), "down at once");
        assert!(!s.on_temporal(1, true, false));
        assert!(s.on_temporal(0, false, false));
        // Up to T1 (the cap is lifted): at T1's switching point, then T2's.
        s.set_temporal_target(None);
        assert!(!s.on_temporal(2, false, false), "no switching point");
        assert!(!s.on_temporal(1, false, false), "no switching point");
        assert!(s.on_temporal(1, true, false));
        assert!(!s.on_temporal(2, false, false));
        assert!(s.on_temporal(2, true, false));
        assert!(s.forwards_temporal(2));
        // A keyframe takes the target at once.
        s.set_temporal_target(Some(1));
        assert!(!s.on_temporal(2, true, false), "capped below");
        s.set_temporal_target(None);
        assert!(s.on_temporal(0, false, true));
        assert!(s.forwards_temporal(2));
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
}
