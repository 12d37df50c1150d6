"""The MCP server, as an agent sees it: the official ``mcp`` client over streamable HTTP against
the real app process and the emulator (Gradio's built-in server at /gradio_api/mcp/).

List the tools, edit an uploaded photo in two turns, get the answer back byte for byte, bring
your own key in a header, and a read-only share token refused on every write.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.types import CallToolResult, ImageContent, TextContent

from tests.app_process import running_app
from tests.emulator import read_provenance
from tests.pictures import png

pytestmark = pytest.mark.asyncio

WRITES = {"send", "retry", "stop", "pick", "share", "revoke", "quick_edit"}
READS = {"conversation", "image", "conversations", "fork"}


@asynccontextmanager
async def mcp_session(app_url: str, headers: Mapping[str, str] | None = None) -> AsyncIterator[ClientSession]:
    async with (
        httpx.AsyncClient(headers=dict(headers or {}), timeout=60) as http,
        streamable_http_client(f"{app_url}gradio_api/mcp/", http_client=http) as (read, write, _),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        yield session


def transcript(result: CallToolResult) -> dict[str, Any]:
    assert not result.isError, result.content
    [content] = result.content
    assert isinstance(content, TextContent)
    return json.loads(content.text)


def refusal(result: CallToolResult) -> str:
    assert result.isError
    return " ".join(c.text for c in result.content if isinstance(c, TextContent))


async def test_an_agent_lists_the_tools_and_edits_a_photo_in_two_turns(tmp_path, emulator):
    photo = png((90, 140, 200), (320, 240))
    data_uri = "data:image/png;base64," + base64.b64encode(photo).decode()

    with running_app(tmp_path / "data", emulator.url) as url:
        async with mcp_session(url, {"X-Gemini-Api-Key": "agent-own-gemini-key"}) as session:
            tools = {tool.name: tool for tool in (await session.list_tools()).tools}
            assert set(tools) >= WRITES | READS
            send = tools["send"]
            assert send.description and send.description.startswith("Start or continue an image edit")
            described = send.inputSchema["properties"]
            assert "data: URI" in described["images"]["description"]
            assert described["key"]["description"] and described["conversation_id"]["description"]
            assert "x_gemini_api_key" not in described  # a header, never an argument an agent echoes

            first = transcript(
                await session.call_tool(
                    "send", {"conversation_id": "", "text": "make the sky stormy", "images": [data_uri]}
                )
            )
            conversation_id, key = first["conversation_id"], first["owner_key"]
            second = transcript(
                await session.call_tool(
                    "send", {"conversation_id": conversation_id, "text": "now remove the car", "key": key}
                )
            )
            assert [t["status"] for t in second["turns"]] == ["ok"] * 4
            assert [t["version"] for t in second["turns"]] == [None, "v1", None, "v2"]
            # The upload went in as the very bytes sent; the header's key was used, for this call only.
            requests = emulator.requests()
            sent = requests[0]["body"]["contents"][0]["parts"][0]["inlineData"]
            assert base64.b64decode(sent["data"]) == photo
            assert {r["headers"]["x-goog-api-key"] for r in requests} == {"agent-own-gemini-key"}
            assert len(requests[1]["body"]["contents"]) == 3  # the second turn replayed the first

            sha = second["turns"][-1]["image_sha256"]
            fetched = await session.call_tool(
                "image", {"conversation_id": conversation_id, "sha256": sha, "key": key}
            )
            assert not fetched.isError
            image = next(c for c in fetched.content if isinstance(c, ImageContent))
            data = base64.b64decode(image.data)
            assert hashlib.sha256(data).hexdigest() == sha and image.mimeType == "image/png"
            assert read_provenance(data)["contents"] == 3  # the answer's own metadata came too

            read = transcript(
                await session.call_tool("conversation", {"conversation_id": conversation_id, "key": key})
            )
            assert read["turns"] == second["turns"]
            listed = await session.call_tool("conversations", {"key": key})
            assert json.loads(listed.content[0].text)[0]["conversation_id"] == conversation_id  # type: ignore[union-attr]
    stored = (tmp_path / "data").rglob("*.db")
    assert all(b"agent-own-gemini-key" not in path.read_bytes() for path in stored)


async def test_a_read_only_token_reads_but_every_write_is_refused(tmp_path, emulator):
    with running_app(tmp_path / "data", emulator.url) as url:
        async with mcp_session(url) as session:
            first = transcript(await session.call_tool("send", {"conversation_id": "", "text": "a red kite"}))
            conversation_id, key = first["conversation_id"], first["owner_key"]
            token_result = await session.call_tool(
                "share", {"conversation_id": conversation_id, "kind": "view", "key": key}
            )
            assert not token_result.isError
            token = token_result.content[0].text  # type: ignore[union-attr]
            emulator.clear_requests()

            as_viewer = {"conversation_id": conversation_id, "key": token}
            assert transcript(await session.call_tool("conversation", as_viewer))["turns"] == first["turns"]
            for tool, extra in [
                ("send", {"text": "paint it blue"}),
                ("retry", {}),
                ("stop", {}),
                ("pick", {"version": "v1"}),
                ("share", {"kind": "continue"}),
                ("revoke", {"token": token}),
                ("quick_edit", {"edit": {"kind": "rotate", "degrees": 90}}),
            ]:
                message = refusal(await session.call_tool(tool, {**as_viewer, **extra}))
                assert "Traceback" not in message and token not in message, (tool, message)
            assert emulator.requests() == []  # nothing reached a model
            again = transcript(
                await session.call_tool("conversation", {"conversation_id": conversation_id, "key": key})
            )
            assert again["turns"] == first["turns"]  # nothing was written
            bad = refusal(
                await session.call_tool("conversation", {"conversation_id": conversation_id, "key": "../etc"})
            )
            assert "owner key or a share token" in bad
