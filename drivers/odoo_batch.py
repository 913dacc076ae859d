"""Odoo's batch create: idempotent `load` calls keyed by our external ids, with per-item outcomes.

`load(fields, rows)` is Odoo's import: an `id` column holding an external id creates the record the first time
and updates the same record on repeat. It is all-or-nothing per call and reports bad rows in `messages`
(`ids: false`), so a rejected row is taken out and the rest are loaded again: one bad item fails only itself.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from drivers.errors import DriverError, InvalidRequestError
from drivers.idempotency import request_fingerprint
from drivers.models import CrmObject, UpsertItem, UpsertOutcome

if TYPE_CHECKING:
    from drivers.odoo import OdooDriver

_LEAD_TYPE = {CrmObject.LEAD: "lead", CrmObject.DEAL: "opportunity"}


def _column(name: str, value: Any) -> str:
    # A many2one given as a database id is imported through its `/.id` column (plain columns take names);
    # `res_id` is an integer reference, not a many2one.
    many2one = name.endswith("_id") and name != "res_id"
    return f"{name}/.id" if many2one and isinstance(value, int) and not isinstance(value, bool) else name


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, bool):  # the import converters read booleans from text
        return "1" if value else "0"
    return value


async def create_many(driver: OdooDriver, obj: CrmObject, creates: Sequence[tuple[int, UpsertItem]], *,
                      fingerprints: Mapping[int, str] | None = None) -> dict[int, UpsertOutcome]:
    """Outcomes by item index for items created under their idempotency keys (replayed when already there)."""
    from drivers.odoo import MODELS, MODULE, xmlid_name

    model = MODELS[obj]
    outcomes: dict[int, UpsertOutcome] = {}
    pending: dict[int, tuple[str, str, dict[str, Any]]] = {}  # index -> (xmlid name, fingerprint, values)
    for index, item in creates:
        values = dict(item.fields)
        if obj in _LEAD_TYPE:
            values.setdefault("type", _LEAD_TYPE[obj])
        fingerprint = (fingerprints or {}).get(index) or request_fingerprint(obj, item.fields)
        pending[index] = (xmlid_name(item.idempotency_key, fingerprint), fingerprint, values)
    if not pending:
        return outcomes
    try:
        found = await _existing(driver, model, [name for name, _, _ in pending.values()])
    except DriverError as exc:
        return {index: UpsertOutcome(error=exc) for index in pending}
    for index, (name, fingerprint, _) in list(pending.items()):
        match = found.get(name[:33])  # "k" + key digest: the same key, whatever its fingerprint
        if match is not None:
            try:
                outcomes[index] = UpsertOutcome(external_id=driver.replayed(match, fingerprint), created=False)
            except DriverError as exc:
                outcomes[index] = UpsertOutcome(error=exc)
            del pending[index]
    groups: dict[tuple[str, ...], list[int]] = {}
    for index, (_, _, values) in pending.items():
        groups.setdefault(tuple(_column(k, v) for k, v in sorted(values.items())), []).append(index)
    for columns, indexes in groups.items():
        outcomes |= await _load(driver, model, MODULE, columns, {i: pending[i] for i in indexes})
    return outcomes


async def _existing(driver: OdooDriver, model: str, names: list[str]) -> dict[str, Mapping[str, Any]]:
    from drivers.odoo import MODULE

    prefixes = list(dict.fromkeys(name[:33] for name in names))
    either: list[Any] = ["|"] * (len(prefixes) - 1) + [["name", "=like", f"{p}f%"] for p in prefixes]
    rows = await driver.call("ir.model.data", "search_read", [[["module", "=", MODULE], ["model", "=", model],
                                                              *either]], {"fields": ["name", "res_id"]})
    return {str(row["name"])[:33]: row for row in rows}


async def _load(driver: OdooDriver, model: str, module: str, columns: tuple[str, ...],
                rows: dict[int, tuple[str, str, dict[str, Any]]]) -> dict[int, UpsertOutcome]:
    outcomes: dict[int, UpsertOutcome] = {}
    for _ in range(2):  # the second pass loads what remains once the rejected rows are out
        order = list(rows)
        if not order:
            break
        data = [[f"{module}.{rows[i][0]}", *(_cell(v) for _, v in sorted(rows[i][2].items()))] for i in order]
        try:
            result = await driver.call(model, "load", [["id", *columns], data])
        except DriverError as exc:
            return outcomes | {i: UpsertOutcome(error=exc) for i in order}
        ids = result.get("ids") if isinstance(result, dict) else None
        if ids:
            return outcomes | {i: UpsertOutcome(external_id=str(rid), created=True) for i, rid in zip(order, ids,
                                                                                                    strict=False)}
        for message in (result or {}).get("messages") or []:
            position = message.get("record")
            if isinstance(position, int) and 0 <= position < len(order) and order[position] in rows:
                field = str(message.get("field") or "row")
                outcomes[order[position]] = UpsertOutcome(error=InvalidRequestError(
                    "Odoo rejected the row", provider=driver.slug, status_code=400, provider_code=f"load:{field}"))
                del rows[order[position]]
        if len(rows) == len(order):  # nothing attributable to a row: the whole call failed
            break
    error = InvalidRequestError("Odoo rejected the import", provider=driver.slug, status_code=400,
                                provider_code="load")
    return outcomes | {i: UpsertOutcome(error=error) for i in rows}
