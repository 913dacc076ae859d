"""Custom search attributes an operator filters lifecycle runs by in the Temporal UI.

`crm-sor dev` registers them when it starts the dev server; production registers them once with
`temporal operator search-attribute create` (see README).
"""

from __future__ import annotations

from temporalio.common import SearchAttributeKey

TENANT = SearchAttributeKey.for_keyword("CrmTenant")
TABLE = SearchAttributeKey.for_keyword("CrmTable")
PROVIDER = SearchAttributeKey.for_keyword("CrmProvider")
SYNC_STATE = SearchAttributeKey.for_keyword("CrmSyncState")

ALL = (TENANT, TABLE, PROVIDER, SYNC_STATE)
