"""A WHIP publisher on aiortc (an independent WebRTC stack): publishes a synthetic video (a colour
sequence with a moving bar) and silent audio to a WHIP URL until it is told to stop.

    python3 whip_publish.py http://127.0.0.1:8080/whip/ROOM?name=aiortc [--token T] [--seconds N]
        [--loopback]

Prints `published LOCATION` once the server answered, `connected` once ICE and DTLS are up, and
ends the session with DELETE on SIGTERM, SIGINT or after --seconds. Exits non-zero when the server
refuses the offer or the connection fails.
"""

import argparse
import asyncio
import signal
import sys
import urllib.parse

from aiortc import AudioStreamTrack, RTCPeerConnection, RTCSessionDescription, VideoStreamTrack
from av import VideoFrame

from common import gather_on_loopback_only, http

WIDTH, HEIGHT = 320, 240


class PatternTrack(VideoStreamTrack):
    """Frames whose brightness steps through a sequence, crossed by a bar that moves each frame."""

    def __init__(self):
        super().__init__()
        self.count = 0

    async def recv(self):
        pts, time_base = await self.next_timestamp()
        frame = VideoFrame(width=WIDTH, height=HEIGHT, format="yuv420p")
        level = 40 + (self.count // 15 % 4) * 50
        bar = self.count * 4 % WIDTH
        for index, plane in enumerate(frame.planes):
            stride, rows = plane.line_size, plane.height
            if index == 0:
                row = bytearray([level]) * stride
                row[bar : bar + 16] = bytes([235]) * len(row[bar : bar + 16])
                plane.update(bytes(row) * rows)
            else:
                plane.update(bytes([128 + (self.count % 60) - 30]) * (stride * rows))
        frame.pts, frame.time_base = pts, time_base
        self.count += 1
        return frame


async def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("--token")
    parser.add_argument("--seconds", type=float, default=None)
    parser.add_argument("--loopback", action="store_true", help="offer only 127.0.0.1")
    args = parser.parse_args()
    if args.loopback:
        gather_on_loopback_only()

    pc = RTCPeerConnection()
    pc.addTransceiver(PatternTrack(), direction="sendonly")
    pc.addTransceiver(AudioStreamTrack(), direction="sendonly")
    # aiortc gathers its candidates before this returns: the offer carries them all (no trickle).
    await pc.setLocalDescription(await pc.createOffer())
    status, headers, answer = await asyncio.to_thread(
        http, "POST", args.url, pc.localDescription.sdp.encode(), args.token
    )
    if status != 201:
        print(f"refused: {status} {answer}", flush=True)
        await pc.close()
        return 1
    location = urllib.parse.urljoin(args.url, headers["Location"])
    print(f"published {headers['Location']} etag {headers.get('ETag')}", flush=True)

    stop = asyncio.Event()
    failed = False

    @pc.on("connectionstatechange")
    def on_state():
        nonlocal failed
        if pc.connectionState == "connected":
            print("connected", flush=True)
        elif pc.connectionState in ("failed", "closed"):
            failed = pc.connectionState == "failed"
            stop.set()

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
    try:
        await asyncio.wait_for(stop.wait(), args.seconds)
    except asyncio.TimeoutError:
        pass
    status, _, _ = await asyncio.to_thread(http, "DELETE", location, None, args.token)
    print(f"deleted: {status}", flush=True)
    await pc.close()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
