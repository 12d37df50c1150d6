"""Who may do what with a conversation, decided on the server for every call.

An Actor is whoever is asking: their owner id (a random id kept in their browser, an HF
username, or an API caller's own key) and, if they came through a share link, its token.
An API caller whose only key is a share token has no owner id: they can use the link, but
nothing they make can belong to the token (every holder of the link would own it).

- OWNER: the conversation's owner: everything (send, rename, delete, share, revoke).
- CONTINUE: holds a "continue" link: read and send, nothing else.
- VIEW: holds a read-only link: read, fork or duplicate into their own conversation.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, TypeVar

from sqlalchemy.engine import Engine
from sqlmodel import Session

from chat.errors import AccessError, ConversationNotFoundError
from storage import repository as repo
from storage import session_scope

__all__ = [
    "Access",
    "Actor",
    "Gatekeeper",
    "Grant",
    "browser_owner_id",
    "new_owner_id",
    "new_share_token",
]

T = TypeVar("T")

#: What an owner id looks like: ``new_owner_id`` makes 22 such characters; API callers may bring their own.
OWNER_ID = re.compile(r"[A-Za-z0-9_\-]{16,100}")


#: Owner ids of signed-in accounts: "hf:" and the account's OpenID subject. The colon keeps them out
#: of ``OWNER_ID``, so no browser state and no API key can ever name one: only a verified sign-in does.
ACCOUNT_PREFIX = "hf:"
_ACCOUNT_SUBJECT = re.compile(r"[A-Za-z0-9._\-]{1,64}")


def account_owner_id(profile: Mapping[str, Any] | None) -> str | None:
    """The owner id of a signed-in Hugging Face account (its OpenID ``sub``, which a rename keeps;
    the username if a profile has no ``sub``), or None when nobody is signed in."""
    if not profile:
        return None
    subject = profile.get("sub") or profile.get("preferred_username")
    if not isinstance(subject, str) or not _ACCOUNT_SUBJECT.fullmatch(subject):
        return None
    return ACCOUNT_PREFIX + subject


def is_account(owner_id: str | None) -> bool:
    return bool(owner_id) and str(owner_id).startswith(ACCOUNT_PREFIX)


class Access(StrEnum):
    VIEW = "view"
    CONTINUE = "continue"
    OWNER = "owner"

    def can_write(self) -> bool:
        return self in (Access.CONTINUE, Access.OWNER)


@dataclass(frozen=True)
class Actor:
    owner_id: str | None  # None: a share token is all they hold
    share_token: str | None = None
    visitor: str = ""  # the client's address, for rate limits (chat/limits/visitors.py)

    def own_id(self) -> str:
        """The owner id new conversations get; refused for someone who holds only a share link."""
        if not self.owner_id:
            raise AccessError(NO_OWNER)
        return self.owner_id


@dataclass(frozen=True)
class Grant:
    conversation_id: str
    access: Access


def new_owner_id() -> str:
    """128 random bits: an owner id is a bearer secret, like a session cookie."""
    return secrets.token_urlsafe(16)


def browser_owner_id(value: object) -> str:
    """The owner id a browser sent if it is one, else a fresh one: never "nobody", never "everyone".

    Every UI event reads the browser's id through this (chat/ui/owner.py), so a client that
    posts null or garbage is a new visitor with an empty list.
    """
    if isinstance(value, str) and OWNER_ID.fullmatch(value):
        return value
    return new_owner_id()


def new_share_token() -> str:
    """192 random bits (≥128 required): whoever has the link has access."""
    return secrets.token_urlsafe(24)


class Gatekeeper:
    """Turns (actor, conversation id) into a Grant, or refuses with a sentence the user can act on."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def grant(self, actor: Actor, conversation_id: str, *, write: bool = False, owner: bool = False) -> Grant:
        with session_scope(self._engine, read_only=True) as session:
            access = self._access(session, actor, conversation_id)
        if access is None:  # unowned: claimed in a write transaction, which ``check`` does
            with session_scope(self._engine) as session:
                return self.check(session, actor, conversation_id, write=write, owner=owner)
        self._check(access, write=write, owner=owner)
        return Grant(conversation_id, access)

    def check(
        self,
        session: Session,
        actor: Actor,
        conversation_id: str,
        *,
        write: bool = False,
        owner: bool = False,
    ) -> Grant:
        """As ``grant``, in the caller's write transaction (the one that takes a turn's lease)."""
        access = self._access(session, actor, conversation_id)
        if access is None:  # made before owners existed: whoever has its id claims it
            repo.claim_conversation(session=session, conversation_id=conversation_id, owner_id=actor.own_id())
            access = Access.OWNER
        self._check(access, write=write, owner=owner)
        return Grant(conversation_id, access)

    def read(
        self, actor: Actor, conversation_id: str, query: Callable[[Session], T], *, owner: bool = False
    ) -> tuple[Grant, T]:
        """The actor's grant and ``query``'s result, from one read-only transaction.

        A page view checks access and reads what it shows at once (SQLite: one BEGIN, never the
        write lock). Only an unowned conversation, which the first visitor claims, needs a write.
        """
        with session_scope(self._engine, read_only=True) as session:
            access = self._access(session, actor, conversation_id)
            if access is not None:
                self._check(access, write=False, owner=owner)
                return Grant(conversation_id, access), query(session)
        grant = self.grant(actor, conversation_id, owner=owner)
        with session_scope(self._engine, read_only=True) as session:
            return grant, query(session)

    def stamp(
        self, actor: Actor, conversation_id: str, now: datetime
    ) -> tuple[Grant, repo.ConversationStamp]:
        """Read access and the conversation's stamp, from one SELECT: a watching page asks every
        second (view links may watch). Refused exactly as ``read`` refuses."""
        with session_scope(self._engine, read_only=True) as session:
            stamp = repo.conversation_stamp(
                session=session, conversation_id=conversation_id, share_token=actor.share_token, now=now
            )
        if stamp is None:
            raise AccessError(GONE)
        access = self._decide(actor, stamp.owner_id, lambda _token: stamp.link_kind)
        if access is None:  # unowned: claimed by ``grant``, once
            return self.grant(actor, conversation_id), stamp
        return Grant(conversation_id, access), stamp

    def shared(self, token: str) -> Grant:
        """The grant a share link gives on its own (what a teammate opening it gets)."""
        with session_scope(self._engine, read_only=True) as session:
            link = repo.resolve_share_link(session=session, token=token)
        if link is None:
            raise AccessError(REVOKED)
        return Grant(link.conversation_id, Access(link.kind))

    def is_share_token(self, key: str) -> bool:
        """Whether ``key`` is (or was, before a revocation) a share link's token, never an owner key."""
        with session_scope(self._engine, read_only=True) as session:
            return repo.is_share_token(session=session, token=key)

    @staticmethod
    def _check(access: Access, *, write: bool, owner: bool) -> None:
        if owner and access is not Access.OWNER:
            raise AccessError("Only the owner of this conversation can do that.")
        if write and not access.can_write():
            raise AccessError(
                "This is a read-only view: use \u201cDuplicate\u201d to make your own copy and edit it."
            )

    @staticmethod
    def _access(session: Session, actor: Actor, conversation_id: str) -> Access | None:
        """The actor's access, or None for an unowned conversation they may claim."""
        try:
            owner_id = repo.conversation_owner(session=session, conversation_id=conversation_id)
        except ConversationNotFoundError:
            raise AccessError(GONE) from None

        def link_kind(token: str) -> str | None:
            link = repo.resolve_share_link(session=session, token=token)
            return link.kind if link is not None and link.conversation_id == conversation_id else None

        return Gatekeeper._decide(actor, owner_id, link_kind)

    @staticmethod
    def _decide(actor: Actor, owner_id: str | None, link_kind: Callable[[str], str | None]) -> Access | None:
        """The actor's access from the conversation's owner and, asked only for a share token that
        is not the owner's, the kind of that token's live link to this conversation (None: none)."""
        if owner_id is None:
            if not actor.owner_id:
                raise AccessError(NOT_YOURS)
            return None
        if actor.owner_id and owner_id == actor.owner_id:
            return Access.OWNER
        if actor.share_token:
            kind = link_kind(actor.share_token)
            if kind is not None:
                return Access(kind)
            raise AccessError(REVOKED)
        raise AccessError(NOT_YOURS)


GONE = "That conversation does not exist (or was deleted)."
REVOKED = "This share link was revoked or never existed. Ask the owner for a new one."
NOT_YOURS = "This conversation belongs to someone else. Ask its owner for a share link."
NO_OWNER = (
    "A share link cannot own conversations: pass your own owner key "
    "(16-100 letters, digits, - or _, or the owner_key a new conversation returned)."
)
