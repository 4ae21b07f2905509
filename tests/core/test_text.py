"""open_clip's prompt tokenization (what the original I2VGen-XL code calls) as i2vgen_core.text pins it: cleaning,
framing, truncation and padding. The expected strings and ids were produced by open_clip 3.3.0 (``_clean_lower``,
``open_clip.tokenize``) with ftfy 6.3; the fallback without ftfy gives the same for these prompts."""

from __future__ import annotations

import pytest

from i2vgen_core.text import (CONTEXT_LENGTH, END_TOKEN, PAD_TOKEN, START_TOKEN, _fix_text_fallback, clean_prompt,
                              frame_tokens, open_clip_ids)

CLEANED = [
    ("A small sailboat, drifting", "a small sailboat, drifting"),
    ("  Two  spaces\n\tand TABS ", "two spaces and tabs"),
    ("he said \u201chi\u201d &amp; left", 'he said "hi" & left'),
    ("it\u2019s", "it's"),
    ("\ufb01ne \uff21\uff22\uff23\uff01", "fine abc!"),
    ("Caf\u00e9 na\u00efve \u6771\u4eac \U0001f431", "caf\u00e9 na\u00efve \u6771\u4eac \U0001f431"),
    ("a &amp;amp; b", "a & b"),
    ("cat (fluffy:1.2)", "cat (fluffy:1.2)"),  # literal text: the original knows no emphasis syntax
    ("e\u0301", "\u00e9"),
]


@pytest.mark.parametrize("text,expected", CLEANED)
def test_clean_prompt_equals_open_clip(text, expected):
    assert clean_prompt(text) == expected
    assert clean_prompt(text, _fix_text_fallback) == expected


def test_frame_tokens_pads_with_zero_and_keeps_the_end_token_last():
    ids = frame_tokens([320, 1125, 539, 320, 2368])  # open_clip.tokenize("a photo of a cat")
    assert ids[:8] == [START_TOKEN, 320, 1125, 539, 320, 2368, END_TOKEN, PAD_TOKEN] and PAD_TOKEN == 0
    assert len(ids) == CONTEXT_LENGTH and set(ids[7:]) == {0}
    long = frame_tokens(range(1, 200))
    assert len(long) == CONTEXT_LENGTH and long[0] == START_TOKEN and long[-1] == END_TOKEN
    assert long[1:-1] == list(range(1, 76))


def test_open_clip_ids_cleans_before_the_bpe():
    seen = []
    ids = open_clip_ids("  He said \u201cHI\u201d ", lambda text: seen.append(text) or [1, 2])
    assert seen == ['he said "hi"'] and ids[:4] == [START_TOKEN, 1, 2, END_TOKEN]
