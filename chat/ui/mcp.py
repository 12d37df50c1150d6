"""The MCP server Gradio runs beside the app (``launch(mcp_server=True)``), fitted to Retouch.

Four of its internals need fixing, here and nowhere else (tests/test_mcp.py proves both against
a running app with the official ``mcp`` client):

- Images a tool returns become image content by being opened with Pillow and saved again
  (``GradioMCPServer.get_base64_data``): the pixels survive, the bytes do not, so an agent's copy
  would not hash to the sha256 the transcript names and an answer's own metadata would be lost.
  Here the file's own bytes go, when the file is what Pillow read.
- A ``data:`` URI an agent passes as a file is written to ``gradio.mcp.DEFAULT_TEMP_DIR``, fixed
  when gradio is imported, before app.py puts Gradio's folder in a private place of ours
  (``GRADIO_TEMP_DIR``): the upload would land outside the folder uploads are read from
  (chat/ui/uploads.py) and be refused. It is pointed at that folder.
- Which arguments are files is found by walking the tool's JSON schema, and the places are kept
  as schema paths (``["images", "oneOf", 1, "items"]``) but looked up as paths in the arguments
  (``["images", 0]``): only a file argument that is neither optional nor a list would ever match,
  and Retouch has none, so every URL or data: URI reached the endpoint as a bare string (and was
  refused as no upload). ``value_paths`` turns the schema's places into the arguments'.
- A JSON result (a transcript) becomes text by ``str()``: a Python repr, which an agent cannot
  parse as JSON. Results that are no file go as JSON text.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import gradio as gr
import gradio.mcp
from PIL import Image

from chat.ui.uploads import upload_root

__all__ = ["fit_mcp_server"]


def fit_mcp_server(demo: gr.Blocks) -> None:
    """After ``launch``: the MCP server (if it started) sends images' own bytes and saves
    ``data:`` URIs where uploads are read from."""
    server = demo.mcp_server_obj
    if server is None:
        return
    gradio.mcp.DEFAULT_TEMP_DIR = str(upload_root())
    reencode, convert = server.get_base64_data, server.convert_strings_to_filedata
    postprocess = server.postprocess_output_data

    def stored_bytes(image: Image.Image, format: str) -> str:
        path = getattr(image, "filename", "")
        if path and image.format == format:  # the file as Pillow found it: send it unchanged
            return base64.b64encode(Path(path).read_bytes()).decode("ascii")
        return reencode(image, format)

    def convert_files(value: Any, schema_paths: list[list[str | int]]) -> Any:
        return convert(value, value_paths(value, schema_paths))

    def as_json(data: Any, root_url: str) -> Any:
        return postprocess([_json_text(output) for output in data], root_url)

    # Set on the instance, which the server calls them through (methods of Gradio's class).
    server.get_base64_data = stored_bytes  # type: ignore[method-assign]  # see above
    server.convert_strings_to_filedata = convert_files  # type: ignore[method-assign, assignment]  # see above
    server.postprocess_output_data = as_json  # type: ignore[method-assign]  # see above


def _json_text(output: Any) -> Any:
    """A result as Gradio's MCP server should say it: JSON, unless it is a file (Gradio's to send)."""
    is_file = isinstance(output, dict) and (output.get("meta") or {}).get("_type") == "gradio.FileData"
    if isinstance(output, str) or is_file:
        return output
    return json.dumps(output, ensure_ascii=False)


def value_paths(value: Any, schema_paths: Sequence[Sequence[str | int]]) -> list[list[str | int]]:
    """Where in ``value`` (a tool's arguments) the files are, given where the schema has them:
    a union's branch (``oneOf``/``anyOf``, index) is no step in the value, ``items`` is every index
    of the list found there."""
    found: list[list[str | int]] = []

    def walk(node: Any, steps: Sequence[str | int], at: list[str | int]) -> None:
        if not steps:
            found.append(at)
        elif steps[0] in ("oneOf", "anyOf") and len(steps) > 1:
            walk(node, steps[2:], at)
        elif steps[0] == "items":
            for index, item in enumerate(node if isinstance(node, list) else []):
                walk(item, steps[1:], [*at, index])
        elif isinstance(node, dict) and steps[0] in node:
            walk(node[steps[0]], steps[1:], [*at, steps[0]])

    for steps in schema_paths:
        walk(value, list(steps), [])
    return found
