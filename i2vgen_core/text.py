"""Prompt tokenization of the original I2VGen-XL / ModelScope code (``open_clip.tokenize``), around any CLIP BPE.

The originals tokenize with open_clip: the text is cleaned (``ftfy.fix_text``, HTML entities unescaped twice,
whitespace collapsed, lower-cased), byte-pair encoded with the CLIP vocabulary, framed by the start and end tokens,
truncated to 77 with the end token kept last, and padded with 0. ComfyUI's ``CLIPTextEncode`` differs in two ways
before the BPE: it reads ``(text:1.2)`` emphasis syntax (the brackets and weights are not tokens) and it cleans
with NFC + lower case only, so curly quotes, ligatures, full-width letters and HTML entities give other tokens.
The BPE itself (the vocabulary and the split pattern) is the same, so this module only cleans and frames.
"""

from __future__ import annotations

import html
import unicodedata
from typing import Callable, Sequence

__all__ = ["CONTEXT_LENGTH", "START_TOKEN", "END_TOKEN", "PAD_TOKEN", "clean_prompt", "frame_tokens",
           "open_clip_ids"]

CONTEXT_LENGTH = 77
START_TOKEN = 49406
END_TOKEN = 49407
#: open_clip pads with 0 (``torch.zeros`` filled from the left); transformers' tokenizer pads with the end token.
PAD_TOKEN = 0

# What ftfy.fix_text changes in ordinary prompts, for when ftfy is not installed: curly quotes, Latin ligatures,
# full-width ASCII and the ideographic space.
_UNCURL = {ord(c): "'" for c in "\u2018\u2019\u201a\u201b"} | {ord(c): '"' for c in "\u201c\u201d\u201e\u201f"}
_LIGATURES = {0xFB00: "ff", 0xFB01: "fi", 0xFB02: "fl", 0xFB03: "ffi", 0xFB04: "ffl", 0xFB05: "\u017ft",
              0xFB06: "st", 0x0132: "IJ", 0x0133: "ij", 0x01C4: "D\u017d", 0x01C5: "D\u017e", 0x01C6: "d\u017e",
              0x01C7: "LJ", 0x01C8: "Lj", 0x01C9: "lj", 0x01CA: "NJ", 0x01CB: "Nj", 0x01CC: "nj", 0x01F1: "DZ",
              0x01F2: "Dz", 0x01F3: "dz", 0x0149: "\u02bcn"}
_WIDTH = {c: c - 0xFEE0 for c in range(0xFF01, 0xFF5F)} | {0x3000: " "}


def _fix_text_fallback(text: str) -> str:
    """The parts of ``ftfy.fix_text`` that change ordinary prompts (quotes, ligatures, width, NFC)."""
    return unicodedata.normalize("NFC", text.translate(_UNCURL).translate(_LIGATURES).translate(_WIDTH))


def _fix_text() -> Callable[[str], str]:
    try:
        import ftfy
    except ImportError:
        return _fix_text_fallback
    return ftfy.fix_text


def clean_prompt(text: str, fix_text: Callable[[str], str] | None = None) -> str:
    """open_clip's cleaning: ``fix_text``, HTML unescaped twice, whitespace collapsed, lower case.

    ``fix_text`` defaults to ``ftfy.fix_text`` (what open_clip calls) when ftfy is installed, else to the subset of it
    that matters for prompts.
    """
    text = (fix_text or _fix_text())(text)
    text = html.unescape(html.unescape(text)).strip()
    return " ".join(text.split()).strip().lower()


def frame_tokens(bpe_ids: Sequence[int], context_length: int = CONTEXT_LENGTH) -> list[int]:
    """Start token + ids + end token, truncated to ``context_length`` with the end token last, padded with 0."""
    tokens = [START_TOKEN, *map(int, bpe_ids), END_TOKEN]
    if len(tokens) > context_length:
        tokens = tokens[:context_length]
        tokens[-1] = END_TOKEN
    return tokens + [PAD_TOKEN] * (context_length - len(tokens))


def open_clip_ids(text: str, bpe: Callable[[str], Sequence[int]], context_length: int = CONTEXT_LENGTH,
                  fix_text: Callable[[str], str] | None = None) -> list[int]:
    """``open_clip.tokenize(text)[0]`` given a CLIP byte-pair encoder ``bpe`` (cleaned text -> ids, no framing)."""
    return frame_tokens(bpe(clean_prompt(text, fix_text)), context_length)
