"""Persistence for Retouch: SQLite or PostgreSQL (via SQLModel) for conversations, a
content-addressed store for image bytes (a directory, or an S3 bucket: storage/s3.py). Callers
speak ``chat.domain`` types; table rows stay inside.

Typical wiring (in ``app.py``)::

    engine = make_engine(sqlite_url(settings.data_dir))
    migrate(engine)
    blobs = DiskBlobStore(settings.data_dir / "images")
    with session_scope(engine) as session:
        conversation = get_conversation(session=session, conversation_id=cid)
"""

from chat.errors import ConversationNotFoundError
from storage.blobs import BlobStore, DiskBlobStore, Put, StoredBlob
from storage.db import make_engine, reader, session_scope, sqlite_url
from storage.migrations import MIGRATIONS, migrate, schema_version
from storage.models import CONVERSATION_ID_MAX_LENGTH, TITLE_MAX_LENGTH
from storage.repository import (
    append_turn,
    conversation_owner,
    copy_conversation,
    create_conversation,
    create_share_link,
    delete_conversation,
    get_conversation,
    list_conversations,
    rename_conversation,
    resolve_share_link,
    revoke_share_link,
    save_image,
    share_links,
)

__all__ = [
    "CONVERSATION_ID_MAX_LENGTH",
    "MIGRATIONS",
    "TITLE_MAX_LENGTH",
    "BlobStore",
    "DiskBlobStore",
    "Put",
    "StoredBlob",
    "ConversationNotFoundError",
    "conversation_owner",
    "copy_conversation",
    "create_share_link",
    "resolve_share_link",
    "revoke_share_link",
    "share_links",
    "append_turn",
    "create_conversation",
    "delete_conversation",
    "get_conversation",
    "list_conversations",
    "make_engine",
    "migrate",
    "reader",
    "rename_conversation",
    "save_image",
    "schema_version",
    "session_scope",
    "sqlite_url",
]
