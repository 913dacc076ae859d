"""Issue 13's sandboxes for `SandboxDriverProvider`: the apps, and each tenant's credential and settings.

These drivers hold static credentials (an Odoo API key, a webhook signing secret, a generic REST API key), so
the provider builds their auth from the blob (`build_auth`) instead of an OAuth token source.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette.applications import Starlette

from drivers.generic_rest_config import GenericRestForm
from sandboxes import generic_rest, webhook_receiver
from sandboxes.odoo import app as odoo_app
from tests.unit.drivers.generic_rest_configs import flat_config

APPS: dict[str, Callable[[], Starlette]] = {
    "odoo": odoo_app.create_app,
    "generic_rest": generic_rest.create_app,
    "custom_webhook": webhook_receiver.create_app,
}


def _odoo(state: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    secret = {"auth": "odoo", "login": state.login, "api_key": state.tokens.credentials().access_token}
    return secret, {"instance_url": "https://acme.odoo.example", "database": state.database}


def _webhook(state: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    return ({"auth": "webhook", "signing_secrets": list(state.secrets.held)},
            {"endpoint_url": f"https://hooks.partner.example{webhook_receiver.PATH}"})


def _generic(state: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    form = GenericRestForm.model_validate(flat_config(state))
    return form.secret(), form.settings()


STATIC: dict[str, Callable[[Any], tuple[dict[str, Any], dict[str, Any]]]] = {
    "odoo": _odoo, "custom_webhook": _webhook, "generic_rest": _generic}
