"""Building ``GenerateContentResponse`` bodies (reference §3).

Everything here is a pure function of the validated request, so the same request
always gets byte-identical answers (including image bytes and ``responseId``);
tests can assert on exact values and replay recorded requests.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
from dataclasses import dataclass
from typing import Any

from . import images, signatures
from .faults import Fault
from .models import INPUT_IMAGE_TOKENS
from .request import GenerateRequest
from .state import StockImage


@dataclass(frozen=True)
class Signer:
    """Issues signatures bound to the emulator's secret and the request's model family."""

    secret: bytes
    family: str
    filler: int = 256

    def text(self, text: str) -> str:
        return signatures.issue(self.secret, self.family, "text", text.encode(), self.filler)

    def image(self, data: bytes) -> str:
        return signatures.issue(self.secret, self.family, "image", data, self.filler)


def response_id(raw_body: bytes) -> str:
    """A real-looking, deterministic id (the real ones are 20-odd URL-safe characters)."""
    return base64.urlsafe_b64encode(hashlib.sha256(b"rid|" + raw_body).digest()[:15]).decode()


def _tokens(chars: int) -> int:
    return math.ceil(chars / 4)


def _details(**by_modality: int) -> list[dict[str, Any]]:
    return [{"modality": name, "tokenCount": count} for name, count in by_modality.items() if count]


def usage(
    req: GenerateRequest, *, answer_text: str = "", image_tier: str | None = None, thoughts: str = ""
) -> dict[str, Any]:
    """usageMetadata: ~4 characters per text token, 1120 per input image, tier price per output image."""
    prompt_text = max(1, _tokens(req.text_chars))
    prompt_image = INPUT_IMAGE_TOKENS * len(req.input_images)
    out_text = _tokens(len(answer_text))
    out_image = req.model.image_tokens[image_tier] if image_tier else 0
    thinking = 64 + _tokens(len(req.latest_user_text)) + _tokens(len(thoughts))
    meta: dict[str, Any] = {
        "promptTokenCount": prompt_text + prompt_image,
        "candidatesTokenCount": out_text + out_image,
        "thoughtsTokenCount": thinking,
        "totalTokenCount": prompt_text + prompt_image + out_text + out_image + thinking,
        "promptTokensDetails": _details(TEXT=prompt_text, IMAGE=prompt_image),
    }
    if out_text or out_image:
        meta["candidatesTokensDetails"] = _details(TEXT=out_text, IMAGE=out_image)
    return meta


def _envelope(req: GenerateRequest, raw_body: bytes, **fields: Any) -> dict[str, Any]:
    return {**fields, "modelVersion": req.model.id, "responseId": response_id(raw_body)}


def _thought_text(req: GenerateRequest) -> str:
    prompt = req.latest_user_text or "(no text)"
    return (
        "**Planning the edit**\n\n"
        f"The request is: {prompt[:200]}. I will adjust the colours and add the requested detail, "
        "keeping the composition of the source image."
    )


def _candidate(parts: list[dict[str, Any]], finish: str = "STOP") -> dict[str, Any]:
    return {"content": {"parts": parts, "role": "model"}, "finishReason": finish, "index": 0}


def success(
    req: GenerateRequest, signer: Signer, raw_body: bytes, stock: StockImage | None = None
) -> dict[str, Any]:
    """The normal answer: optional thoughts, a signed text part, a signed edited image.

    ``stock`` is a ready image to answer with instead of rendering one.
    """
    spec = req.model
    prompt = req.latest_user_text
    decoded = [p for p in req.input_images if p.image is not None]
    source = decoded[-1].image if decoded else None
    size = images.target_size(req.aspect_ratio, req.image_size, source.size if source else None)

    parts: list[dict[str, Any]] = []
    thoughts = ""
    if req.include_thoughts:
        thoughts = _thought_text(req)
        parts.append({"text": thoughts, "thought": True})
        if spec.thought_images:
            draft = images.base_image(source, prompt, size)
            draft.thumbnail((512, 512))
            data = base64.b64encode(images.encode(draft, "image/jpeg")).decode()
            parts.append({"inlineData": {"mimeType": "image/jpeg", "data": data}, "thought": True})

    answer = ""
    if req.modalities != ("IMAGE",):
        if req.modalities == ("TEXT",):
            answer = f"I would edit the image like this: {prompt[:200]}"
        else:
            answer = "Here is the edited image." if req.input_images else "Here is the generated image."
        parts.append({"text": answer, "thoughtSignature": signer.text(answer)})

    tier = None
    if req.modalities != ("TEXT",):
        tier = req.image_size or "1K"
        if stock is None:
            edited = images.apply_edit(images.base_image(source, prompt, size), prompt, len(req.contents))
            origin = images.provenance(
                spec.id, prompt, len(req.contents), [p.data or b"" for p in req.input_images]
            )
            data = images.encode(edited, spec.output_mime, origin)
            inline = {"mimeType": spec.output_mime, "data": base64.b64encode(data).decode()}
        else:
            data = stock.data
            inline = {"mimeType": stock.mime_type, "data": stock.base64}
        parts.append({"inlineData": inline, "thoughtSignature": signer.image(data)})

    return _envelope(
        req,
        raw_body,
        candidates=[_candidate(parts)],
        usageMetadata=usage(req, answer_text=answer, image_tier=tier, thoughts=thoughts),
    )


_SAFETY_RATINGS = [
    {"category": "HARM_CATEGORY_SEXUALLY_EXPLICIT", "probability": "NEGLIGIBLE"},
    {"category": "HARM_CATEGORY_HATE_SPEECH", "probability": "NEGLIGIBLE"},
    {"category": "HARM_CATEGORY_HARASSMENT", "probability": "NEGLIGIBLE"},
    {"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH", "blocked": True},
]


def fault_body(fault: Fault, req: GenerateRequest, signer: Signer, raw_body: bytes) -> dict[str, Any]:
    """The 200-status answers of the content-level faults (see :mod:`.faults`)."""
    if fault.name == "block":
        return _envelope(
            req,
            raw_body,
            promptFeedback={"blockReason": "SAFETY", "safetyRatings": _SAFETY_RATINGS},
            usageMetadata=usage(req),
        )
    if fault.name == "image_safety":
        candidate = {
            "finishReason": "IMAGE_SAFETY",
            "finishMessage": "Unable to show the generated image. The image was filtered out because it "
            "violated Google's Generative AI Prohibited Use policy. You will not be charged for blocked "
            "images. Try rephrasing the prompt.",
            "index": 0,
        }
        return _envelope(req, raw_body, candidates=[candidate], usageMetadata=usage(req))
    if fault.name == "no_image":
        return _envelope(req, raw_body, candidates=[_candidate([], "NO_IMAGE")], usageMetadata=usage(req))
    if fault.name == "empty":
        return _envelope(req, raw_body, candidates=[{"index": 0}], usageMetadata=usage(req))
    if fault.name == "text_only":
        answer = (
            "I can't generate that image, but here is a description: "
            f"{req.latest_user_text[:200] or 'the requested picture'}."
        )
        parts: list[dict[str, Any]] = []
        thoughts = ""
        if req.include_thoughts:
            thoughts = _thought_text(req)
            parts.append({"text": thoughts, "thought": True})
        parts.append({"text": answer, "thoughtSignature": signer.text(answer)})
        return _envelope(
            req, raw_body, candidates=[_candidate(parts)], usageMetadata=usage(req, answer_text=answer)
        )
    raise ValueError(f"fault {fault.name!r} has no 200 body")


def malformed_body(req: GenerateRequest, signer: Signer, raw_body: bytes) -> bytes:
    """A plausible answer cut off mid-way: valid-looking start, unparsable as a whole."""
    text = json.dumps(fault_body(Fault("text_only"), req, signer, raw_body)).encode()
    return text[: max(16, len(text) // 2)]
