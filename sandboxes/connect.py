"""How a tenant connects to a served sandbox: the tenant settings and the vault secret for its default account.

`crm-sor dev` writes one entry per running sandbox to `.crm-sor/sandboxes.json`, and
`crm-sor tenant connect TENANT --sandbox [SLUG]` stores it for a tenant: what an operator would otherwise get
from the provider's connect flow (OAuth consent, a credential form). Dev tokens never expire
(`long_lived`), so a connected tenant keeps working across restarts.
"""

from __future__ import annotations

from typing import Any

# Token endpoints (or logins) under each sandbox's base URL; the API base when it is not the base URL itself.
TOKEN_PATHS = {"hubspot": "/oauth/v3/token", "salesforce": "/services/oauth2/token", "zoho": "/oauth/v2/token",
               "athenahealth": "/oauth2/v1/token", "mindbody": "/public/v6/usertoken/issue",
               "tekmetric": "/api/v1/oauth/token", "toast": "/authentication/v1/authentication/login"}
API_PATHS = {"mindbody": "/public/v6"}
# Sandboxes a tenant cannot be pointed at with defaults alone (none today: the generic REST sandbox's flat API
# comes with its connect form in sandboxes/generic_rest_flat.py).
NOT_CONNECTABLE: dict[str, str] = {}


def long_lived(state: Any) -> None:
    """Dev sandbox tokens do not expire: a newcomer's stack keeps working overnight and across restarts."""
    tokens = getattr(state, "tokens", None)
    if tokens is not None and hasattr(tokens, "ttl_seconds"):
        tokens.ttl_seconds = None


def connection(slug: str, state: Any, base_url: str) -> dict[str, Any]:
    """`{"settings": …, "secret": …}` for a new tenant of the sandbox `slug` serving at `base_url`."""
    if slug == "odoo":
        return {"settings": {"instance_url": base_url, "database": state.database},
                "secret": {"auth": "odoo", "login": state.login, "api_key": state.tokens.issue_access()}}
    if slug == "generic_rest":  # the connect form an operator would post for the sandbox's flat API
        from drivers.generic_rest_config import GenericRestForm
        from sandboxes.generic_rest import PREFIX
        from sandboxes.generic_rest_flat import flat_config

        form = GenericRestForm.model_validate(flat_config(state, base_url + PREFIX["flat"]))
        return {"settings": form.settings(), "secret": form.secret()}
    if slug == "custom_webhook":
        from sandboxes.webhook_receiver import PATH

        return {"settings": {"endpoint_url": base_url + PATH},
                "secret": {"auth": "webhook", "signing_secrets": list(state.secrets.held)}}
    creds = state.tokens.credentials()
    settings: dict[str, Any] = {"base_url": base_url + API_PATHS.get(slug, ""),
                                "token_url": base_url + TOKEN_PATHS[slug]}
    if slug == "hubspot":
        settings["portal_id"] = state.portal_id
    elif slug == "salesforce":
        settings["instance_url"] = base_url
    elif slug == "mindbody":
        settings["site_id"] = state.site_id
    elif slug in ("tekmetric", "toast"):
        settings["environment"] = "sandbox"
        settings |= {"shop_id": state.shop_id} if slug == "tekmetric" else {"restaurant_guid": state.restaurant_guid}
    elif slug == "athenahealth":
        settings |= {"practice_id": state.practice_id, "environment": state.environment}
    if slug == "mindbody":  # the sandbox's staff login is its grant client
        secret = {"auth": "token", "api_key": state.api_key, "username": creds.client_id,
                  "password": creds.client_secret, "access_token": creds.access_token}
    elif slug in ("tekmetric", "toast", "athenahealth"):  # client-credentials grants
        secret = {"auth": "token", "client_id": creds.client_id, "client_secret": creds.client_secret,
                  "access_token": creds.access_token}
    else:
        secret = {"auth": "oauth2", "access_token": creds.access_token, "refresh_token": creds.refresh_token,
                  "client_id": creds.client_id, "client_secret": creds.client_secret}
    return {"settings": settings, "secret": secret}
