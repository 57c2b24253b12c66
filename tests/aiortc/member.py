"""A room member on aiortc (an independent WebRTC stack) speaking the WebSocket protocol exactly as
docs/protocol.md documents it: join, offer its microphone, camera and a data channel `game` with a
`tracks` list, answer every offer the SFU makes, decode the other members' video and audio, greet
them on `game` (a text and a binary message) and check their greetings on the SFU's relays of
their `game` channels, leave.

    python3 member.py ws://127.0.0.1:8080/ws ROOM NAME [--codec vp8|h264] [--peers N]
        [--frames F] [--like WxH] [--seconds S] [--loopback] [--hold]

Prints `enough` once it decoded F video frames (the publisher's picture: --like) and F audio frames
from each of N other members and got both their greetings (with --hold it then stays, answering offers and printing `peer left:
NAME` for departures, until its standard input closes), then leaves and exits 0; 1 when the server refuses, the connection fails, what the SFU
says disagrees with the documentation, or the frames do not come within --seconds. Prints what
it got per member either way.
"""

import argparse
import asyncio
import collections
import json
import sys
from pathlib import Path

import websockets
from aiortc import RTCPeerConnection, RTCRtpSender, RTCSessionDescription
from aiortc.mediastreams import AudioStreamTrack, MediaStreamError

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "whip"))
from common import gather_on_loopback_only  # noqa: E402
from whip_publish import HEIGHT, WIDTH, PatternTrack  # noqa: E402

PING_EVERY = 10  # seconds (the protocol closes a WebSocket silent for 30 s)
GAME_LABEL = "game"  # the data channel each member opens and greets the others on


def first_codec(sdp, mid):
    """The first codec of the m-section `mid` of `sdp`: in an answer, the one to send."""
    sections = sdp.split("\r\nm=")
    section = next(s for s in sections if f"\r\na=mid:{mid}\r\n" in s + "\r\n")
    rtpmap = next(line for line in section.split("\r\n") if line.startswith("a=rtpmap:"))
    return rtpmap.split(" ", 1)[1].split("/")[0]


class ProtocolViolation(Exception):
    """The SFU said something docs/protocol.md does not allow."""


class Member:
    """One member: its WebSocket, its peer connection, and what it decoded from whom."""

    def __init__(self, ws, args):
        self.ws = ws
        self.args = args
        self.pc = RTCPeerConnection()
        self.peer_id = None
        self.names = {}  # peerId -> name, from `joined` and `peerJoined`
        self.published = set()  # trackIds announced by `joined` and `trackPublished`
        self.mid_to_track = {}  # receiving mid -> (peerId, trackId), from the SFU's offers
        self.video = collections.Counter()  # peerId -> decoded frames of the expected size
        self.sizes = collections.Counter()  # (peerId, (w, h)) -> decoded frames
        self.audio = collections.Counter()  # peerId -> decoded audio frames
        self.enough = asyncio.Event()
        self.failure = None
        self.answered = asyncio.Event()
        self.answers = 0  # offers of the SFU answered
        self.camera_mid = None
        self.sent_codec = None  # the camera's codec, from the SFU's answer
        self.received_codecs = collections.defaultdict(set)  # peerId -> mime types of its RTP
        self.game = None  # its own `game` data channel
        self.greetings = collections.defaultdict(set)  # peerId -> "text", "binary" greetings got

    async def send(self, message):
        await self.ws.send(json.dumps(message))

    def fail(self, why):
        if self.failure is None:
            self.failure = why
        self.enough.set()

    def check_enough(self):
        done = [
            p
            for p in self.names
            if min(self.video[p], self.audio[p]) >= self.args.frames
            and self.greetings[p] == {"text", "binary"}
        ]
        if len(done) >= self.args.peers:
            self.enough.set()

    async def join(self):
        await self.send({"type": "join", "version": 1, "room": self.args.room, "name": self.args.name})
        joined = json.loads(await self.ws.recv())
        if joined.get("type") != "joined":
            raise ProtocolViolation(f"join answered with {joined}")
        for key in ("version", "peerId", "room", "peers", "iceServers"):
            if key not in joined:
                raise ProtocolViolation(f"`joined` lacks `{key}`: {joined}")
        self.peer_id = joined["peerId"]
        for peer in joined["peers"]:
            self.learn_peer(peer)
        print(f"joined as {self.peer_id} with {sorted(self.names.values())}", flush=True)

    def learn_peer(self, peer):
        self.names[peer["id"]] = peer["name"]
        for track in peer["tracks"]:
            self.learn_track(peer["id"], track)

    def learn_track(self, peer_id, track):
        expected_prefix = f"{peer_id}:"
        if not track["id"].startswith(expected_prefix) or track["kind"] not in ("audio", "video"):
            raise ProtocolViolation(f"TrackInfo {track} of peer {peer_id}")
        self.published.add(track["id"])

    async def publish(self):
        """The first offer: microphone and camera, the camera's codec forced by preferences."""
        mic = self.pc.addTransceiver(AudioStreamTrack(), direction="sendonly")
        camera = self.pc.addTransceiver(PatternTrack(), direction="sendonly")
        codecs = RTCRtpSender.getCapabilities("video").codecs
        wanted = f"video/{self.args.codec.upper()}"
        preferred = [c for c in codecs if c.mimeType.upper() == wanted.upper()]
        camera.setCodecPreferences(preferred)
        self.game = self.pc.createDataChannel(GAME_LABEL)
        self.game.on("open", self.greet)
        await self.pc.setLocalDescription(await self.pc.createOffer())
        self.camera_mid = camera.mid
        tracks = [{"mid": mic.mid, "source": "mic"}, {"mid": camera.mid, "source": "camera"}]
        await self.send({"type": "offer", "sdp": self.pc.localDescription.sdp, "tracks": tracks})

    async def on_offer(self, message):
        """The SFU's offer: the tracks this member receives changed. Answered as it comes: this
        member offers only once, before any SFU offer (the SFU offers only after answering it)."""
        if not self.answered.is_set():
            raise ProtocolViolation("the SFU offered before answering the first offer")
        for mapping in message["tracks"]:
            if mapping["trackId"] not in self.published:
                raise ProtocolViolation(f"offer maps {mapping} to a track never announced")
            if not mapping["trackId"].startswith(f"{mapping['peerId']}:"):
                raise ProtocolViolation(f"offer maps {mapping}: trackId of another peer")
            self.mid_to_track[mapping["mid"]] = (mapping["peerId"], mapping["trackId"])
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=message["sdp"], type="offer"))
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        await self.send({"type": "answer", "sdp": self.pc.localDescription.sdp})
        self.answers += 1
        print(f"answered offer {self.answers} ({len(message['tracks'])} tracks)", flush=True)

    def on_track(self, transceiver_track):
        transceiver = next(
            (t for t in self.pc.getTransceivers() if t.receiver.track is transceiver_track), None
        )
        mid = transceiver.mid if transceiver else None
        if mid not in self.mid_to_track:
            return self.fail(f"a track on m-line {mid}, which no offer's `tracks` maps")
        peer_id, _ = self.mid_to_track[mid]
        self.observe_codecs(transceiver.receiver, peer_id)
        asyncio.ensure_future(self.decode(transceiver_track, peer_id))

    def observe_codecs(self, receiver, peer_id):
        """Notes the codec of each RTP packet the receiver gets (aiortc does not expose it)."""
        handle = receiver._handle_rtp_packet
        codecs = receiver._RTCRtpReceiver__codecs

        async def observed(packet, arrival_time_ms):
            codec = codecs.get(packet.payload_type)
            if codec is not None and codec.name.lower() != "rtx":
                self.received_codecs[peer_id].add(codec.mimeType)
            await handle(packet, arrival_time_ms)

        receiver._handle_rtp_packet = observed

    async def decode(self, track, peer_id):
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            if track.kind == "video":
                size = (frame.width, frame.height)
                self.sizes[(peer_id, size)] += 1
                if self.like(size):
                    self.video[peer_id] += 1
            else:
                self.audio[peer_id] += 1
            self.check_enough()

    def greeting(self, name):
        """The text and the binary greeting of member `name`."""
        return f"hello from {name}", b"\x00" + name.encode()

    def greet(self):
        """Greets the others on its `game` channel: when it opens, and when another member's
        relay opens here (that member's association is up, so it has, or is being opened, the
        relay of this channel, which holds what comes before it opens)."""
        if self.game.readyState == "open":
            for message in self.greeting(self.args.name):
                self.game.send(message)

    def on_datachannel(self, channel):
        """The SFU opened the relay of another member's channel: its label, the sender's id as
        the protocol."""
        try:
            sender = int(channel.protocol)
        except ValueError:
            return self.fail(f"relay `{channel.label}` names no sender: {channel.protocol!r}")
        if channel.label != GAME_LABEL or sender not in self.names or not channel.ordered:
            return self.fail(f"relay `{channel.label}` from {sender} (ordered {channel.ordered})")

        def on_message(message):
            text, binary = self.greeting(self.names[sender])
            if message == text:
                self.greetings[sender].add("text")
            elif message == binary:
                self.greetings[sender].add("binary")
            else:
                self.fail(f"{message!r} on the relay of {sender}'s `{GAME_LABEL}`")
            self.check_enough()

        channel.on("message", on_message)
        self.greet()

    def like(self, size):
        """Whether a decoded picture is the publishers' (--like): that size, or scaled down with
        its aspect ratio (up to rounding), as simulcast layers and a sender's adaptation make it."""
        (w, h), (full_w, full_h) = size, self.args.like
        return 0 < w <= full_w and abs(w * full_h - h * full_w) <= max(full_w, full_h)

    async def read(self):
        """Handles every message until the WebSocket closes."""
        async for text in self.ws:
            message = json.loads(text)
            kind = message.get("type")
            if kind == "answer":
                await self.pc.setRemoteDescription(
                    RTCSessionDescription(sdp=message["sdp"], type="answer")
                )
                self.sent_codec = first_codec(message["sdp"], self.camera_mid)
                print(f"camera sends {self.sent_codec}", flush=True)
                if self.sent_codec.upper() != self.args.codec.upper():
                    self.fail(f"the SFU's answer makes the camera send {self.sent_codec}")
                self.answered.set()
            elif kind == "offer":
                await self.on_offer(message)
            elif kind == "peerLeft":
                print(f"peer left: {self.names.get(message['peerId'])}", flush=True)
            elif kind == "peerJoined":
                self.learn_peer(message["peer"])
            elif kind == "trackPublished":
                self.learn_track(message["peerId"], message["track"])
            elif kind == "error":
                self.fail(f"error from the SFU: {message}")
            elif kind not in (
                "pong", "trackUnpublished", "trackMuted", "activeSpeaker", "layerHint",
                "mediaStats",
            ):
                raise ProtocolViolation(f"undocumented message {message}")

    async def ping(self):
        while True:
            await asyncio.sleep(PING_EVERY)
            await self.send({"type": "ping"})

    def report(self):
        for peer_id, name in sorted(self.names.items()):
            sizes = ", ".join(
                f"{w}x{h}: {n}" for (p, (w, h)), n in sorted(self.sizes.items()) if p == peer_id
            )
            codecs = sorted(self.received_codecs[peer_id])
            print(
                f"from {name} ({peer_id}): video frames {sizes or 'none'}; "
                f"audio frames {self.audio[peer_id]}; codecs {', '.join(codecs) or 'none'}; "
                f"greetings {', '.join(sorted(self.greetings[peer_id])) or 'none'}",
                flush=True,
            )
            wanted = {"audio/opus", f"video/{self.args.codec}"}
            if {c.lower() for c in codecs} != wanted:
                self.fail(f"{name}'s media came as {codecs}, not {sorted(wanted)}")


async def run(args):
    async with websockets.connect(args.url) as ws:
        member = Member(ws, args)
        await member.join()

        @member.pc.on("track")
        def on_track(track):
            member.on_track(track)

        @member.pc.on("datachannel")
        def on_datachannel(channel):
            member.on_datachannel(channel)

        @member.pc.on("connectionstatechange")
        def on_state():
            print(f"connection {member.pc.connectionState}", flush=True)
            if member.pc.connectionState == "failed":
                member.fail("the WebRTC connection failed")

        await member.publish()
        reader = asyncio.ensure_future(member.read())
        pinger = asyncio.ensure_future(member.ping())
        reader.add_done_callback(
            lambda r: member.fail(f"signaling ended: {r.exception()!r}")
            if not r.cancelled()
            else None
        )
        try:
            await asyncio.wait_for(member.enough.wait(), args.seconds)
        except asyncio.TimeoutError:
            member.fail(f"not enough frames within {args.seconds} s")
        member.report()
        print("FAILED: " + member.failure if member.failure else "enough", flush=True)
        if args.hold:
            # Stays (answering offers, counting departures) until its standard input closes.
            await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
        await member.send({"type": "leave"})
        pinger.cancel()
        reader.cancel()
        await member.pc.close()
        if member.failure:
            print(f"FAILED: {member.failure}", flush=True)
            return 1
        print("left", flush=True)
        return 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("room")
    parser.add_argument("name")
    parser.add_argument("--codec", choices=["vp8", "h264"], default="vp8")
    parser.add_argument("--peers", type=int, default=1, help="members to decode media from")
    parser.add_argument("--frames", type=int, default=30)
    parser.add_argument("--seconds", type=float, default=40)
    parser.add_argument(
        "--like",
        default=f"{WIDTH}x{HEIGHT}",
        help="the others' picture size, WxH (default: what this script sends)",
    )
    parser.add_argument("--loopback", action="store_true", help="offer only 127.0.0.1")
    parser.add_argument(
        "--hold", action="store_true", help="after the frames, stay until standard input closes"
    )
    args = parser.parse_args()
    args.like = tuple(map(int, args.like.split("x")))
    if args.loopback:
        gather_on_loopback_only()
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
