//! The Redis keys and the pub/sub channel of the directory. All start with [`PREFIX`], so one
//! Redis (database) can hold other things too.

/// What every key of the directory starts with.
pub const PREFIX: &str = "edge-sfu";

/// The set of node ids that registered (a node whose record expired is taken out by the first
/// node that notices).
pub fn nodes() -> String {
    format!("{PREFIX}:nodes")
}

/// Node `id`'s record (JSON [`crate::record::NodeRecord`]), with a TTL its heartbeat refreshes:
/// when it is gone, so is the node.
pub fn node(id: &str) -> String {
    format!("{PREFIX}:node:{id}")
}

/// Node `id`'s members: a hash from member id to JSON [`crate::record::MemberRecord`], with the
/// node record's TTL.
pub fn members(id: &str) -> String {
    format!("{PREFIX}:node:{id}:members")
}

/// The pub/sub channel every node publishes its room events on (JSON
/// [`crate::record::NodeEvent`]).
pub fn events() -> String {
    format!("{PREFIX}:events")
}

/// The pub/sub channel trunk descriptions for node `id`'s workers are published on (JSON
/// [`sfu_core::trunk::TrunkSignal`]); only that node subscribes to it.
pub fn trunk_signals(id: &str) -> String {
    format!("{PREFIX}:node:{id}:trunk")
}

/// The room tokens revoked on any node: a hash from `jti` to JSON
/// [`crate::record::RevokedToken`]; a node that reads an entry past its end deletes it.
pub fn revoked() -> String {
    format!("{PREFIX}:revoked")
}

/// The pub/sub channel every node publishes its revocations on (JSON
/// [`crate::record::NodeRevocation`]).
pub fn revocations() -> String {
    format!("{PREFIX}:revocations")
}
