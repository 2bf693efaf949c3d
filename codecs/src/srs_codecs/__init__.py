"""Audio payload decoders for srs: every codec comes out as 8 kHz mono int16 numpy blocks."""

from srs_codecs.base import OUTPUT_RATE, Decoder, Pcm
from srs_codecs.errors import CodecError, DecodeError, UnsupportedCodec
from srs_codecs.g711 import decode_alaw, decode_ulaw, encode_alaw, encode_ulaw
from srs_codecs.registry import get_decoder, is_supported, supported_codecs

__all__ = [
    "OUTPUT_RATE",
    "CodecError",
    "DecodeError",
    "Decoder",
    "Pcm",
    "UnsupportedCodec",
    "decode_alaw",
    "decode_ulaw",
    "encode_alaw",
    "encode_ulaw",
    "get_decoder",
    "is_supported",
    "supported_codecs",
]
