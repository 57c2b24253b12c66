"""A WHEP viewer on aiortc (an independent WebRTC stack): receives audio and video from a WHEP
URL and decodes the video.

    python3 whep_view.py http://127.0.0.1:8080/whep/ROOM [--peer NAME] [--token T] [--frames N]
        [--like 1280x720] [--seconds S] [--loopback]

Exits 0 once it decoded N video frames (with --like: each the publisher's picture, that size or
scaled down, as simulcast layers and the sender's adaptation make it), printing the sizes it saw
and the audio frames it got; 1 when the server refuses, the connection fails, or the frames do not
come within --seconds. Ends the session with DELETE either way.
"""

import argparse
import asyncio
import collections
import sys
import urllib.parse

from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError

from common import gather_on_loopback_only, http


async def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("--peer")
    parser.add_argument("--token")
    parser.add_argument("--frames", type=int, default=30)
    parser.add_argument("--like", help="the publisher's picture size, WxH")
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--loopback", action="store_true", help="offer only 127.0.0.1")
    args = parser.parse_args()
    if args.loopback:
        gather_on_loopback_only()
    url = args.url
    if args.peer:
        url += ("&" if "?" in url else "?") + urllib.parse.urlencode({"peer": args.peer})
    like = tuple(map(int, args.like.split("x"))) if args.like else None

    def expected(size):
        """The publisher's picture, at most its size, of its aspect ratio (up to rounding)."""
        if like is None:
            return True
        (w, h), (full_w, full_h) = size, like
        return 0 < w <= full_w and abs(w * full_h - h * full_w) <= max(full_w, full_h)

    pc = RTCPeerConnection()
    pc.addTransceiver("video", direction="recvonly")
    pc.addTransceiver("audio", direction="recvonly")
    seen = collections.Counter()
    audio_frames = 0
    enough = asyncio.Event()

    async def decode_video(track):
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            size = (frame.width, frame.height)
            seen[size] += 1
            if sum(n for s, n in seen.items() if expected(s)) >= args.frames:
                enough.set()

    async def count_audio(track):
        nonlocal audio_frames
        while True:
            try:
                await track.recv()
            except MediaStreamError:
                return
            audio_frames += 1

    @pc.on("track")
    def on_track(track):
        asyncio.ensure_future(decode_video(track) if track.kind == "video" else count_audio(track))

    @pc.on("connectionstatechange")
    def on_state():
        if pc.connectionState == "connected":
            print("connected", flush=True)
        elif pc.connectionState == "failed":
            enough.set()

    await pc.setLocalDescription(await pc.createOffer())
    status, headers, answer = await asyncio.to_thread(
        http, "POST", url, pc.localDescription.sdp.encode(), args.token
    )
    if status != 201:
        print(f"refused: {status} {answer}", flush=True)
        await pc.close()
        return 1
    location = urllib.parse.urljoin(url, headers["Location"])
    print(f"watching {headers['Location']}", flush=True)
    await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
    try:
        await asyncio.wait_for(enough.wait(), args.seconds)
    except asyncio.TimeoutError:
        pass
    got = ", ".join(f"{w}x{h}: {n}" for (w, h), n in sorted(seen.items()))
    matching = sum(n for s, n in seen.items() if expected(s))
    print(f"decoded video frames {got or 'none'}; audio frames {audio_frames}", flush=True)
    status, _, _ = await asyncio.to_thread(http, "DELETE", location, None, args.token)
    print(f"deleted: {status}", flush=True)
    await pc.close()
    return 0 if matching >= args.frames else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
