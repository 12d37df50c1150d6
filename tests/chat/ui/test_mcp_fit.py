"""chat/ui/mcp.py's fixes to Gradio's MCP server that need no server (tests/test_mcp.py runs the rest)."""

from __future__ import annotations

import json

from chat.ui.mcp import _json_text, value_paths

# The places Gradio's schema walk records for send's arguments (an optional list of files, an optional file).
SCHEMA_PATHS: list[list[str | int]] = [["images", "oneOf", 1, "items"], ["mask", "oneOf", 1]]


def test_the_schema_places_of_files_become_places_in_the_arguments():
    arguments = {
        "conversation_id": "",
        "images": ["data:image/png;base64,AA", "https://x/y.png"],
        "mask": "m",
    }
    assert value_paths(arguments, SCHEMA_PATHS) == [["images", 0], ["images", 1], ["mask"]]


def test_absent_or_empty_file_arguments_have_no_places():
    assert value_paths({"text": "hi"}, SCHEMA_PATHS) == []
    assert value_paths({"images": [], "mask": None}, SCHEMA_PATHS) == [["mask"]]  # None is left as it is
    assert value_paths({"images": "not a list"}, SCHEMA_PATHS) == []


def test_results_go_as_json_text_and_files_as_files():
    transcript = {"conversation_id": "c", "title": "Caf\u00e9", "turns": []}
    assert json.loads(_json_text(transcript)) == transcript
    assert _json_text("a token") == "a token"
    assert _json_text(True) == "true"
    file = {"path": "/tmp/x.png", "meta": {"_type": "gradio.FileData"}}
    assert _json_text(file) is file
