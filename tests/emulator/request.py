"""Parsing and validation of ``GenerateContentRequest`` bodies (reference §2, §4).

The real service accepts proto JSON in camelCase and snake_case alike, and the
official SDK sends a mix of both (``inlineData`` with an inner ``mime_type``) with
URL-safe base64 bytes. So keys are normalised to camelCase first (both spellings of
one field in one object is a 400, as in proto JSON) and base64 is decoded leniently.
Everything the real Developer API is known to reject answers 400 INVALID_ARGUMENT
with a message shaped like the real one.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass, field, replace
from typing import Any

import pybase64
from PIL import Image

from . import images, signatures
from .errors import ApiError, invalid
from .models import IMAGE_SIZES, ModelSpec

DATA_FIELDS: dict[str, str] = {
    "text": "Text",
    "inlineData": "Image",
    "fileData": "File data",
    "functionCall": "Function call",
    "functionResponse": "Function response",
    "executableCode": "Executable code",
    "codeExecutionResult": "Code execution result",
    "toolCall": "Tool call",
    "toolResponse": "Tool response",
}

#: Free-form JSON values whose keys belong to the caller, not to the proto schema.
_OPAQUE_KEYS = frozenset(
    {
        "args",
        "response",
        "responseSchema",
        "responseJsonSchema",
        "parameters",
        "parametersJsonSchema",
        "labels",
    }
)

_TOP_LEVEL_FIELDS = frozenset(
    {
        "model",
        "contents",
        "generationConfig",
        "safetySettings",
        "systemInstruction",
        "tools",
        "toolConfig",
        "cachedContent",
        "serviceTier",
        "store",
        "continuationToken",
        "labels",
    }
)
_GENERATION_CONFIG_FIELDS = frozenset(
    {
        "temperature",
        "topP",
        "topK",
        "candidateCount",
        "maxOutputTokens",
        "stopSequences",
        "seed",
        "presencePenalty",
        "frequencyPenalty",
        "responseLogprobs",
        "logprobs",
        "responseMimeType",
        "responseSchema",
        "responseJsonSchema",
        "responseModalities",
        "mediaResolution",
        "speechConfig",
        "thinkingConfig",
        "imageConfig",
        "enableEnhancedCivicAnswers",
    }
)
_IMAGE_CONFIG_FIELDS = frozenset({"aspectRatio", "imageSize"})
_THINKING_FIELDS = frozenset({"includeThoughts", "thinkingBudget", "thinkingLevel"})
_THINKING_LEVELS = frozenset({"MINIMAL", "LOW", "MEDIUM", "HIGH", "XHIGH"})
_SAFETY_FIELDS = frozenset({"category", "threshold"})
SAFETY_CATEGORIES = frozenset(
    {
        "HARM_CATEGORY_HARASSMENT",
        "HARM_CATEGORY_HATE_SPEECH",
        "HARM_CATEGORY_SEXUALLY_EXPLICIT",
        "HARM_CATEGORY_DANGEROUS_CONTENT",
        "HARM_CATEGORY_CIVIC_INTEGRITY",
    }
)
SAFETY_THRESHOLDS = frozenset(
    {"BLOCK_LOW_AND_ABOVE", "BLOCK_MEDIUM_AND_ABOVE", "BLOCK_ONLY_HIGH", "BLOCK_NONE", "OFF"}
)
_MODALITIES = frozenset({"TEXT", "IMAGE", "AUDIO", "VIDEO"})
_UNSUPPORTED_IMAGE_MESSAGE = (
    "Unable to process input image. Please retry or report in "
    "https://developers.generativeai.google/guide/troubleshooting"
)


# ---------------------------------------------------------------- low-level helpers


def camel(key: str) -> str:
    head, *rest = key.split("_")
    return head + "".join(word[:1].upper() + word[1:] for word in rest)


def snake(key: str) -> str:
    return re.sub(r"(?<!^)([A-Z])", r"_\1", key).lower()


def normalize_keys(value: Any, path: str = "") -> Any:
    """Rename snake_case keys to camelCase, recursively; duplicate spellings are a 400."""
    if isinstance(value, list):
        return [normalize_keys(item, f"{path}[{i}]") for i, item in enumerate(value)]
    if not isinstance(value, dict):
        return value
    out: dict[str, Any] = {}
    for key, item in value.items():
        name = camel(key)
        if name in out:
            raise invalid(
                f"Invalid JSON payload received. Duplicate value for field \"{snake(name)}\" at '{path}'."
            )
        child_path = f"{path}.{snake(name)}" if path else snake(name)
        out[name] = item if name in _OPAQUE_KEYS else normalize_keys(item, child_path)
    return out


def b64decode(text: str) -> bytes:
    """Decode standard or URL-safe base64, with or without padding.

    Strict standard base64 (what clients send) first, by pybase64: ~1 ms for a 1K photo where the
    lenient path takes ~12, on the CPUs the app under test shares (bench/capacity.py).
    """
    try:
        return pybase64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        pass
    cleaned = "".join(text.split()).rstrip("=").translate(str.maketrans("-_", "+/"))
    return base64.b64decode(cleaned + "=" * (-len(cleaned) % 4), validate=True)


def _reject_unknown(obj: dict[str, Any], known: frozenset[str], path: str) -> None:
    for key in obj:
        if key not in known:
            where = f" at '{path}'" if path else ""
            raise invalid(f'Invalid JSON payload received. Unknown name "{key}"{where}: Cannot find field.')


def _object(value: Any, path: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise invalid(f"Invalid JSON payload received. Expected an object at '{path}'.")
    return value


def _list(value: Any, path: str) -> list[Any]:
    if not isinstance(value, list):
        raise invalid(f"Invalid JSON payload received. Expected a list at '{path}'.")
    return value


# ---------------------------------------------------------------- parsed request


@dataclass
class Part:
    """One part of a content, with its single data field decoded."""

    position: int  # 1-based, as in the real error messages
    kind: str  # a DATA_FIELDS key
    thought: bool
    text: str | None = None
    mime: str | None = None
    data: bytes | None = None
    image: Image.Image | None = None
    raw_value: Any = None
    signature: str | None = None
    signature_bytes: bytes | None = None


@dataclass
class Content:
    position: int  # 1-based
    role: str
    parts: list[Part]


@dataclass
class GenerateRequest:
    """A validated request: what the response builder and the fault logic need."""

    model: ModelSpec
    contents: list[Content]
    modalities: tuple[str, ...] | None = None
    aspect_ratio: str | None = None
    image_size: str | None = None
    include_thoughts: bool = False
    system_text: str = ""
    raw: dict[str, Any] = field(default_factory=dict)

    @property
    def latest_user_text(self) -> str:
        """Text of the last user content (its non-thought text parts, newline-joined)."""
        for content in reversed(self.contents):
            if content.role == "user":
                return "\n".join(
                    p.text for p in content.parts if p.kind == "text" and not p.thought and p.text
                )
        return ""

    @property
    def input_images(self) -> list[Part]:
        return [p for c in self.contents for p in c.parts if p.kind == "inlineData"]

    @property
    def text_chars(self) -> int:
        return len(self.system_text) + sum(
            len(p.text or "") for c in self.contents for p in c.parts if p.kind == "text"
        )


# ---------------------------------------------------------------- validation


def _generation_config(config: dict[str, Any], spec: ModelSpec, req: GenerateRequest) -> None:
    _reject_unknown(config, _GENERATION_CONFIG_FIELDS, "generation_config")
    count = config.get("candidateCount")
    if count is not None:
        if not isinstance(count, int) or isinstance(count, bool) or count < 0:
            raise invalid(
                "* GenerateContentRequest.generation_config.candidate_count: must be a positive integer"
            )
        if count > 1:
            raise invalid(f"Multiple candidates is not enabled for models/{spec.id}")

    modalities = config.get("responseModalities")
    if modalities is not None:
        values = []
        for i, item in enumerate(_list(modalities, "generation_config.response_modalities")):
            upper = item.upper() if isinstance(item, str) else None
            if upper not in _MODALITIES:
                raise invalid(
                    f"Invalid value at 'generation_config.response_modalities[{i}]' "
                    f'(type.googleapis.com/google.ai.generativelanguage.v1beta.GenerationConfig.Modality), "{item}"'
                )
            values.append(upper)
        unsupported = [m for m in values if m not in ("TEXT", "IMAGE")]
        if unsupported:
            raise invalid(
                f"Model models/{spec.id} does not support the requested response modalities: "
                + ",".join(m.lower() for m in unsupported)
            )
        req.modalities = tuple(values) or None

    image_config = config.get("imageConfig")
    if image_config is not None:
        image_config = _object(image_config, "generation_config.image_config")
        _reject_unknown(image_config, _IMAGE_CONFIG_FIELDS, "generation_config.image_config")
        size = image_config.get("imageSize")
        if size is not None:
            if size not in IMAGE_SIZES:
                raise invalid(f"Invalid image size: {size}. Supported values are: {', '.join(IMAGE_SIZES)}.")
            if size not in spec.image_sizes:
                raise invalid(
                    f"Image size {size} is not supported by models/{spec.id}. "
                    f"Supported values are: {', '.join(spec.image_sizes)}."
                )
            req.image_size = size
        ratio = image_config.get("aspectRatio")
        if ratio is not None:
            if ratio not in spec.aspect_ratios:
                raise invalid(
                    f"Unsupported aspect ratio: {ratio}. Supported values for models/{spec.id} are: "
                    f"{', '.join(spec.aspect_ratios)}."
                )
            req.aspect_ratio = ratio

    thinking = config.get("thinkingConfig")
    if thinking is not None:
        thinking = _object(thinking, "generation_config.thinking_config")
        _reject_unknown(thinking, _THINKING_FIELDS, "generation_config.thinking_config")
        include = thinking.get("includeThoughts", False)
        if not isinstance(include, bool):
            raise invalid(
                "Invalid value at 'generation_config.thinking_config.include_thoughts' (TYPE_BOOL), "
                f"{json.dumps(include)}"
            )
        level = thinking.get("thinkingLevel")
        if level is not None and level not in _THINKING_LEVELS:
            raise invalid(
                "Invalid value at 'generation_config.thinking_config.thinking_level' "
                f'(type.googleapis.com/google.ai.generativelanguage.v1beta.ThinkingConfig.ThinkingLevel), "{level}"'
            )
        if level is not None and thinking.get("thinkingBudget") is not None:
            raise invalid("You can only set only one of thinking budget and thinking level.")
        req.include_thoughts = include


def _safety_settings(settings: Any) -> None:
    for i, setting in enumerate(_list(settings, "safety_settings")):
        path = f"safety_settings[{i}]"
        setting = _object(setting, path)
        _reject_unknown(setting, _SAFETY_FIELDS, path)
        category = setting.get("category")
        if category not in SAFETY_CATEGORIES:
            raise invalid(
                f"Invalid value at '{path}.category' "
                f'(type.googleapis.com/google.ai.generativelanguage.v1beta.HarmCategory), "{category}"'
            )
        threshold = setting.get("threshold")
        if threshold not in SAFETY_THRESHOLDS:
            raise invalid(
                f"Invalid value at '{path}.threshold' (type.googleapis.com/google.ai.generativelanguage."
                f'v1beta.SafetySetting.HarmBlockThreshold), "{threshold}"'
            )


def _part(raw: Any, index: int, path: str) -> Part:
    raw = _object(raw, path)
    present = [name for name in DATA_FIELDS if name in raw]
    if not present:
        raise invalid(
            f"* GenerateContentRequest.{path}.data: required oneof field 'data' must have one initialized field"
        )
    if len(present) > 1:
        raise invalid(
            f"Invalid JSON payload received. Invalid value at '{path}': oneof field 'data' is already set. "
            f"Cannot set '{snake(present[1])}'"
        )
    kind = present[0]
    thought = raw.get("thought", False)
    if not isinstance(thought, bool):
        raise invalid(f"Invalid value at '{path}.thought' (TYPE_BOOL), {json.dumps(thought)}")
    part = Part(position=index + 1, kind=kind, thought=thought, raw_value=raw[kind])

    signature = raw.get("thoughtSignature")
    if signature is not None:
        if not isinstance(signature, str):
            raise invalid(
                f"Invalid value at '{path}.thought_signature' (TYPE_BYTES), {json.dumps(signature)}"
            )
        part.signature = signature
        try:
            part.signature_bytes = b64decode(signature)
        except (binascii.Error, ValueError):
            part.signature_bytes = None

    if kind == "text":
        if not isinstance(raw["text"], str):
            raise invalid(f"Invalid value at '{path}.text' (TYPE_STRING), {json.dumps(raw['text'])}")
        part.text = raw["text"]
    elif kind == "inlineData":
        _inline_data(_object(raw["inlineData"], f"{path}.inline_data"), part, f"{path}.inline_data")
    elif kind == "fileData":
        uri = _object(raw["fileData"], f"{path}.file_data").get("fileUri", "")
        name = str(uri).rsplit("/", 1)[-1]
        raise ApiError(
            403,
            f"You do not have permission to access the File {name} or it may not exist.",
            "PERMISSION_DENIED",
        )
    return part


def _inline_data(blob: dict[str, Any], part: Part, path: str) -> None:
    data = blob.get("data")
    if not data:
        raise invalid(
            "Unable to submit request because it has an empty inlineData parameter. "
            "Add a value to the parameter and try again."
        )
    mime = blob.get("mimeType", "")
    if mime not in images.INPUT_MIME:
        raise invalid(
            f"Unable to submit request because it has a mimeType parameter with value {mime}, "
            "which is not supported. Update the mimeType and try again."
        )
    try:
        decoded = b64decode(data) if isinstance(data, str) else None
    except (binascii.Error, ValueError):
        decoded = None
    if decoded is None:
        raise invalid(
            f"Invalid value at '{path}.data' (TYPE_BYTES), Base64 decoding failed for \"{str(data)[:32]}\""
        )
    image = images.decode(decoded, mime)
    if image is None and not images.is_valid_input(decoded, mime):
        raise invalid(_UNSUPPORTED_IMAGE_MESSAGE)
    part.mime, part.data, part.image = mime, decoded, image


def _content(raw: Any, index: int, path: str, default_role: str = "user") -> Content:
    raw = _object(raw, path)
    role = raw.get("role") or default_role
    if role not in ("user", "model"):
        raise invalid(f"Please use a valid role: user, model. (got '{role}' at {path}.role)")
    parts = raw.get("parts")
    if not parts:
        raise invalid(f"* GenerateContentRequest.{path}.parts: contents.parts must not be empty.")
    return Content(
        position=index + 1,
        role=role,
        parts=[_part(p, i, f"{path}.parts[{i}]") for i, p in enumerate(_list(parts, f"{path}.parts"))],
    )


def parse(body: Any, spec: ModelSpec) -> GenerateRequest:
    """Validate a decoded JSON body; raises :class:`ApiError` with the real service's 400s."""
    body = normalize_keys(_object(body, ""))
    _reject_unknown(body, _TOP_LEVEL_FIELDS, "")
    req = GenerateRequest(model=spec, contents=[], raw=body)

    if body.get("generationConfig") is not None:
        _generation_config(_object(body["generationConfig"], "generation_config"), spec, req)
    if body.get("safetySettings") is not None:
        _safety_settings(body["safetySettings"])
    if body.get("systemInstruction") is not None:
        system = _content(body["systemInstruction"], 0, "system_instruction")
        if any(p.kind != "text" for p in system.parts):
            raise invalid("* GenerateContentRequest.system_instruction: only text parts are supported.")
        req.system_text = "\n".join(p.text or "" for p in system.parts)

    contents = body.get("contents")
    if not contents:
        raise invalid("* GenerateContentRequest.contents: contents is not specified")
    req.contents = [_content(c, i, f"contents[{i}]") for i, c in enumerate(_list(contents, "contents"))]
    if req.contents[0].role != "user":
        raise invalid(
            "Please ensure that multiturn requests alternate between user and model, starting with user."
        )
    return req


def check_signatures(req: GenerateRequest, secret: bytes) -> None:
    """Enforce the Gemini 3 image rules for replayed model contents (reference §4).

    The first non-thought part of each model turn and every non-thought image must carry a
    signature; any signature present must verify for its own part.

    A streamed answer comes back as the SDK keeps it (``chats.py``): one model content per chunk,
    its text in pieces, the text's signature on the last piece or on an empty-text part after it.
    So consecutive model contents are one turn, and a run of text pieces with the same thought
    flag, closed by the piece that carries a signature, is one text part (the API must accept
    the history its own SDK sends back).
    """
    family = req.model.family
    for turn in _model_turns(req.contents):
        non_thought = [(c, p) for c, p in _joined(turn) if not p.thought]
        required = {id(p) for _, p in non_thought[:1]} | {
            id(p) for _, p in non_thought if p.kind == "inlineData"
        }
        for content, part in non_thought:
            where = f"in content position {content.position}, part position {part.position}."
            label = DATA_FIELDS[part.kind]
            if part.signature is None:
                if id(part) in required:
                    raise invalid(f"{label} part is missing a thought_signature {where}")
                continue
            if signatures.is_dummy(part.signature, part.signature_bytes):
                if part.kind == "text":
                    continue
                raise invalid(f"Thought signature is not valid {where}")
            kind, payload = _signed_payload(part)
            if not signatures.verify(secret, family, kind, payload, part.signature_bytes):
                raise invalid(f"Thought signature is not valid {where}")


def _model_turns(contents: list[Content]) -> list[list[tuple[Content, Part]]]:
    """The parts of each run of consecutive model contents, with the content each came in."""
    turns: list[list[tuple[Content, Part]]] = []
    previous = "user"
    for content in contents:
        if content.role == "model":
            if previous != "model":
                turns.append([])
            turns[-1] += [(content, part) for part in content.parts]
        previous = content.role
    return turns


def _joined(parts: list[tuple[Content, Part]]) -> list[tuple[Content, Part]]:
    """Text pieces joined as a stream sent them: same thought flag, until a piece carries a signature."""
    out: list[tuple[Content, Part]] = []
    open_run = False
    for content, part in parts:
        if part.kind == "text" and open_run and out[-1][1].thought == part.thought:
            first_content, first = out[-1]
            joined = replace(first, text=(first.text or "") + (part.text or ""))
            if part.signature is not None:
                joined = replace(joined, signature=part.signature, signature_bytes=part.signature_bytes)
            out[-1] = (first_content, joined)
        else:
            out.append((content, part))
        open_run = part.kind == "text" and out[-1][1].signature is None
    return out


def _signed_payload(part: Part) -> tuple[str, bytes]:
    if part.kind == "text":
        return "text", (part.text or "").encode()
    if part.kind == "inlineData":
        return "image", part.data or b""
    return part.kind, json.dumps(part.raw_value, sort_keys=True).encode()
