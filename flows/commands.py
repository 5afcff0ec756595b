"""Commands of `ace-etl` that belong to the flows: registered through the `ace_etl.commands` entry point
(pyproject.toml), so the CLI reaches them without importing `flows` (which builds on it).

Prefect is imported inside each command, so that `ace-etl --help` stays fast.
"""

from __future__ import annotations

from typing import Annotated

import typer


def prefect_setup(
    max_requests_per_minute: Annotated[
        float, typer.Option(min=1, help="The key's budget, shared by every worker of the Prefect server.")
    ] = 100.0,
    alert_webhook: Annotated[
        str | None,
        typer.Option(
            help='Alert by POSTing {"text": ...} here (a Slack or Teams incoming webhook, or any endpoint).'
        ),
    ] = None,
    alert_block: Annotated[
        str | None,
        typer.Option(
            help="Alert through this saved Prefect notification block, as <type>/<name>, e.g. slack-webhook/ops."
        ),
    ] = None,
    ui_url: Annotated[
        str | None,
        typer.Option(
            help="Prefect UI address for the alerts' links to flow runs; default PREFECT_UI_URL, else "
            "PREFECT_API_URL without /api."
        ),
    ] = None,
) -> None:
    """Create (or update) the Prefect global concurrency limit that is this API key's request budget across
    machines (flows with budget_scope: prefect) and, with --alert-webhook or --alert-block, the automations
    that notify when a run fails or its data-quality tests do not pass. Uses ACEIOT_API_URL / ACEIOT_API_KEY
    and PREFECT_API_URL."""
    from extract.config import Settings
    from flows.budget import setup_budget

    settings = Settings()
    name = setup_budget(settings.api_url, settings.require_key().get_secret_value(), max_requests_per_minute)
    typer.echo(f"Prefect concurrency limit {name}: {max_requests_per_minute:g} requests per minute")
    if alert_webhook is not None or alert_block is not None:
        from flows.alerts import setup_alerts

        for automation in setup_alerts(webhook_url=alert_webhook, block=alert_block, ui_url=ui_url):
            typer.echo(f"Prefect automation: {automation}")
