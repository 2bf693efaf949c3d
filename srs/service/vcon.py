"""A recording as an IETF vCon (JSON), so archives are readable without srs's own index.

Mapping (draft-ietf-vcon-vcon-core, vCon 0.4.0 shape):

* ``parties``: one per RFC 7865 participant; ``tel`` for tel: AORs (and sip: AORs whose user part is
  a phone number, as SBCs write them), ``sip`` for sip:/sips: AORs, ``name``; ``meta`` keeps the
  participant id.
* ``dialog``: one ``recording`` per audio file: ``start``, ``duration`` (seconds), ``parties``,
  ``originator`` (the participant that sends the first stream, from the metadata's stream
  associations), ``mediatype``/``mimetype``, ``filename``, ``url`` (a signed link, an object URL, or
  a path relative to an export archive) and ``content_hash`` (``sha512-<base64url>`` of the file
  when srs can read it, else ``sha256-<base64url>`` of the hash the index keeps).
* ``attachments``: every rs-metadata XML version received (``purpose`` ``rs-metadata``) and the SIP
  identifiers (``purpose`` ``sip``, a JSON string: Call-ID, SIPREC session ids, call-recording-id,
  source, extensions), each with ``start``, ``party`` (the originator, else 0) and ``dialog`` (0)
  as the draft's schema requires. They carry both ``purpose`` (0.4.0) and ``type`` (earlier
  drafts) with the same value.

Signing: :func:`sign_vcon` wraps the document in a JWS general JSON serialization (the signed form
of a vCon) with **HS256**, an HMAC keyed with the server's ``secret.key``: it proves the document
came from this srs to whoever holds that key, not to the public (no asymmetric key pair exists).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

VCON_VERSION = "0.4.0"
_PHONE = re.compile(r"^\+?[0-9][0-9\-.() ]{2,}$")


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def vcon_uuid(recording_id: str) -> str:
    """A stable UUID (version 8, RFC 9562) from the recording id: the same recording, the same vCon."""
    raw = bytearray(hashlib.sha256(f"srs-recording:{recording_id}".encode()).digest()[:16])
    raw[6] = (raw[6] & 0x0F) | 0x80
    raw[8] = (raw[8] & 0x3F) | 0x80
    return str(uuid.UUID(bytes=bytes(raw)))


def party(participant: Mapping[str, Any]) -> dict[str, Any]:
    aor = str(participant.get("aor") or "")
    found: dict[str, Any] = {}
    scheme, _, rest = aor.partition(":")
    scheme = scheme.lower()
    if scheme == "tel":
        found["tel"] = rest.split(";")[0]
    elif scheme in ("sip", "sips"):
        found["sip"] = aor
        user = rest.split("@")[0].split(";")[0]
        if "@" in rest and _PHONE.match(user):
            found["tel"] = user
    if participant.get("name"):
        found["name"] = participant["name"]
    found["meta"] = {"participant_id": participant.get("id")}
    return found


def content_hash_sha512(data_chunks: Sequence[bytes] | Any) -> str:
    digest = hashlib.sha512()
    for chunk in data_chunks:
        digest.update(chunk)
    return "sha512-" + _b64url(digest.digest())


def content_hash_from_sha256(hex_digest: str) -> str:
    return "sha256-" + _b64url(bytes.fromhex(hex_digest))


def build_vcon(
    recording: Mapping[str, Any],
    metadata_versions: Sequence[Mapping[str, Any]],
    *,
    url: str | None,
    content_hash: str | None,
) -> dict[str, Any]:
    """The vCon of one recording (``recording`` in the API's JSON shape)."""
    participants = list(recording.get("participants") or [])
    parties = [party(p) for p in participants]
    streams = list(recording.get("streams") or [])
    originator: int | None = None
    first_label = streams[0].get("label") if streams else None
    if first_label is not None:
        for i, p in enumerate(participants):
            if first_label in (p.get("send") or []):
                originator = i
                break
    file = recording.get("file") or None
    dialog: list[dict[str, Any]] = []
    if file is not None:
        entry: dict[str, Any] = {
            "type": "recording",
            "start": recording.get("started_at"),
            "duration": (recording.get("duration_ms") or 0) / 1000,
            "parties": list(range(len(parties))),
            "mediatype": file.get("content_type") or "audio/x-wav",
            "mimetype": file.get("content_type") or "audio/x-wav",
            "filename": file.get("name"),
        }
        if originator is not None:
            entry["originator"] = originator
        if url is not None:
            entry["url"] = url
        if content_hash is not None:
            entry["content_hash"] = content_hash
        dialog.append(entry)
    attachments: list[dict[str, Any]] = []
    # the draft asks each attachment for the party that contributed it and its dialog: the SBC
    # sent both on behalf of the call, so the originator (else the first party) and the recording
    contributed = {"party": originator if originator is not None else 0, "dialog": 0}
    for version in metadata_versions:
        if version.get("xml") is None:
            continue
        attachments.append({
            "purpose": "rs-metadata", "type": "rs-metadata", "start": version.get("received_at"),
            **contributed, "mediatype": "application/rs-metadata+xml", "encoding": "none",
            "body": version["xml"],
        })
    sip = {
        "sip_call_id": recording.get("sip_call_id"),
        "call_recording_id": recording.get("call_recording_id"),
        "siprec_sessions": recording.get("sessions") or [],
        "source": recording.get("source"),
        "extensions": recording.get("extensions") or {},
    }
    attachments.append({
        "purpose": "sip", "type": "sip", "start": recording.get("started_at"), **contributed,
        "mediatype": "application/json", "encoding": "json", "body": json.dumps(sip, sort_keys=True),
    })
    document: dict[str, Any] = {
        "vcon": VCON_VERSION,
        "uuid": vcon_uuid(str(recording["id"])),
        "created_at": recording.get("ended_at") or recording.get("started_at"),
        "subject": f"SIPREC recording {recording['id']}",
        "parties": parties,
        "dialog": dialog,
        "attachments": attachments,
        "analysis": [],
        "group": [],
    }
    return document


def sign_vcon(document: Mapping[str, Any], key: bytes, kid: str = "srs-secret") -> dict[str, Any]:
    """JWS general JSON serialization of ``document``, HS256 with ``key`` (see the module docstring)."""
    payload = _b64url(json.dumps(document, separators=(",", ":"), sort_keys=True).encode())
    protected = _b64url(json.dumps({"alg": "HS256", "typ": "JWS", "cty": "vcon+json"},
                                   separators=(",", ":")).encode())
    signature = hmac.new(key, f"{protected}.{payload}".encode("ascii"), hashlib.sha256).digest()
    return {
        "payload": payload,
        "signatures": [{"protected": protected, "header": {"kid": kid}, "signature": _b64url(signature)}],
    }
