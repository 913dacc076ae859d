"""The Odoo sandbox's database: users and API keys, records per model, and the ORM methods the RPC calls reach.

Behaviour follows the recorded Odoo 17 sessions: `read` of a deleted id answers `[]`, `unlink` of one raises
MissingError, archived records (`active=False`) are hidden from searches unless the domain mentions
`active` or the context says `active_test: False`, `load` upserts by external id and reports problems in
`messages` with `ids: false`, datetimes are UTC strings with second precision.
"""

from __future__ import annotations

import copy
import secrets
from dataclasses import dataclass, field
from typing import Any

from sandboxes.common import SandboxState, TokenIssuer
from sandboxes.odoo.schema import FIELDS, FIXED, compile_domain, digits, mentions

# Ids are per-model sequences in Odoo; the sandbox starts them far apart so code that confuses models fails.
_FIRST_ID = {"res.partner": 7, "crm.lead": 5001, "mail.message": 9001, "ir.model.data": 12801}
_PROBABILITY = "The operation cannot be completed: The probability of closing the deal should be between 0% and 100%!"


class OdooError(Exception):
    """An exception as Odoo raises it: `name` is the dotted class name clients see in `error.data.name`."""

    def __init__(self, name: str, message: str, *, field: str = "", detail: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.name, self.message, self.field, self.detail = name, message, field, detail or {}


def missing(model: str, ids: list[int], uid: int) -> OdooError:
    return OdooError("odoo.exceptions.MissingError", "Record does not exist or has been deleted.\n"
                     f"(Record: {model}({', '.join(map(str, ids))},), User: {uid})")


class ApiKeys(TokenIssuer):
    """Odoo API keys (40 hex characters) issued for the admin user; `expire_all` revokes them all."""

    def _new(self, kind: str) -> str:
        return secrets.token_hex(20)


@dataclass
class OdooState(SandboxState):
    database: str = "crmlab"
    login: str = "admin"
    uid: int = 2
    password: str = field(default_factory=lambda: secrets.token_urlsafe(12))
    version: int = 17  # 19+: JSON-2 at /json/2/{model}/{method}; /json/2 answers 404 before
    denied_models: set[str] = field(default_factory=set)  # AccessError for these (a user without rights)
    tables: dict[str, dict[int, dict[str, Any]]] = field(default_factory=lambda: {m: {} for m in FIELDS})
    seq: dict[str, int] = field(default_factory=lambda: dict(_FIRST_ID))

    def __post_init__(self) -> None:
        for pid, name in ((1, "My Company"), (3, "Administrator")):
            self._insert("res.partner", {"name": name, "active": True}, pid)

    # ----- auth -----------------------------------------------------------------------------------

    def authenticate(self, db: str, login: str, secret: str) -> int | bool:
        self.check_db(db)
        if login == self.login and (secret == self.password or self.tokens.check(secret) == "ok"):
            return self.uid
        return False

    def check_db(self, db: Any) -> None:
        if db != self.database:
            raise OdooError("psycopg2.OperationalError", f'FATAL:  database "{db}" does not exist\n')

    def check_key(self, uid: Any, secret: Any) -> None:
        if uid != self.uid or not (secret == self.password or self.tokens.check(str(secret)) == "ok"):
            raise OdooError("odoo.exceptions.AccessDenied", "Access Denied")

    # ----- records ----------------------------------------------------------------------------------

    def stamp(self) -> str:
        return self.now().strftime("%Y-%m-%d %H:%M:%S")

    def _insert(self, model: str, vals: dict[str, Any], record_id: int | None = None) -> int:
        if record_id is None:
            record_id = self.seq[model]
            self.seq[model] += 1
        now = self.stamp()
        row = {"id": record_id, "create_date": now, "write_date": now}
        if "active" in FIELDS[model]:
            row["active"] = True
        if model == "crm.lead":
            row |= {"type": "lead", "stage_id": 1, "team_id": 1, "user_id": 2, "probability": 0.0}
        row |= vals
        self.tables[model][record_id] = row
        self._computed(model, row)
        return record_id

    def _computed(self, model: str, row: dict[str, Any]) -> None:
        row["display_name"] = row.get("name") or False
        if model == "res.partner":
            raw = row.get("mobile") or row.get("phone")
            row["phone_sanitized"] = "+" + digits(raw) if raw and str(raw).strip().startswith("+") else False

    def add(self, model: str, vals: dict[str, Any]) -> int:
        """Seed a record straight into the database (tests), validated like a create."""
        return self._insert(model, self.validate(model, vals, creating=True))

    def live(self, model: str, record_id: int) -> dict[str, Any] | None:
        return self.tables[model].get(record_id)

    def validate(self, model: str, vals: dict[str, Any], *, creating: bool) -> dict[str, Any]:
        fields = FIELDS[model]
        clean: dict[str, Any] = {}
        for name, value in vals.items():
            spec = fields.get(name)
            if spec is None:
                raise OdooError("builtins.ValueError", f"Invalid field {name!r} on model {model!r}")
            if spec["readonly"]:
                continue
            if spec["type"] == "selection" and value is not False and value not in {k for k, _ in spec["selection"]}:
                raise OdooError("builtins.ValueError", f"Wrong value for {model}.{name}: {value!r}")
            if spec["type"] == "many2one" and value not in (False, None):
                target = spec["relation"]
                if not isinstance(value, int) or not (value in FIXED.get(target, {}) or
                                                     value in self.tables.get(target, {})):
                    raise missing(target, [value], self.uid)
            clean[name] = value
        if model == "crm.lead" and not 0 <= float(clean.get("probability") or 0) <= 100:
            raise OdooError("odoo.exceptions.ValidationError", _PROBABILITY)
        if creating:
            absent = [n for n, s in fields.items() if s["required"] and not clean.get(n) and n != "type"]
            if absent:
                raise OdooError("odoo.exceptions.ValidationError", "The operation cannot be completed:\n"
                                "- Create/update: a mandatory field is not set.")
        return clean

    def create(self, model: str, vals: dict[str, Any]) -> int:
        return self._insert(model, self.validate(model, vals, creating=True))

    def write(self, model: str, ids: list[int], vals: dict[str, Any]) -> bool:
        absent = [i for i in ids if i not in self.tables[model]]
        if absent:
            raise missing(model, absent, self.uid)
        clean = self.validate(model, vals, creating=False)
        for record_id in ids:
            row = self.tables[model][record_id]
            row |= clean | {"write_date": self.stamp()}
            self._computed(model, row)
        return True

    def unlink(self, model: str, ids: list[int]) -> bool:
        absent = [i for i in ids if i not in self.tables[model]]
        if absent:
            raise missing(model, absent, self.uid)
        for record_id in ids:
            del self.tables[model][record_id]
        stale = [k for k, r in self.tables["ir.model.data"].items() if r["model"] == model and r["res_id"] in ids]
        for key in stale:  # Odoo drops a deleted record's external ids with it
            del self.tables["ir.model.data"][key]
        return True

    def search(self, model: str, domain: list[Any], *, offset: int = 0, limit: int | None = None,
               order: str | None = None, context: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        try:
            predicate = compile_domain(domain)
        except (ValueError, TypeError) as exc:
            raise OdooError("builtins.ValueError", str(exc)) from None
        active_test = (context or {}).get("active_test", True) and not mentions(domain, "active")
        rows = [r for r in self.tables[model].values()
                if predicate(r) and not (active_test and r.get("active") is False)]
        for part in reversed([p.strip() for p in (order or "id").split(",") if p.strip()]):
            name, _, direction = part.partition(" ")
            rows.sort(key=lambda r: (r.get(name) is False, r.get(name) or ""), reverse=direction.lower() == "desc")
        rows = rows[offset:]
        cap = self.knobs.page_size_cap
        size = min(x for x in (limit, cap) if x) if (limit or cap) else None
        return rows[:size] if size else rows

    def shown(self, model: str, row: dict[str, Any], fields: list[str] | None) -> dict[str, Any]:
        """A row as `read` answers it: many2one as [id, name], unset as False, only the asked fields."""
        names = fields or [n for n in FIELDS[model] if n != "phone_mobile_search"]
        out: dict[str, Any] = {"id": row["id"]}
        for name in names:
            spec = FIELDS[model].get(name)
            if spec is None:
                raise OdooError("builtins.ValueError", f"Invalid field {name!r} on model {model!r}")
            value = row.get(name, False)
            if spec["type"] == "many2one" and value:
                target = spec["relation"]
                label = FIXED.get(target, {}).get(value) or (self.tables.get(target, {}).get(value) or {}).get("name")
                value = [value, label or ""]
            out[name] = False if value is None else value
        return out

    def load(self, model: str, columns: list[str], rows: list[list[Any]]) -> dict[str, Any]:
        """`load`: import rows; an `id` column holds external ids (upsert), `.id` database ids. All-or-nothing."""
        snapshot = (copy.deepcopy(self.tables), dict(self.seq))
        ids: list[int] = []
        messages: list[dict[str, Any]] = []
        for index, row in enumerate(rows):
            values = dict(zip(columns, row, strict=False))
            xmlid = values.pop("id", None)
            db_id = values.pop(".id", None)
            try:
                vals = self._import_values(model, values)
                ids.append(self._upsert(model, vals, xmlid, db_id))
            except OdooError as exc:
                messages.append({"rows": {"from": index, "to": index}, "type": "error", "record": index,
                                 "field": exc.field or next(iter(values), ""), "message": exc.message, **exc.detail})
        if messages:
            self.tables, self.seq = snapshot
            return {"ids": False, "messages": messages, "nextrow": 0}
        return {"ids": ids, "messages": [], "nextrow": 0}

    def _import_values(self, model: str, values: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, value in values.items():
            if name.endswith("/.id"):
                out[name[:-4]] = int(value) if value not in ("", None, False) else False
                continue
            spec = FIELDS[model].get(name)
            if spec is None:
                raise OdooError("builtins.ValueError", f"Unknown field {name!r}", field=name)
            if spec["type"] == "selection" and value not in {k for k, _ in spec["selection"]}:
                raise OdooError("builtins.ValueError", f"Value {value!r} not found in selection field "
                                f"{spec['string']!r}", field=name,
                                detail={"moreinfo": [label for _, label in spec["selection"]],
                                        "field_name": spec["string"]})
            if spec["type"] in ("float", "monetary") and isinstance(value, str):
                value = float(value) if value else 0.0
            out[name] = value
        return out

    def _upsert(self, model: str, vals: dict[str, Any], xmlid: str | None, db_id: Any) -> int:
        if db_id not in (None, ""):
            self.write(model, [int(db_id)], vals)
            return int(db_id)
        if not xmlid:
            return self.create(model, vals)
        module, _, name = str(xmlid).rpartition(".")
        module = module or "__import__"
        for entry in self.tables["ir.model.data"].values():
            if (entry["module"], entry["name"], entry["model"]) == (module, name, model):
                if entry["res_id"] in self.tables[model]:
                    self.write(model, [entry["res_id"]], vals)
                    return int(entry["res_id"])
        record_id = self.create(model, vals)
        self._insert("ir.model.data", {"module": module, "name": name, "model": model, "res_id": record_id,
                                       "noupdate": False})
        return record_id
