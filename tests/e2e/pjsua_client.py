"""A SIPREC recording client built on pjsua2: an independent SIP stack and RTP sender.

SIPp replays canned packets; pjsua2 runs a real SIP UA with its own offer/answer, RTP clock and
encoder, so a recording made from it shows the recorder interoperates with a stack it was not
written against.  It runs as its own process (a native crash must not take the test runner down)
and prints one JSON line describing what happened; exit code 0 means the call was answered,
media flowed for the requested time, and the BYE completed.

    python pjsua_client.py --target 127.0.0.1:5060 --crid ID --seconds 4 [--transport udp|tcp]

Each of the two m-lines is sendonly with a=label:1 / a=label:2; stream 1 plays a 440 Hz tone,
stream 2 a 1000 Hz tone (both -12 dBFS peak) from WAV files written at start-up.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
import wave
from pathlib import Path
from typing import Any

import numpy as np
import pjsua2 as pj

SAMPLE_RATE = 8000

METADATA = """<?xml version="1.0" encoding="UTF-8"?>
<recording xmlns="urn:ietf:params:xml:ns:recording:1">
  <datamode>complete</datamode>
  <session session_id="cGpzdWEtc2Vzc2lvbg==">
    <extensiondata xmlns:ac="http://AudioCodes">
      <ac:call-recording-id>{crid}</ac:call-recording-id>
    </extensiondata>
  </session>
  <participant participant_id="cGpzdWEtYWxpY2U=">
    <nameID aor="sip:alice@example.com"><name>Alice</name></nameID>
  </participant>
  <participant participant_id="cGpzdWEtYm9i">
    <nameID aor="sip:bob@example.net"><name>Bob</name></nameID>
  </participant>
  <stream stream_id="cGpzdWEtc3RyZWFtMQ==" session_id="cGpzdWEtc2Vzc2lvbg=="><label>1</label></stream>
  <stream stream_id="cGpzdWEtc3RyZWFtMg==" session_id="cGpzdWEtc2Vzc2lvbg=="><label>2</label></stream>
  <participantsessionassoc participant_id="cGpzdWEtYWxpY2U=" session_id="cGpzdWEtc2Vzc2lvbg=="/>
  <participantsessionassoc participant_id="cGpzdWEtYm9i" session_id="cGpzdWEtc2Vzc2lvbg=="/>
  <participantstreamassoc participant_id="cGpzdWEtYWxpY2U=">
    <send>cGpzdWEtc3RyZWFtMQ==</send><recv>cGpzdWEtc3RyZWFtMg==</recv>
  </participantstreamassoc>
  <participantstreamassoc participant_id="cGpzdWEtYm9i">
    <send>cGpzdWEtc3RyZWFtMg==</send><recv>cGpzdWEtc3RyZWFtMQ==</recv>
  </participantstreamassoc>
</recording>
"""


def write_tone_wav(path: Path, frequency: float, seconds: float, level_dbfs: float) -> None:
    t = np.arange(round(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    pcm = np.round(32767 * 10 ** (level_dbfs / 20) * np.sin(2 * np.pi * frequency * t)).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SAMPLE_RATE)
        w.writeframes(pcm.tobytes())


def add_labels(sdp: str) -> str:
    """Append a=label:N to the N-th m-section: pjsua has no API for media labels."""
    head, *sections = re.split(r"(?=^m=)", sdp, flags=re.M)
    labelled = []
    for index, section in enumerate(sections, start=1):
        body = section if section.endswith("\r\n") else section + "\r\n"
        labelled.append(body + f"a=label:{index}\r\n")
    return head + "".join(labelled)


def bye_status(log_path: Path) -> int | None:
    """Status of the answer to our BYE, from pjsua's message log (None while unanswered)."""
    text = log_path.read_text(errors="replace") if log_path.exists() else ""
    match = re.search(r"Response msg (\d{3})/BYE/", text)
    return int(match.group(1)) if match else None


class RecordingCall(pj.Call):  # type: ignore[misc]
    def __init__(
        self, account: pj.Account, players: list[pj.AudioMediaPlayer], report: dict[str, Any]
    ) -> None:
        super().__init__(account)
        self.players = players
        self.report = report
        self.media_started_at: float | None = None
        self.disconnected = False
        self.confirmed = False

    def onCallSdpCreated(self, prm: pj.OnCallSdpCreatedParam) -> None:
        if "a=label:" not in prm.sdp.wholeSdp:
            prm.sdp.wholeSdp = add_labels(prm.sdp.wholeSdp)
        self.report["offer"] = prm.sdp.wholeSdp

    def onCallState(self, prm: pj.OnCallStateParam) -> None:
        info = self.getInfo()
        self.report["states"].append([info.stateText, info.lastStatusCode])
        self.report["call_id"] = info.callIdString
        if info.state == pj.PJSIP_INV_STATE_CONFIRMED:
            self.confirmed = True
        if info.state == pj.PJSIP_INV_STATE_DISCONNECTED:
            self.disconnected = True
            self.report["last_status"] = info.lastStatusCode

    def onCallMediaState(self, prm: pj.OnCallMediaStateParam) -> None:
        info = self.getInfo()
        media = []
        for mi in info.media:
            media.append({"index": mi.index, "status": mi.status, "dir": mi.dir, "slot": mi.audioConfSlot})
            usable = (pj.PJSUA_CALL_MEDIA_ACTIVE, pj.PJSUA_CALL_MEDIA_LOCAL_HOLD)
            if mi.type == pj.PJMEDIA_TYPE_AUDIO and mi.status in usable and mi.index < len(self.players):
                self.players[mi.index].startTransmit(self.getAudioMedia(mi.index))
        self.report["media"] = media
        if self.media_started_at is None and media:
            self.media_started_at = time.monotonic()


def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    report: dict[str, Any] = {"ok": False, "states": [], "crid": args.crid}
    wavs = [workdir / "stream1.wav", workdir / "stream2.wav"]
    for path, frequency in zip(wavs, (440.0, 1000.0), strict=True):
        write_tone_wav(path, frequency, args.seconds + 2, args.level_dbfs)

    ep = pj.Endpoint()
    ep.libCreate()
    config = pj.EpConfig()
    config.uaConfig.threadCnt = 0
    config.uaConfig.mainThreadOnly = True
    config.uaConfig.userAgent = "srs-e2e-pjsua"
    config.logConfig.level = 5
    config.logConfig.consoleLevel = 0
    log_path = args.log or workdir / "pjsua.log"
    config.logConfig.filename = str(log_path)
    config.medConfig.clockRate = SAMPLE_RATE
    config.medConfig.sndClockRate = SAMPLE_RATE
    config.medConfig.noVad = True
    config.medConfig.ecTailLen = 0
    ep.libInit(config)

    transport_config = pj.TransportConfig()
    transport_config.port = 0
    transport_config.boundAddress = "127.0.0.1"
    kind = pj.PJSIP_TRANSPORT_TCP if args.transport == "tcp" else pj.PJSIP_TRANSPORT_UDP
    ep.transportCreate(kind, transport_config)
    ep.libStart()
    ep.audDevManager().setNullDev()
    for codec in ep.codecEnum2():
        keep = codec.codecId.startswith(("PCMU/", "PCMA/", "telephone-event/"))
        ep.codecSetPriority(codec.codecId, 255 if codec.codecId.startswith("PCMU/") else (128 if keep else 0))

    account_config = pj.AccountConfig()
    account_config.idUri = "sip:sbc@127.0.0.1"
    account_config.sipConfig.contactParams = ";+sip.src"
    account_config.natConfig.sipOutboundUse = 0
    account_config.mediaConfig.transportConfig.boundAddress = "127.0.0.1"
    account_config.mediaConfig.transportConfig.port = args.rtp_port
    account_config.mediaConfig.lockCodecEnabled = False  # no extra re-INVITE when the answer lists several
    account = pj.Account()
    account.create(account_config)

    players = []
    for path in wavs:
        player = pj.AudioMediaPlayer()
        player.createPlayer(str(path))
        players.append(player)

    call = RecordingCall(account, players, report)
    param = pj.CallOpParam(True)
    param.opt.audioCount = 2
    param.opt.videoCount = 0
    param.opt.flag |= pj.PJSUA_CALL_SET_MEDIA_DIR
    param.opt.mediaDir = pj.IntVector([pj.PJMEDIA_DIR_ENCODING] * 2)
    require = pj.SipHeader()
    require.hName = "Require"
    require.hValue = "siprec"
    param.txOption.headers.append(require)
    mixed = pj.SipMediaType()
    mixed.type, mixed.subType = "multipart", "mixed"
    param.txOption.multipartContentType = mixed
    part = pj.SipMultipartPart()
    part.contentType.type, part.contentType.subType = "application", "rs-metadata+xml"
    disposition = pj.SipHeader()
    disposition.hName = "Content-Disposition"
    disposition.hValue = "recording-session"
    part.headers.append(disposition)
    part.body = METADATA.format(crid=args.crid)
    param.txOption.multipartParts.append(part)

    suffix = ";transport=tcp" if args.transport == "tcp" else ""
    hung_up = call_confirmed = call_disconnected = False
    deadline = time.monotonic() + args.seconds + args.setup_timeout
    try:
        call.makeCall(f"sip:srs@{args.target}{suffix}", param)
        while not call.disconnected and time.monotonic() < deadline:
            ep.libHandleEvents(10)
            started = call.media_started_at
            if not hung_up and call.confirmed and started and time.monotonic() - started >= args.seconds:
                report["played_seconds"] = round(time.monotonic() - started, 3)
                call.hangup(pj.CallOpParam())
                hung_up = True
        if not call.disconnected:
            report["error"] = "call did not finish in time"
            call.hangup(pj.CallOpParam())
            end = time.monotonic() + 3
            while not call.disconnected and time.monotonic() < end:
                ep.libHandleEvents(10)
        # pjsua reports DISCONNECTED when it sends the BYE; give the answer time to arrive.
        end = time.monotonic() + 1.0
        while time.monotonic() < end:
            ep.libHandleEvents(10)
        call_confirmed, call_disconnected = call.confirmed, call.disconnected
    except pj.Error as exc:
        report["error"] = f"pjsua2: {exc.info()}"
    finally:
        # Every pjsua2 object must be gone before the library is destroyed.
        for player in players:
            del player
        players.clear()
        call.players = []
        del call, part, param, account
        ep.libDestroy()
        del ep
    # The answer to the BYE only shows in the message log, complete once the library is down.
    report["bye_status"] = bye_status(log_path)
    report["ok"] = bool(hung_up and call_confirmed and call_disconnected and report["bye_status"] == 200)
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", required=True, help="recorder HOST:PORT")
    parser.add_argument("--crid", required=True, help="call-recording-id put into the metadata")
    parser.add_argument("--seconds", type=float, default=4.0, help="how long to send audio")
    parser.add_argument("--level-dbfs", type=float, default=-12.0)
    parser.add_argument("--transport", choices=("udp", "tcp"), default="udp")
    parser.add_argument("--rtp-port", type=int, default=0, help="first local RTP port (0: pjsua default)")
    parser.add_argument("--setup-timeout", type=float, default=10.0)
    parser.add_argument("--log", type=Path, default=None, help="pjsua log file")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="pjsua-siprec-") as workdir:
        report = run(args, Path(workdir))
    print(json.dumps(report), flush=True)
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
