"""Which (encoding, clock rate, channels) srs can decode, and the decoder for one stream."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass

from srs_codecs.base import Decoder
from srs_codecs.errors import UnsupportedCodec
from srs_codecs.g711 import G711Decoder
from srs_codecs.l16 import L16_RATES, L16Decoder

HAVE_PYAV = importlib.util.find_spec("av") is not None


def parse_fmtp(fmtp: str | None) -> dict[str, str]:
    """``a=fmtp`` parameters as a dict with lower-case keys (``octet-align=1; mode-set=0,2``)."""
    params: dict[str, str] = {}
    for item in (fmtp or "").split(";"):
        key, _, value = item.strip().partition("=")
        if key:
            params[key.strip().lower()] = value.strip()
    return params


@dataclass(frozen=True, slots=True)
class _Spec:
    clock_rates: tuple[int, ...]
    channels: tuple[int, ...]
    ffmpeg_decoders: tuple[str, ...]  # any one of them is enough; empty: pure numpy
    build: Callable[[int, int, dict[str, str]], Decoder]


def _g722(_rate: int, _channels: int, _fmtp: dict[str, str]) -> Decoder:
    from srs_codecs.pyav import G722Decoder

    return G722Decoder()


def _g729(name: str) -> Callable[[int, int, dict[str, str]], Decoder]:
    def build(_rate: int, _channels: int, _fmtp: dict[str, str]) -> Decoder:
        from srs_codecs.pyav import G729Decoder

        return G729Decoder(name)

    return build


def _opus(_rate: int, _channels: int, _fmtp: dict[str, str]) -> Decoder:
    from srs_codecs.pyav import OpusDecoder

    return OpusDecoder()


def _amr(wideband: bool) -> Callable[[int, int, dict[str, str]], Decoder]:
    def build(_rate: int, _channels: int, fmtp: dict[str, str]) -> Decoder:
        from srs_codecs.pyav import AmrDecoder

        if fmtp.get("interleaving") or fmtp.get("robust-sorting", "0") != "0":
            raise UnsupportedCodec("AMR interleaving / robust sorting is not supported")
        return AmrDecoder(
            wideband=wideband,
            octet_aligned=fmtp.get("octet-align", "0") == "1",
            crc=fmtp.get("crc", "0") == "1",
        )

    return build


_SPECS: dict[str, _Spec] = {
    "PCMU": _Spec((8000,), (1,), (), lambda _r, _c, _f: G711Decoder("PCMU")),
    "PCMA": _Spec((8000,), (1,), (), lambda _r, _c, _f: G711Decoder("PCMA")),
    "L16": _Spec(L16_RATES, (1, 2), (), lambda rate, channels, _f: L16Decoder(rate, channels)),
    "G722": _Spec((8000,), (1,), ("g722",), _g722),
    "G729": _Spec((8000,), (1,), ("g729",), _g729("G729")),
    "G729A": _Spec((8000,), (1,), ("g729",), _g729("G729A")),
    "G729B": _Spec((8000,), (1,), ("g729",), _g729("G729B")),
    "G729AB": _Spec((8000,), (1,), ("g729",), _g729("G729AB")),
    "OPUS": _Spec((48000,), (1, 2), ("opus", "libopus"), _opus),
    "AMR": _Spec((8000,), (1,), ("libopencore_amrnb", "amrnb"), _amr(wideband=False)),
    "AMR-WB": _Spec((16000,), (1,), ("libopencore_amrwb", "amrwb"), _amr(wideband=True)),
}


def _library_present(spec: _Spec) -> bool:
    if not spec.ffmpeg_decoders:
        return True
    if not HAVE_PYAV:
        return False
    from srs_codecs.pyav import first_available

    return first_available(*spec.ffmpeg_decoders) is not None


def _find(encoding: str, clock_rate: int, channels: int) -> _Spec:
    spec = _SPECS.get(encoding.strip().upper())
    if spec is None:
        raise UnsupportedCodec(f"unknown encoding {encoding!r}")
    if clock_rate not in spec.clock_rates:
        raise UnsupportedCodec(f"{encoding} at clock rate {clock_rate} is not supported")
    if channels not in spec.channels:
        raise UnsupportedCodec(f"{encoding} with {channels} channels is not supported")
    if not _library_present(spec):
        raise UnsupportedCodec(f"{encoding} needs PyAV with one of: {', '.join(spec.ffmpeg_decoders)}")
    return spec


def is_supported(encoding: str, clock_rate: int, channels: int = 1) -> bool:
    """True when :func:`get_decoder` would succeed (fmtp aside)."""
    try:
        _find(encoding, clock_rate, channels)
    except UnsupportedCodec:
        return False
    return True


def get_decoder(encoding: str, clock_rate: int, channels: int = 1, fmtp: str | None = None) -> Decoder:
    """A fresh decoder for one RTP stream; raises UnsupportedCodec."""
    spec = _find(encoding, clock_rate, channels)
    try:
        return spec.build(clock_rate, channels, parse_fmtp(fmtp))
    except UnsupportedCodec:
        raise
    except (ValueError, ImportError) as exc:
        raise UnsupportedCodec(f"{encoding}/{clock_rate}/{channels}: {exc}") from exc


def supported_codecs() -> list[tuple[str, int]]:
    """Every (encoding, clock rate) decodable here, in SDP spelling."""
    spelled = {"OPUS": "opus"}
    return [
        (spelled.get(name, name), rate)
        for name, spec in _SPECS.items()
        if _library_present(spec)
        for rate in spec.clock_rates
    ]
