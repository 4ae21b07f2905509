"""CPU checks (no ComfyUI) of the animated-preview setting the server keeps per browser: bounded, connected browsers
kept, hostile POST bodies refused with a sentence."""

from __future__ import annotations

import pytest

from helpers import pack_module


preview = pack_module("preview")


def test_settings_stay_within_the_limit_whatever_ids_are_posted():
    settings = preview.ClientSettings(limit=50)
    for i in range(5000):
        settings.set(f"client-{i}", True)
    assert len(settings) == 50
    assert settings.wants("client-4999") and not settings.wants("client-0")


def test_a_connected_browser_keeps_its_setting_while_other_ids_flood_in():
    connected = {"browser"}
    settings = preview.ClientSettings(limit=8, connected=connected.__contains__)
    settings.set("browser", True)
    for i in range(1000):
        settings.set(f"script-{i}", True)
    assert settings.wants("browser") and len(settings) == 8
    connected.clear()  # the browser left: now it is the oldest disconnected one
    for i in range(8):
        settings.set(f"later-{i}", True)
    assert not settings.wants("browser")


def test_when_every_client_is_connected_the_least_recently_set_goes():
    settings = preview.ClientSettings(limit=3, connected=lambda client_id: True)
    for name in ("a", "b", "c", "d"):
        settings.set(name, True)
    assert [settings.wants(n) for n in "abcd"] == [False, True, True, True]


def test_turning_previews_off_stores_nothing():
    settings = preview.ClientSettings(limit=4)
    settings.set("x", True)
    settings.set("x", False)
    for i in range(100):
        settings.set(f"off-{i}", False)
    assert len(settings) == 0 and not settings.wants("x")


def test_setting_again_refreshes_a_client():
    settings = preview.ClientSettings(limit=2)
    settings.set("a", True)
    settings.set("b", True)
    settings.set("a", True)
    settings.set("c", True)
    assert settings.wants("a") and not settings.wants("b")


@pytest.mark.parametrize("body", [
    None, [], "text", 3, {}, {"client_id": "x"}, {"animated": True}, {"client_id": 5, "animated": True},
    {"client_id": "", "animated": True}, {"client_id": "x" * (preview.MAX_CLIENT_ID_CHARS + 1), "animated": True},
    {"client_id": "x", "animated": "false"}, {"client_id": "x", "animated": 1}, {"client_id": None, "animated": None},
    {"client_id": ["x"], "animated": True},
])
def test_bad_bodies_are_refused_with_what_is_expected(body):
    with pytest.raises(ValueError, match="expected JSON"):
        preview.preview_setting(body)


def test_good_bodies_are_read():
    assert preview.preview_setting({"client_id": "abc", "animated": True}) == ("abc", True)
    assert preview.preview_setting({"client_id": "ü" * preview.MAX_CLIENT_ID_CHARS, "animated": False,
                                    "extra": 1}) == ("ü" * preview.MAX_CLIENT_ID_CHARS, False)
