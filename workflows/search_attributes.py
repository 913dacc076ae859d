"""Custom search attributes an operator filters runs by in the Temporal UI.

The tenant mirror sets tenant, provider, state (`CrmSyncState`: the same names as a row's `sync_state` —
pending, retrying, blocked, synced) and backlog (`CrmBacklog`: its unsynced rows). `CrmTable` is the credential
rewrap's. `crm-sor dev` registers them when it starts the dev server; production registers them once with
`temporal operator search-attribute create` (see README).
"""

from __future__ import annotations

from temporalio.common import SearchAttributeKey

TENANT = SearchAttributeKey.for_keyword("CrmTenant")
TABLE = SearchAttributeKey.for_keyword("CrmTable")
PROVIDER = SearchAttributeKey.for_keyword("CrmProvider")
SYNC_STATE = SearchAttributeKey.for_keyword("CrmSyncState")
BACKLOG = SearchAttributeKey.for_int("CrmBacklog")

ALL = (TENANT, TABLE, PROVIDER, SYNC_STATE, BACKLOG)


def type_name(key: SearchAttributeKey) -> str:  # type: ignore[type-arg]
    """`Keyword` / `Int`, as `temporal server start-dev --search-attribute NAME=TYPE` spells it."""
    return key.indexed_value_type.name.capitalize()
