"""Byte-level SIP messages used across the SIP tests."""

from __future__ import annotations


def crlf(text: str) -> bytes:
    """Fixture text is written with LF; the wire uses CRLF."""
    return text.replace("\n", "\r\n").encode("utf-8")


SIPREC_BODY = crlf(
    """--OSS-unique-boundary-42
Content-Type: application/sdp

v=0
o=SBC 1212 1 IN IP4 192.0.2.10
s=SIPREC
c=IN IP4 192.0.2.10
t=0 0
m=audio 40000 RTP/AVP 0 8 101
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-15
a=ptime:20
a=label:1
a=sendonly
m=audio 40002 RTP/AVP 0 8 101
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-15
a=ptime:20
a=label:2
a=sendonly

--OSS-unique-boundary-42
Content-Type: application/rs-metadata+xml
Content-Disposition: recording-session

<?xml version="1.0" encoding="UTF-8"?>
<recording xmlns="urn:ietf:params:xml:ns:recording:1">
  <datamode>complete</datamode>
  <group group_id="7+OTCyoxTmqmqyA/1weDAg==">
    <associate-time>2026-11-21T10:11:12Z</associate-time>
  </group>
  <session session_id="hVpd7YQgRW2nD22h7q60JQ==">
    <group-ref>7+OTCyoxTmqmqyA/1weDAg==</group-ref>
    <sipSessionID>ab30317f1a784dc48ff824d0d3715d86;remote=47755a9de7794ba387653f2099600ef2</sipSessionID>
    <start-time>2026-11-21T10:11:12Z</start-time>
  </session>
  <participant participant_id="srfBElmCRp2QB23b7Mpk0w==">
    <nameID aor="sip:alice@atlanta.example.com">
      <name xml:lang="en">Alice</name>
    </nameID>
  </participant>
  <participant participant_id="zSfPoSvdSDCmU3A3TRDxAw==">
    <nameID aor="sip:bob@biloxi.example.com">
      <name xml:lang="en">Bob</name>
    </nameID>
  </participant>
  <stream stream_id="UAAMm5GRQKSCMVvLyl4rFw==" session_id="hVpd7YQgRW2nD22h7q60JQ==">
    <label>1</label>
  </stream>
  <stream stream_id="i1Pz3to5hGk8fuXl+NKSSA==" session_id="hVpd7YQgRW2nD22h7q60JQ==">
    <label>2</label>
  </stream>
  <participantsessionassoc participant_id="srfBElmCRp2QB23b7Mpk0w==" session_id="hVpd7YQgRW2nD22h7q60JQ==">
    <associate-time>2026-11-21T10:11:12Z</associate-time>
  </participantsessionassoc>
  <participantsessionassoc participant_id="zSfPoSvdSDCmU3A3TRDxAw==" session_id="hVpd7YQgRW2nD22h7q60JQ==">
    <associate-time>2026-11-21T10:11:12Z</associate-time>
  </participantsessionassoc>
  <participantstreamassoc participant_id="srfBElmCRp2QB23b7Mpk0w==">
    <send>UAAMm5GRQKSCMVvLyl4rFw==</send>
    <recv>i1Pz3to5hGk8fuXl+NKSSA==</recv>
  </participantstreamassoc>
  <participantstreamassoc participant_id="zSfPoSvdSDCmU3A3TRDxAw==">
    <send>i1Pz3to5hGk8fuXl+NKSSA==</send>
    <recv>UAAMm5GRQKSCMVvLyl4rFw==</recv>
  </participantstreamassoc>
  <extensiondata xmlns:sbc="urn:example:params:xml:ns:sbc">
    <sbc:call-info>
      <sbc:ucid>00FA080018A1B2C3D4E5F60718293A4B5C6D7E8F</sbc:ucid>
      <sbc:ingress-trunk>PSTN-Carrier-A</sbc:ingress-trunk>
      <sbc:egress-trunk>Contact-Center-East</sbc:egress-trunk>
      <sbc:customer-account>ACCT-000042-NORTH</sbc:customer-account>
      <sbc:agent-id>agent-7731</sbc:agent-id>
      <sbc:queue>billing-disputes</sbc:queue>
    </sbc:call-info>
  </extensiondata>
</recording>

--OSS-unique-boundary-42--
"""
)

SIPREC_HEAD = crlf(
    """INVITE sip:recorder@srs.example.net:5060;transport=udp SIP/2.0
Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK-siprec-1;rport
Via: SIP/2.0/UDP 10.0.0.7:5070;branch=z9hG4bK77ef4c2312983.1;received=10.0.0.7
Record-Route: <sip:192.0.2.10;lr;ftag=4fa8d31c>
Record-Route: <sip:10.0.0.1;lr>
Max-Forwards: 69
From: "SBC Recorder" <sip:sbc@sbc.example.net>;tag=4fa8d31c
To: <sip:recorder@srs.example.net>
Call-ID: f81d4fae-7dec-11d0-a765-00a0c91e6bf6@sbc.example.net
CSeq: 101 INVITE
Contact: <sip:sbc@192.0.2.10:5060;transport=udp>;+sip.src
Require: siprec
Supported: timer, replaces, 100rel
Allow: INVITE, ACK, CANCEL, OPTIONS, BYE, UPDATE, INFO
Session-Expires: 1800;refresher=uac
Min-SE: 90
User-Agent: Example-SBC/4.2
P-Asserted-Identity: "SBC Recorder" <sip:sbc@sbc.example.net>
X-Recording-Session: hVpd7YQgRW2nD22h7q60JQ==;call=ab30317f1a784dc48ff824d0d3715d86
X-Customer-Account: ACCT-000042-NORTH
Call-Info: <http://sbc.example.net/calls/ab30317f1a784dc48ff824d0d3715d86>;purpose=info
Organization: Example Contact Centers, Inc.
Accept: application/sdp, application/rs-metadata+xml
Content-Type: multipart/mixed;boundary=OSS-unique-boundary-42
Content-Disposition: session;handling=required
"""
)

SIPREC_INVITE = SIPREC_HEAD + b"Content-Length: " + str(len(SIPREC_BODY)).encode() + b"\r\n\r\n" + SIPREC_BODY

OPTIONS = crlf(
    """OPTIONS sip:srs.example.net SIP/2.0
Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKopt1
Max-Forwards: 70
From: <sip:sbc@sbc.example.net>;tag=o1
To: <sip:srs.example.net>
Call-ID: options-1@sbc.example.net
CSeq: 1 OPTIONS
Content-Length: 0

"""
)

# RFC 3261 §24.2 F1 (Alice's INVITE to Bob), body and Content-Length adapted to be exact.
RFC3261_INVITE = crlf(
    """INVITE sip:bob@biloxi.example.com SIP/2.0
Via: SIP/2.0/TCP client.atlanta.example.com:5060;branch=z9hG4bK74bf9
Max-Forwards: 70
From: Alice <sip:alice@atlanta.example.com>;tag=9fxced76sl
To: Bob <sip:bob@biloxi.example.com>
Call-ID: 3848276298220188511@atlanta.example.com
CSeq: 1 INVITE
Contact: <sip:alice@client.atlanta.example.com;transport=tcp>
Content-Type: application/sdp
Content-Length: 0

"""
)

# RFC 3261 §7.3.1 style compact and folded forms (the torture tests of RFC 4475 use the same ideas).
COMPACT_FOLDED = (
    b"\r\n\r\nINVITE sip:vivekg@chair-dnrc.example.com;unknownparam SIP/2.0\n"
    b"v:  SIP/2.0/UDP 192.0.2.15:5060;branch=z9hG4bKkdjuw ;rport\n"
    b"TO :\n sip:vivekg@chair-dnrc.example.com ;   tag    = 1918181833n\n"
    b'f   : "J Rosenberg \\\\\\""       <sip:jdrosen@example.com>\n  ;\n  tag = 98asjd8\n'
    b"i: 0ha0isndaksdj@192.0.2.1\n"
    b"cseq: 8\n  INVITE\n"
    b"m: <sip:joe@10.1.1.1:5060>;+sip.src\n"
    b"Max-Forwards: 68\n"
    b"l: 0\n"
    b"\n"
)

OK_RESPONSE = crlf(
    """SIP/2.0 200 OK
Via: SIP/2.0/UDP 203.0.113.5:5060;branch=z9hG4bKbye1;received=203.0.113.5
From: <sip:recorder@srs.example.net>;tag=srs1
To: <sip:sbc@sbc.example.net>;tag=4fa8d31c
Call-ID: f81d4fae-7dec-11d0-a765-00a0c91e6bf6@sbc.example.net
CSeq: 1 BYE
Content-Length: 0

"""
)


def request(
    method: str = "INVITE",
    *,
    branch: str | None = "z9hG4bKabc",
    via_host: str = "192.0.2.10",
    via_port: int | None = 5060,
    via_params: str = "",
    cseq: int = 1,
    cseq_method: str | None = None,
    to_tag: str | None = None,
    from_tag: str = "ft1",
    call_id: str = "call-1@example.net",
    uri: str = "sip:srs@srs.example.net",
    transport: str = "UDP",
) -> bytes:
    """A minimal request whose transaction-relevant fields can be varied one at a time."""
    port = f":{via_port}" if via_port is not None else ""
    branch_param = f";branch={branch}" if branch else ""
    to = "<sip:srs@srs.example.net>" + (f";tag={to_tag}" if to_tag else "")
    return crlf(
        f"""{method} {uri} SIP/2.0
Via: SIP/2.0/{transport} {via_host}{port}{branch_param}{via_params}
Max-Forwards: 70
From: <sip:sbc@example.net>;tag={from_tag}
To: {to}
Call-ID: {call_id}
CSeq: {cseq} {cseq_method or method}
Contact: <sip:sbc@{via_host}:5060>
Content-Length: 0

"""
    )
