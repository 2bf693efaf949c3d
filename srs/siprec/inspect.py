"""What srs makes of a captured SIPREC message, for `srs inspect FILE --json`.

A file on disk is often hand-edited, so a Content-Length that disagrees with the file is reported,
not fatal: the rest of the file is the body.
"""

from __future__ import annotations

import re
from typing import Any

from srs.errors import ParseError
from srs.sdp.parse import parse_sdp
from srs.siprec.detect import is_siprec_request
from srs.siprec.metadata import RecordingMetadata, parse_metadata
from srs.siprec.multipart import BodyPart, SiprecBody, extract_siprec_body

_REQUEST_LINE = re.compile(rb"^[A-Za-z][A-Za-z0-9.!%*_+`'~-]* +\S+ +SIP/\d", re.IGNORECASE)
_STATUS_LINE = re.compile(rb"^SIP/\d\.\d +\d{3}", re.IGNORECASE)
_HEADER_END = re.compile(rb"\r?\n\r?\n")
_DELIMITER_IN_HEAD = re.compile(rb"\n--[^\r\n]")
_CONTENT_LENGTH = re.compile(
    rb"^(?:content-length|l)[ \t]*:[ \t]*(.*?)[ \t]*\r?$", re.IGNORECASE | re.MULTILINE
)


def inspect_bytes(data: bytes) -> dict[str, Any]:
    """Describe a SIP message, multipart body, metadata document or SDP as plain JSON types."""
    text = data.lstrip(b"\r\n\t \xef\xbb\xbf")
    if _REQUEST_LINE.match(text) or _STATUS_LINE.match(text):
        return _inspect_message(text)
    result: dict[str, Any] = {
        "kind": "body",
        "method": None,
        "headers": [],
        "parts": [],
        "is_siprec": None,
        "sdp": None,
        "metadata": None,
        "warnings": [],
    }
    warnings: list[str] = result["warnings"]
    if text.startswith(b"--"):
        first_line = text.split(b"\n", 1)[0].strip()
        boundary = first_line[2:].decode("utf-8", "replace")
        _fill_body(result, f'multipart/mixed; boundary="{boundary}"', text, None)
    elif text.startswith(b"<"):
        result["kind"] = "metadata"
        _fill_body(result, "application/rs-metadata+xml", text, None)
    elif text.startswith(b"v="):
        result["kind"] = "sdp"
        _fill_body(result, "application/sdp", text, None)
    else:
        raise ParseError("not a SIP message, multipart body, metadata document or SDP")
    result["warnings"] = warnings
    return result


def _inspect_message(data: bytes) -> dict[str, Any]:
    from srs.sip.message import Request, parse_message

    warnings: list[str] = []
    end = _HEADER_END.search(data)
    head, body = (data[: end.start()], data[end.end() :]) if end else (data, b"")
    delimiter = _DELIMITER_IN_HEAD.search(head)
    if delimiter is not None:
        # Some SBCs run the multipart body straight on from the last header line.
        warnings.append("no blank line between the headers and the body")
        head, body = data[: delimiter.start()], data[delimiter.start() + 1 :].lstrip(b"\n")
    declared = _CONTENT_LENGTH.findall(head)
    if declared and declared[0].strip() != str(len(body)).encode():
        warnings.append(
            f"Content-Length {declared[0].decode('ascii', 'replace')} but the file holds {len(body)} "
            "body bytes; the rest of the file is taken as the body"
        )
    # Without Content-Length the SIP parser takes the rest of the data as the body.
    head = _CONTENT_LENGTH.sub(b"", head)
    head = re.sub(rb"(\r?\n)+", b"\r\n", head).strip(b"\r\n")
    message = parse_message(head + b"\r\n\r\n" + body, max_size=max(65535, len(data) + 64))
    warnings.extend(w for w in message.warnings if "Content-Length" not in w)
    headers = [[name, value] for name, value in message.headers]
    is_request = isinstance(message, Request)
    result: dict[str, Any] = {
        "kind": "request" if is_request else "response",
        "method": message.method if isinstance(message, Request) else None,
        "headers": headers,
        "parts": [],
        "is_siprec": is_siprec_request(message.headers, message.body) if is_request else None,
        "sdp": None,
        "metadata": None,
        "warnings": warnings,
    }
    content_type = message.headers.get("Content-Type")
    if message.body.strip() or content_type:
        _fill_body(result, content_type, message.body, message.headers.get("Content-Disposition"))
    return result


def _fill_body(
    result: dict[str, Any], content_type: str | None, body: bytes, disposition: str | None
) -> None:
    warnings: list[str] = result["warnings"]
    try:
        siprec: SiprecBody = extract_siprec_body(content_type, body, disposition)
    except ParseError as error:
        warnings.append(f"body: {error.message}")
        return
    warnings.extend(siprec.warnings)
    result["parts"] = [_part(part) for part in siprec.other_parts]
    if siprec.sdp is not None:
        try:
            parsed = parse_sdp(siprec.sdp)
        except ParseError as error:
            warnings.append(f"sdp: {error.message}")
        else:
            warnings.extend(f"sdp: {w}" for w in parsed.warnings)
            result["sdp"] = {
                "media": [
                    {
                        "label": m.label,
                        "direction": m.direction.value,
                        "port": m.port,
                        "codecs": [c.encoding for c in m.codecs],
                    }
                    for m in parsed.session.media
                ]
            }
    if siprec.metadata is not None:
        try:
            metadata = parse_metadata(siprec.metadata)
        except ParseError as error:
            warnings.append(f"metadata: {error.message}")
        else:
            warnings.extend(f"metadata: {w}" for w in metadata.warnings)
            result["metadata"] = metadata_summary(metadata)


def _part(part: BodyPart) -> dict[str, str]:
    return {"content_type": part.content_type, "text": part.body.decode("utf-8", "replace")}


def metadata_summary(metadata: RecordingMetadata) -> dict[str, Any]:
    """The metadata fields a person reads, as JSON types."""
    extensions: dict[str, Any] = {}
    for key, value in metadata.extensions:
        if key not in extensions:
            extensions[key] = value
        elif isinstance(extensions[key], list):
            extensions[key].append(value)
        else:
            extensions[key] = [extensions[key], value]
    return {
        "dialect": metadata.dialect,
        "datamode": metadata.datamode,
        "participants": [
            {"id": p.id, "aor": p.aor, "name": p.name, "send": list(p.send), "recv": list(p.recv)}
            for p in metadata.participants
        ],
        "streams": [{"id": s.id, "label": s.label, "session": s.session} for s in metadata.streams],
        "sessions": [
            {
                "id": s.id,
                "sip_session_ids": list(s.sip_session_ids),
                "start_time": s.start_time,
                "stop_time": s.stop_time,
            }
            for s in metadata.sessions
        ],
        "call_recording_id": metadata.call_recording_id,
        "extensions": extensions,
    }
