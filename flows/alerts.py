"""Alerting: Prefect automations that notify someone when a run fails, its data-quality tests do not pass,
or it finds points out of their limits.

Automations live on the Prefect server, so they also catch what no code of ours sees: a crashed worker, a
run killed by its infrastructure. `setup_alerts` (the documented `ace-etl prefect-setup --alert-...` step)
creates them, replacing earlier versions by name, and sends through a notification block: one it creates
for a webhook URL (Slack, Teams, or any endpoint taking JSON), or any notification block already saved (e-mail, PagerDuty...).
The flows emit `ace-etl.data-quality.<status>` events (see `emit_data_quality`) for the second automation,
and one `ace-etl.excursions.new` event per run that finds new excursions (`emit_excursions`) for the third.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from uuid import UUID

from prefect.automations import Automation
from prefect.blocks.notifications import CustomWebhookNotificationBlock
from prefect.client.orchestration import get_client
from prefect.events import emit_event
from prefect.events.actions import SendNotification
from prefect.events.schemas.automations import EventTrigger, Posture
from prefect.exceptions import ObjectNotFound

from extract.errors import ConfigError

ALERT_BLOCK = "ace-etl-alerts"
FLOWS = "ace-etl-*"
RUN_FAILED = "ace-etl: a run failed"
DATA_QUALITY = "ace-etl: data-quality tests did not pass"
DATA_QUALITY_EVENT = "ace-etl.data-quality"
EXCURSIONS = "ace-etl: points out of their limits"
EXCURSIONS_EVENT = "ace-etl.excursions.new"

# The link is built from the UI address known when the automations are set up: the server renders these
# templates, and its own `ui_url` filter gives None unless the server process has PREFECT_UI_URL set.
_RUN_FAILED_BODY = """\
Flow run {{{{ flow_run.name }}}} of {{{{ flow.name }}}} ended {{{{ flow_run.state.name }}}}: {{{{ flow_run.state.message }}}}
{ui}/runs/flow-run/{{{{ flow_run.id }}}}"""
_DATA_QUALITY_BODY = """\
{{{{ event.payload.title }}}} in flow run {{{{ event.resource.get('flow-run-name') }}}}:
{{{{ event.payload.tests | join('\\n') }}}}
{ui}/runs/flow-run/{{{{ event.resource.get('flow-run-id') }}}}"""
_EXCURSIONS_BODY = """\
{{{{ event.payload.title }}}} in flow run {{{{ event.resource.get('flow-run-name') }}}}:
{{{{ event.payload.excursions | join('\\n') }}}}
{ui}/runs/flow-run/{{{{ event.resource.get('flow-run-id') }}}}"""


def setup_alerts(
    *, webhook_url: str | None = None, block: str | None = None, ui_url: str | None = None
) -> list[str]:
    """Create (or replace) the automations, notifying through a new webhook block or a saved block named
    `block`, linking to flow runs under `ui_url` (default: PREFECT_UI_URL, which Prefect derives from
    PREFECT_API_URL by dropping `/api`); returns the automations' names."""
    if (webhook_url is None) == (block is None):
        raise ConfigError("give either --alert-webhook URL or --alert-block NAME")
    ui = _ui_url(ui_url)
    block_id = _webhook_block(webhook_url) if webhook_url else _saved_block(str(block))
    automations = [
        Automation(
            name=RUN_FAILED,
            description="A flow run of ace-etl failed or crashed.",
            trigger=EventTrigger(
                expect={"prefect.flow-run.Failed", "prefect.flow-run.Crashed"},
                match_related={"prefect.resource.role": "flow", "prefect.resource.name": FLOWS},
                posture=Posture.Reactive,
                threshold=1,
            ),
            actions=[
                SendNotification(
                    block_document_id=block_id, subject=RUN_FAILED, body=_RUN_FAILED_BODY.format(ui=ui)
                )
            ],
        ),
        Automation(
            name=DATA_QUALITY,
            description="A warehouse build's dbt tests warned or failed.",
            trigger=EventTrigger(
                expect={f"{DATA_QUALITY_EVENT}.warn", f"{DATA_QUALITY_EVENT}.fail"},
                posture=Posture.Reactive,
                threshold=1,
            ),
            actions=[
                SendNotification(
                    block_document_id=block_id, subject=DATA_QUALITY, body=_DATA_QUALITY_BODY.format(ui=ui)
                )
            ],
        ),
        excursions_automation(block_id, ui),
    ]
    for automation in automations:
        _replace(automation)
    return [a.name for a in automations]


def emit_data_quality(
    status: str, title: str, tests: Sequence[str], flow_run: tuple[str, str] | None
) -> None:
    """Tell the server how a build's tests went (`pass`, `warn` or `fail`): the automation reacts to the
    last two. `flow_run` is (id, name) when in a flow run."""
    emit_event(
        event=f"{DATA_QUALITY_EVENT}.{status}",
        resource=_resource(DATA_QUALITY_EVENT, flow_run),
        payload={"title": title, "tests": list(tests)},
    )


def excursions_automation(block_id: UUID, ui: str) -> Automation:
    """One notification per `ace-etl.excursions.new` event: a run that finds new excursions emits one."""
    return Automation(
        name=EXCURSIONS,
        description="A flow run found points beyond their limits (timeseries_excursions) it had not seen before.",
        trigger=EventTrigger(expect={EXCURSIONS_EVENT}, posture=Posture.Reactive, threshold=1),
        actions=[
            SendNotification(
                block_document_id=block_id, subject=EXCURSIONS, body=_EXCURSIONS_BODY.format(ui=ui)
            )
        ],
    )


def emit_excursions(excursions: Sequence[str], flow_run: tuple[str, str] | None) -> None:
    """Tell the server about a run's new excursions (one line each): one event, whatever their number."""
    emit_event(
        event=EXCURSIONS_EVENT,
        resource=_resource(EXCURSIONS_EVENT, flow_run),
        payload={"title": f"{len(excursions)} new excursion(s)", "excursions": list(excursions)},
    )


def _resource(event: str, flow_run: tuple[str, str] | None) -> dict[str, str]:
    """The event's resource: the flow run (id, name) it comes from, which the alert names and links to."""
    resource = {"prefect.resource.id": f"{event}.{flow_run[0] if flow_run else 'local'}"}
    if flow_run:
        resource["flow-run-id"], resource["flow-run-name"] = flow_run
    return resource


def _ui_url(given: str | None) -> str:
    from prefect.settings import PREFECT_UI_URL

    url = (given or PREFECT_UI_URL.value() or "").rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise ConfigError(
            "alerts need the Prefect UI's address for their links: set PREFECT_API_URL (e.g. "
            "http://127.0.0.1:4200/api) or PREFECT_UI_URL, or give --ui-url"
        )
    return url


def _webhook_block(url: str) -> UUID:
    # Slack and Teams incoming webhooks, and most chat tools, accept {"text": ...}.
    block: Any = CustomWebhookNotificationBlock.model_validate(
        {"name": ALERT_BLOCK, "url": url, "json_data": {"text": "{{subject}}\n{{body}}"}}
    )
    block_id: UUID = block.save(ALERT_BLOCK, overwrite=True)  # sync here: not in an event loop
    return block_id


def _saved_block(name: str) -> UUID:
    block_type, _, block_name = name.partition("/")
    if block_type and block_name:
        with get_client(sync_client=True) as client:
            try:
                return client.read_block_document_by_name(block_name, block_type, include_secrets=False).id
            except ObjectNotFound:
                pass
    raise ConfigError(
        f"no notification block {name!r} on this Prefect server: give it as <type>/<name> "
        "(e.g. slack-webhook/ops, see `prefect block ls`), or use --alert-webhook URL"
    )


def _replace(automation: Automation) -> None:
    with get_client(sync_client=True) as client:
        for old in client.read_automations_by_name(name=automation.name):
            client.delete_automation(old.id)
    automation.create()
