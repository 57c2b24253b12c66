// The mediasoup baseline server of edge-sfu-loadgen (`--spawn-mediasoup`): mediasoup's own
// building blocks with as little around them as a real application needs, so the load generator
// can drive mediasoup the way it drives edge-sfu and Janus. Not a product: no auth, no limits,
// 127.0.0.1 only.
//
//   node server.mjs [--mediasoup-dir DIR] [--workers N] [--port PORT] [--ip IP]
//
//   --mediasoup-dir  a mediasoup build (DIR/package is the npm package with its worker built, as
//                    ../shared/baselines/mediasoup/build makes it); default $MEDIASOUP_DIR, else
//                    target/mediasoup-3.32.2 under the current directory. MEDIASOUP_WORKER_BIN is
//                    set to DIR/package/worker/out/Release/mediasoup-worker unless already set.
//   --workers        mediasoup workers (one process each); default: the CPUs this process may run
//                    on. The load generator passes 1 when it pins the server to one core.
//   --port           the WebSocket port (0: any free one); --ip the address of everything, 127.0.0.1.
//
// When ready it prints one line on stdout:
//
//   mediasoup ready: ws://127.0.0.1:PORT/ workers PID[,PID...]
//
// The media flows through the mediasoup-worker processes (PIDs above); this Node process only
// signals. Each worker has one WebRtcServer (one UDP port for all its transports, like edge-sfu);
// each room is one router (Opus and VP8) on the next worker in turn.
//
// Signaling: one WebSocket per participant, JSON text frames. The client asks, the server
// answers; nothing is pushed.
//
//   request:  {"id": N, "method": M, ...parameters}
//   answer:   {"id": N, "ok": true, ...result}   or   {"id": N, "ok": false, "error": "why"}
//
//   join       {room}                          -> {rtpCapabilities}      the router's capabilities
//   transport  {direction: "send" | "recv"}    -> {transportId, iceParameters, iceCandidates,
//                                                   dtlsParameters}
//   connect    {transportId, dtlsParameters}   -> {}
//   produce    {transportId, producers: [{kind, rtpParameters}]}
//                                              -> {producerIds}         all tracks at once, so a
//                                                                       peer counts as publishing
//                                                                       with all of them
//   consume    {transportId, rtpCapabilities, publishers: N}
//                                              -> {consumers: [{consumerId, producerId, kind,
//                                                   rtpParameters}]}
//              waits until N other peers of the room publish, then makes a paused consumer of
//              each of their producers
//   resume     {}                              -> {}                    resumes this peer's
//                                                                       consumers (the client
//                                                                       asks once connected)
//
// Closing the WebSocket closes the peer's transports (and so its producers and consumers).

import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import process from 'node:process';

const args = process.argv.slice(2);
const opt = (name, fallback) => {
	const i = args.indexOf(name);
	return i >= 0 && i + 1 < args.length ? args[i + 1] : fallback;
};
const dir = path.resolve(opt('--mediasoup-dir', process.env.MEDIASOUP_DIR || 'target/mediasoup-3.32.2'));
const ip = opt('--ip', '127.0.0.1');
const port = Number(opt('--port', '0'));
const workerCount = Math.max(1, Number(opt('--workers', String(os.availableParallelism()))));
process.env.MEDIASOUP_WORKER_BIN ||= path.join(dir, 'package/worker/out/Release/mediasoup-worker');

const require = createRequire(import.meta.url);
const mediasoup = require(path.join(dir, 'package'));
const { WebSocketServer } = require('ws');

const mediaCodecs = [
	{ kind: 'audio', mimeType: 'audio/opus', clockRate: 48000, channels: 2 },
	{ kind: 'video', mimeType: 'video/VP8', clockRate: 90000 },
];

const workers = [];
for (let i = 0; i < workerCount; i++) {
	const worker = await mediasoup.createWorker({ logLevel: 'error' });
	worker.on('died', (e) => {
		console.error(`mediasoup worker ${worker.pid} died: ${e}`);
		process.exit(1);
	});
	const webRtcServer = await worker.createWebRtcServer({ listenInfos: [{ protocol: 'udp', ip, port: 0 }] });
	workers.push({ worker, webRtcServer });
}

/** Rooms by name: {router, webRtcServer, peers: Set, waiters: Set}. */
const rooms = new Map();
let nextWorker = 0;

async function room(name) {
	let r = rooms.get(name);
	if (!r) {
		// Made at once, before the await, so concurrent joins share one router.
		const w = workers[nextWorker++ % workers.length];
		r = { router: w.worker.createRouter({ mediaCodecs }), webRtcServer: w.webRtcServer, peers: new Set(), waiters: new Set() };
		rooms.set(name, r);
	}
	r.router = await r.router;
	return r;
}

/** The other peers of `peer`'s room that publish. */
const publishersBesides = (peer) => [...peer.room.peers].filter((p) => p !== peer && p.producers.length > 0);

function wakeWaiters(r) {
	for (const w of [...r.waiters]) {
		if (publishersBesides(w.peer).length >= w.publishers) {
			r.waiters.delete(w);
			w.resolve();
		}
	}
}

const handlers = {
	async join(peer, { room: name }) {
		if (typeof name !== 'string' || peer.room) throw new Error('join once, with a room name');
		peer.room = await room(name);
		peer.room.peers.add(peer);
		return { rtpCapabilities: peer.room.router.rtpCapabilities };
	},

	async transport(peer, { direction }) {
		if (!peer.room) throw new Error('join first');
		const t = await peer.room.router.createWebRtcTransport({
			webRtcServer: peer.room.webRtcServer,
			enableUdp: true,
			enableTcp: false,
			appData: { direction },
		});
		peer.transports.set(t.id, t);
		return { transportId: t.id, iceParameters: t.iceParameters, iceCandidates: t.iceCandidates, dtlsParameters: t.dtlsParameters };
	},

	async connect(peer, { transportId, dtlsParameters }) {
		await transportOf(peer, transportId).connect({ dtlsParameters });
		return {};
	},

	async produce(peer, { transportId, producers }) {
		const t = transportOf(peer, transportId);
		const made = [];
		for (const { kind, rtpParameters } of producers) made.push(await t.produce({ kind, rtpParameters }));
		peer.producers.push(...made);
		wakeWaiters(peer.room);
		return { producerIds: made.map((p) => p.id) };
	},

	async consume(peer, { transportId, rtpCapabilities, publishers }) {
		const t = transportOf(peer, transportId);
		if (publishersBesides(peer).length < publishers) {
			await new Promise((resolve, reject) => {
				const w = { peer, publishers, resolve };
				peer.room.waiters.add(w);
				peer.onClose.push(() => {
					peer.room.waiters.delete(w);
					reject(new Error('closed'));
				});
			});
		}
		const consumers = [];
		for (const other of publishersBesides(peer)) {
			for (const producer of other.producers) {
				if (!peer.room.router.canConsume({ producerId: producer.id, rtpCapabilities })) {
					throw new Error(`cannot consume ${producer.kind} with these capabilities`);
				}
				const c = await t.consume({ producerId: producer.id, rtpCapabilities, paused: true });
				peer.consumers.push(c);
				consumers.push({ consumerId: c.id, producerId: producer.id, kind: c.kind, rtpParameters: c.rtpParameters });
			}
		}
		return { consumers };
	},

	async resume(peer) {
		await Promise.all(peer.consumers.map((c) => c.resume()));
		return {};
	},
};

function transportOf(peer, id) {
	const t = peer.transports.get(id);
	if (!t) throw new Error(`no transport ${id}`);
	return t;
}

const wss = new WebSocketServer({ host: ip, port });
wss.on('connection', (ws) => {
	const peer = { room: null, transports: new Map(), producers: [], consumers: [], onClose: [] };
	ws.on('message', async (data) => {
		let req;
		try {
			req = JSON.parse(data.toString());
		} catch {
			ws.close(1003, 'not JSON');
			return;
		}
		const handler = Object.hasOwn(handlers, req.method) ? handlers[req.method] : null;
		try {
			if (!handler) throw new Error(`unknown method ${req.method}`);
			const result = await handler(peer, req);
			ws.send(JSON.stringify({ id: req.id, ok: true, ...result }));
		} catch (e) {
			if (ws.readyState === ws.OPEN) ws.send(JSON.stringify({ id: req.id, ok: false, error: String(e?.message ?? e) }));
		}
	});
	ws.on('close', () => {
		for (const f of peer.onClose) f();
		for (const t of peer.transports.values()) t.close();
		if (peer.room) {
			peer.room.peers.delete(peer);
			if (peer.room.peers.size === 0) {
				peer.room.router.close();
				for (const [name, r] of rooms) if (r === peer.room) rooms.delete(name);
			}
		}
	});
});
wss.on('listening', () => {
	const pids = workers.map((w) => w.worker.pid).join(',');
	console.log(`mediasoup ready: ws://${ip}:${wss.address().port}/ workers ${pids}`);
});

for (const sig of ['SIGTERM', 'SIGINT']) {
	process.on(sig, () => {
		wss.close();
		for (const { worker } of workers) worker.close();
		process.exit(0);
	});
}
