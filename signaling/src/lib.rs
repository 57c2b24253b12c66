//! HTTP + WebSocket signaling server of edge-sfu.
