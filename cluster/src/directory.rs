//! The one task that talks to Redis: it registers the node, keeps its record alive, writes its
//! members as they change, publishes its room events, reads the other nodes' and hands what
//! changed to the workers. Redis going away stops none of that locally: the task keeps the
//! node's members up to date in memory, retries every second, and on return registers again
//! and reads everything (a resynchronisation), so calls never wait for Redis.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use redis::aio::MultiplexedConnection;
use redis::{AsyncCommands, IntoConnectionInfo};
use sfu_core::cluster::ClusterEvent;
use sfu_core::trunk::TrunkSignal;
use sfu_core::RoomEvent;
use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::endpoint;
use crate::keys;
use crate::local::{Change, LocalMembers};
use crate::mirror::Mirror;
use crate::record::{MemberRecord, NodeEvent, NodeRecord, NodeRevocation, RevokedToken};
use crate::view::ClusterView;

/// How long one Redis round trip may take before the connection counts as lost.
const OP_TIMEOUT: Duration = Duration::from_secs(2);
/// The wait between two connection attempts.
const RETRY: Duration = Duration::from_secs(1);

/// How this node joins the cluster.
#[derive(Debug, Clone)]
pub struct ClusterSettings {
    /// `redis://HOST:PORT[/DB]` (a password may be in it).
    pub redis_url: String,
    /// The password, when not in the URL (`--cluster-password-file`).
    pub password: Option<String>,
    /// This node's id (`--node-id`).
    pub node_id: String,
    /// Where clients reach this node's signaling server.
    pub node_url: String,
    /// Where other nodes reach this node for trunks (`--trunk-address`).
    pub trunk_address: String,
    /// How long the node's record lives without a heartbeat (`--cluster-ttl`); the heartbeat
    /// runs three times per TTL.
    pub ttl: Duration,
}

/// Why the directory could not be used.
#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    /// Redis refused or failed a command, or the connection broke.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// Redis did not answer within the time allowed.
    #[error("redis did not answer within {OP_TIMEOUT:?}")]
    Timeout,
    /// The subscription to the other nodes' events ended.
    #[error("the event subscription ended")]
    SubscriptionEnded,
}

/// What this node hands the directory: its workers' room events and trunk descriptions, and the
/// revocations of its HTTP API.
#[derive(Debug)]
pub enum NodeInput {
    /// A room event of worker `worker`: written to Redis and published for the other nodes.
    Room {
        /// The worker's index.
        worker: usize,
        /// What happened.
        event: RoomEvent,
    },
    /// A trunk description for another node's worker: published on that node's channel.
    Trunk(TrunkSignal),
    /// A room token revoked here: kept in Redis until its end and published, so that every
    /// node refuses it.
    Revoked(RevokedToken),
}

/// What the directory hands this node's workers.
#[derive(Debug, Clone)]
pub enum ToWorkers {
    /// What another node did: for every worker (each keeps the members of every room).
    Everyone(ClusterEvent),
    /// A trunk description for worker `.0`.
    One(usize, TrunkSignal),
}

/// Where the directory hands what it has for this node's workers.
pub type Deliver = Box<dyn Fn(ToWorkers) + Send + Sync>;

/// Where the directory applies a revocation another node made: this node's revocation list.
pub type ApplyRevocation = Box<dyn Fn(RevokedToken) + Send + Sync>;

/// The directory task's state.
pub struct Directory {
    settings: ClusterSettings,
    local: LocalMembers,
    mirror: Mirror,
    view: ClusterView,
    events: mpsc::UnboundedReceiver<NodeInput>,
    deliver: Deliver,
    apply_revocation: ApplyRevocation,
    /// The revocations made on this node that are still in force: written again whenever
    /// Redis comes back (it may have lost them).
    revoked_here: Vec<RevokedToken>,
}

impl Directory {
    /// The task for `settings`, reading what the node hands it from `events`, handing what
    /// other nodes did and sent to `deliver`, their revocations to `apply_revocation` and what
    /// it reads to `view`.
    pub fn new(
        settings: ClusterSettings,
        view: ClusterView,
        events: mpsc::UnboundedReceiver<NodeInput>,
        deliver: Deliver,
        apply_revocation: ApplyRevocation,
    ) -> Self {
        Directory {
            local: LocalMembers::new(&settings.node_id),
            mirror: Mirror::new(&settings.node_id),
            settings,
            view,
            events,
            deliver,
            apply_revocation,
            revoked_here: Vec::new(),
        }
    }

    /// Runs until the workers are gone, reconnecting to Redis whenever it is lost.
    pub async fn run(mut self) {
        let mut was_connected = false;
        loop {
            match self.session().await {
                Ok(()) => return,
                Err(e) if was_connected || self.view.connected() => {
                    warn!(error = %e, "cluster directory lost: calls go on, retrying every second");
                }
                Err(e) => warn!(error = %e, "cluster directory unreachable: retrying"),
            }
            was_connected = self.view.connected();
            self.view.set_connected(false);
            let retry = tokio::time::sleep(RETRY);
            tokio::pin!(retry);
            loop {
                tokio::select! {
                    _ = &mut retry => break,
                    event = self.events.recv() => match event {
                        Some(NodeInput::Room { worker, event }) => {
                            self.local.apply(&self.trunk_end(worker), &event);
                        }
                        Some(NodeInput::Trunk(signal)) => {
                            warn!(to = %signal.to, "trunk description dropped: no directory");
                        }
                        Some(NodeInput::Revoked(token)) => self.keep_revocation(token),
                        None => return,
                    },
                }
            }
        }
    }

    /// One connection to Redis, for as long as it works. `Ok` when the workers are gone.
    async fn session(&mut self) -> Result<(), DirectoryError> {
        let mut info = self.settings.redis_url.as_str().into_connection_info()?;
        if let Some(password) = &self.settings.password {
            let redis = info.redis_settings().clone().set_password(password);
            info = info.set_redis_settings(redis);
        }
        let client = redis::Client::open(info)?;
        let mut conn = timed(client.get_multiplexed_async_connection()).await?;
        let pubsub = timed(client.get_async_pubsub()).await?;
        // The sink is kept for as long as the stream is read: the subscription lives with both.
        let (mut sink, mut messages) = pubsub.split();
        timed(sink.subscribe(keys::events())).await?;
        let signals = keys::trunk_signals(&self.settings.node_id);
        timed(sink.subscribe(&signals)).await?;
        let revocations = keys::revocations();
        timed(sink.subscribe(&revocations)).await?;
        self.register(&mut conn).await?;
        self.read_revocations(&mut conn).await?;
        self.view.set_connected(true);
        info!(node = %self.settings.node_id, "registered in the cluster directory");
        let connected_at = Instant::now();
        self.heartbeat(&mut conn, false).await?;
        let mut tick = tokio::time::interval(self.settings.ttl / 3);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    // Right after (re)connecting, other nodes may still be registering again:
                    // a node counts as gone only once this one has been connected a whole TTL.
                    let settled = connected_at.elapsed() >= self.settings.ttl;
                    self.heartbeat(&mut conn, settled).await?;
                }
                message = messages.next() => {
                    let Some(message) = message else {
                        return Err(DirectoryError::SubscriptionEnded);
                    };
                    if message.get_channel_name() == signals {
                        self.on_trunk_signal(message.get_payload_bytes());
                    } else if message.get_channel_name() == revocations {
                        self.on_revocation(message.get_payload_bytes());
                    } else {
                        self.on_published(message.get_payload_bytes());
                    }
                }
                event = self.events.recv() => match event {
                    Some(NodeInput::Room { worker, event }) => {
                        self.publish(&mut conn, worker, event).await?
                    }
                    Some(NodeInput::Trunk(signal)) => self.send_signal(&mut conn, signal).await?,
                    Some(NodeInput::Revoked(token)) => {
                        self.keep_revocation(token.clone());
                        self.share_revocation(&mut conn, token).await?
                    }
                    None => return Ok(()),
                },
            }
        }
    }

    /// Writes the node's record and all its members, replacing whatever an earlier run left,
    /// and its revocations still in force.
    async fn register(&mut self, conn: &mut MultiplexedConnection) -> Result<(), DirectoryError> {
        let id = &self.settings.node_id;
        let members = keys::members(id);
        let mut pipe = redis::pipe();
        pipe.atomic().del(&members).ignore();
        for record in self.local.records() {
            pipe.hset(&members, record.id, json(record)).ignore();
        }
        for token in &self.revoked_here {
            pipe.hset(keys::revoked(), &token.jti, json(token)).ignore();
        }
        pipe.pexpire(&members, self.ttl_ms()).ignore();
        self.write_record(&mut pipe);
        timed(pipe.query_async::<()>(conn)).await
    }

    /// The node's record with its TTL, and its place in the node set.
    fn write_record(&self, pipe: &mut redis::Pipeline) {
        let id = &self.settings.node_id;
        let record = NodeRecord {
            id: id.clone(),
            url: self.settings.node_url.clone(),
            trunk_address: self.settings.trunk_address.clone(),
            peers: self.local.len(),
            rooms: self.local.rooms(),
            draining: self.view.draining(),
        };
        pipe.cmd("SET")
            .arg(keys::node(id))
            .arg(json(&record))
            .arg("PX")
            .arg(self.ttl_ms())
            .ignore();
        pipe.sadd(keys::nodes(), id).ignore();
    }

    /// Refreshes the node's record and members, then reads every node's: hands the differences
    /// to the workers (members of nodes that are gone leave, with `forget_missing`).
    async fn heartbeat(
        &mut self,
        conn: &mut MultiplexedConnection,
        forget_missing: bool,
    ) -> Result<(), DirectoryError> {
        let mut pipe = redis::pipe();
        self.write_record(&mut pipe);
        pipe.pexpire(keys::members(&self.settings.node_id), self.ttl_ms())
            .ignore();
        timed(pipe.query_async::<()>(conn)).await?;

        let ids: Vec<String> = timed(conn.smembers(keys::nodes())).await?;
        let node_keys: Vec<String> = ids.iter().map(|id| keys::node(id)).collect();
        let records: Vec<Option<String>> = if ids.is_empty() {
            Vec::new()
        } else {
            timed(redis::cmd("MGET").arg(&node_keys).query_async(conn)).await?
        };
        let mut live = Vec::new();
        let mut gone = Vec::new();
        for (id, record) in ids.into_iter().zip(records) {
            match record.as_deref().map(serde_json::from_str::<NodeRecord>) {
                Some(Ok(record)) => live.push(record),
                Some(Err(e)) => warn!(node = id, error = %e, "unreadable node record: ignored"),
                None => gone.push(id),
            }
        }
        if forget_missing && !gone.is_empty() {
            timed(conn.srem::<_, _, ()>(keys::nodes(), &gone)).await?;
        }
        let mut pipe = redis::pipe();
        for node in &live {
            pipe.hgetall(keys::members(&node.id));
        }
        let hashes: Vec<HashMap<String, String>> = timed(pipe.query_async(conn)).await?;
        let mut snapshot = HashMap::new();
        for (node, hash) in live.iter().zip(hashes) {
            let members = hash
                .values()
                .filter_map(|v| match serde_json::from_str::<MemberRecord>(v) {
                    Ok(m) => Some(m),
                    Err(e) => {
                        warn!(node = node.id, error = %e, "unreadable member record: ignored");
                        None
                    }
                })
                .collect();
            snapshot.insert(node.id.clone(), members);
        }
        for event in self.mirror.resync(snapshot, forget_missing) {
            (self.deliver)(ToWorkers::Everyone(event));
        }
        self.view.set_nodes(live);
        Ok(())
    }

    /// Writes what a room event of worker `worker` changed and publishes it for the other
    /// nodes.
    async fn publish(
        &mut self,
        conn: &mut MultiplexedConnection,
        worker: usize,
        event: RoomEvent,
    ) -> Result<(), DirectoryError> {
        if matches!(
            event,
            RoomEvent::RoomStarted { .. } | RoomEvent::RoomFinished { .. }
        ) {
            // Rooms are where members are: nothing to write or tell.
            return Ok(());
        }
        let members = keys::members(&self.settings.node_id);
        let mut pipe = redis::pipe();
        let trunk = self.trunk_end(worker);
        match self.local.apply(&trunk, &event) {
            Change::Member(record) => {
                pipe.hset(&members, record.id, json(&record)).ignore();
                pipe.pexpire(&members, self.ttl_ms()).ignore();
            }
            Change::Gone(id) => {
                pipe.hdel(&members, id).ignore();
            }
            Change::Nothing => {}
        }
        let published = NodeEvent {
            node: self.settings.node_id.clone(),
            trunk,
            event,
        };
        pipe.publish(keys::events(), json(&published)).ignore();
        timed(pipe.query_async::<()>(conn)).await
    }

    /// A message on the events channel: another node's room event (or garbage, ignored).
    fn on_published(&mut self, payload: &[u8]) {
        match serde_json::from_slice::<NodeEvent>(payload) {
            Ok(published) => {
                for event in self.mirror.apply(published) {
                    (self.deliver)(ToWorkers::Everyone(event));
                }
            }
            Err(e) => warn!(error = %e, "unreadable cluster event: ignored"),
        }
    }

    /// Publishes a trunk description on the channel of the node it is for. Lost when that node
    /// is not subscribed: the dialling end tries again when its trunk stays silent.
    async fn send_signal(
        &mut self,
        conn: &mut MultiplexedConnection,
        signal: TrunkSignal,
    ) -> Result<(), DirectoryError> {
        let Some((node, _)) = endpoint::parse(&signal.to) else {
            warn!(to = %signal.to, "trunk description for no node: dropped");
            return Ok(());
        };
        let channel = keys::trunk_signals(node);
        timed(conn.publish::<_, _, ()>(channel, json(&signal))).await
    }

    /// A message on this node's trunk channel: a description for one of its workers (or
    /// garbage, ignored).
    fn on_trunk_signal(&mut self, payload: &[u8]) {
        let signal = match serde_json::from_slice::<TrunkSignal>(payload) {
            Ok(signal) => signal,
            Err(e) => return warn!(error = %e, "unreadable trunk description: ignored"),
        };
        match endpoint::parse(&signal.to) {
            Some((node, worker)) if node == self.settings.node_id => {
                (self.deliver)(ToWorkers::One(worker, signal));
            }
            _ => warn!(to = %signal.to, "trunk description for another end: ignored"),
        }
    }

    /// Remembers a revocation made on this node (dropping those past their end), to write it
    /// again whenever Redis comes back.
    fn keep_revocation(&mut self, token: RevokedToken) {
        let now = unix_now();
        self.revoked_here
            .retain(|t| t.until >= now && t.jti != token.jti);
        self.revoked_here.push(token);
    }

    /// Stores a revocation made on this node in Redis and publishes it for the other nodes.
    async fn share_revocation(
        &mut self,
        conn: &mut MultiplexedConnection,
        token: RevokedToken,
    ) -> Result<(), DirectoryError> {
        let published = NodeRevocation {
            node: self.settings.node_id.clone(),
            token,
        };
        let mut pipe = redis::pipe();
        pipe.hset(
            keys::revoked(),
            &published.token.jti,
            json(&published.token),
        )
        .ignore();
        pipe.publish(keys::revocations(), json(&published)).ignore();
        timed(pipe.query_async::<()>(conn)).await
    }

    /// Applies every revocation in Redis that is still in force (those made while this node
    /// was away or not started), and deletes those past their end.
    async fn read_revocations(
        &mut self,
        conn: &mut MultiplexedConnection,
    ) -> Result<(), DirectoryError> {
        let all: HashMap<String, String> = timed(conn.hgetall(keys::revoked())).await?;
        let now = unix_now();
        let mut ended = Vec::new();
        for (jti, value) in all {
            match serde_json::from_str::<RevokedToken>(&value) {
                Ok(token) if token.until >= now && token.jti == jti => {
                    (self.apply_revocation)(token)
                }
                Ok(_) => ended.push(jti),
                Err(e) => warn!(jti, error = %e, "unreadable revocation: ignored"),
            }
        }
        if !ended.is_empty() {
            timed(conn.hdel::<_, _, ()>(keys::revoked(), ended)).await?;
        }
        Ok(())
    }

    /// A message on the revocations channel: another node's revocation (or garbage, ignored).
    fn on_revocation(&mut self, payload: &[u8]) {
        match serde_json::from_slice::<NodeRevocation>(payload) {
            Ok(r) if r.node != self.settings.node_id => (self.apply_revocation)(r.token),
            Ok(_) => {}
            Err(e) => warn!(error = %e, "unreadable revocation: ignored"),
        }
    }

    /// The trunk end of this node's worker `worker`.
    fn trunk_end(&self, worker: usize) -> String {
        endpoint::name(&self.settings.node_id, worker)
    }

    fn ttl_ms(&self) -> i64 {
        i64::try_from(self.settings.ttl.as_millis()).unwrap_or(i64::MAX)
    }
}

/// A Redis round trip, failed when it takes longer than [`OP_TIMEOUT`].
async fn timed<T>(
    op: impl std::future::Future<Output = redis::RedisResult<T>>,
) -> Result<T, DirectoryError> {
    match tokio::time::timeout(OP_TIMEOUT, op).await {
        Ok(result) => Ok(result?),
        Err(_) => Err(DirectoryError::Timeout),
    }
}

/// Seconds since the epoch, as tokens count time.
fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A record as JSON (they are plain data: serialising cannot fail).
fn json(value: &impl serde::Serialize) -> String {
    serde_json::to_string(value).unwrap_or_default()
}
