"""Typed flow parameters. Deployment values live in prefect.yaml; these are the defaults and the checks."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Literal, Self, TypeVar

from pydantic import BaseModel, Field, field_validator, model_validator

from extract.api import MAX_PAGE_SIZE
from extract.api.sites import time_zone_overrides
from extract.errors import ConfigError
from extract.run.job import REQUESTS_PER_MINUTE, WINDOW_HOURS, Job, Mode
from extract.windows import DEFAULT_LOOKBACK_DAYS, MAX_LOOKBACK_DAYS


class SiteParams(BaseModel):
    """What every flow needs: which sites, how hard to hit the API, where the data lives."""

    sites: list[str] = Field(min_length=1, description="Site names as in FlightDeck.")
    max_requests_per_minute: float = Field(
        default=REQUESTS_PER_MINUTE, ge=1, description="Shared client-side rate limit."
    )
    data_dir: str | Path | None = Field(
        default=None,
        description="Data dir (a folder or s3://bucket/prefix); default ACE_ETL_DATA_DIR or ./data.",
    )
    budget_scope: Literal["machine", "prefect"] = Field(
        default="machine",
        description="Share the key's request budget among the processes of this machine (a file), or among "
        "every worker of the Prefect server (a global concurrency limit: run `ace-etl prefect-setup` once).",
    )
    dask_address: str | None = Field(
        default=None, description="Run tasks on this existing Dask scheduler (e.g. tcp://10.0.0.5:8786)."
    )
    dask_workers: int | None = Field(
        default=None,
        ge=1,
        le=64,
        description="Run tasks on a local Dask cluster of this many worker processes.",
    )
    api_key_block: str | None = Field(
        default="ace-etl-api-key",
        description="Prefect Secret block holding the API key (workers on other machines); ACEIOT_API_KEY when absent.",
    )

    @field_validator("sites")
    @classmethod
    def _no_blank_sites(cls, sites: list[str]) -> list[str]:
        if any(not s.strip() for s in sites):
            raise ValueError("site names must not be blank")
        return list(dict.fromkeys(sites))  # a repeated site is one site, not two runs racing


class TimeZoneParams(BaseModel):
    """Per-site time-zone overrides, applied when sites are landed and when the warehouse is built."""

    sites_file: Path | None = Field(
        default=None,
        description='TOML file of per-site time zones ([sites."hq"] then time_zone = "America/New_York"); '
        "default ACE_SITES_FILE.",
    )
    time_zones: dict[str, str] | None = Field(
        default=None,
        description='Per-site time zones (site -> IANA name, e.g. {"hq": "America/New_York"}), over the sites file\'s.',
    )

    @model_validator(mode="after")
    def _known_time_zones(self) -> Self:
        try:
            self.site_time_zones()
        except ConfigError as exc:
            raise ValueError(str(exc)) from None
        return self

    def site_time_zones(self) -> dict[str, str]:
        """The overrides: the sites file's (`sites_file`, else ACE_SITES_FILE), then `time_zones` over them.
        ConfigError names a file that cannot be read or a name that is not an IANA time zone."""
        from extract.config import Settings

        return time_zone_overrides(self.sites_file or Settings().sites_file, self.time_zones)


class BuildParams(BaseModel):
    """How a flow's dbt build runs and reports."""

    dq_severity: Literal["warn", "error"] = Field(
        default="warn", description="Data-quality tests (gaps, coverage, freshness) warn, or fail the build."
    )
    limits_file: Path | None = Field(
        default=None,
        description="TOML file of limits rules for timeseries_excursions, tried before the bundled defaults "
        "(default ACE_LIMITS_FILE).",
    )
    dbt_node_tasks: bool = Field(
        default=False,
        description="One Prefect task per dbt model and test (each in the UI, with its own state); else the "
        "build is one step, about 3x faster on a small build. The daily, backfill and weekly deployments set it.",
    )

    @field_validator("limits_file")
    @classmethod
    def _usable_limits(cls, path: Path | None) -> Path | None:
        """A limits file whose rules load (checked when the run starts, not after it extracted for hours)."""
        from ace_etl.limits import load_rules

        if path is not None:
            try:
                load_rules(path)
            except ConfigError as error:
                raise ValueError(str(error)) from None
        return path


class EtlParams(SiteParams, TimeZoneParams, BuildParams):
    """Parameters of the daily and backfill flows. With no start/end: every window not yet complete within
    `lookback_days` before the as-of instant (by default the flow run's scheduled start time)."""

    start: datetime | None = Field(default=None, description="Inclusive start (UTC if no offset).")
    end: datetime | None = Field(default=None, description="Exclusive end (UTC if no offset).")
    as_of: datetime | None = Field(
        default=None, description="The instant the run is for; default: the flow run's scheduled start time."
    )
    lookback_days: float = Field(
        default=DEFAULT_LOOKBACK_DAYS,
        gt=0,
        le=MAX_LOOKBACK_DAYS,
        description="Without start/end: days before as-of to cover.",
    )
    points: list[str] | None = Field(
        default=None,
        description="Point names or glob patterns to keep; an entry in double quotes (a JSON string, e.g. "
        '"site/zone[1]/temp" with its quotes) is exactly that name.',
    )
    points_file: Path | None = Field(
        default=None, description="UTF-8 file with one point name or pattern per line."
    )
    points_from_api: bool = Field(
        default=False,
        description="Keep the site's configured points (collect_enabled); also what happens with no points given.",
    )
    window_hours: float = Field(
        default=WINDOW_HOURS, gt=0, description="Window length; each window is a task and a checkpoint."
    )
    page_size: int = Field(default=MAX_PAGE_SIZE, ge=1, le=MAX_PAGE_SIZE, description="Samples per API page.")
    force: bool = Field(default=False, description="Re-extract windows that are already complete.")
    transform: bool = Field(default=True, description="Run dbt build after extracting.")
    live: bool = Field(
        default=False,
        description="Keep the still-open window current up to as-of (one request per site); for the live deployment.",
    )
    heal: bool = Field(
        default=True,
        description="After the build, re-fetch the ranges of the gaps in the range, then rebuild.",
    )
    compact: bool = Field(
        default=True,
        description="After extracting (not live), compact the closed days of the sites that hold many small files.",
    )

    @model_validator(mode="after")
    def _one_points_source(self) -> EtlParams:
        if sum((self.points is not None, self.points_file is not None, self.points_from_api)) > 1:
            raise ValueError("give only one of points, points_file and points_from_api")
        return self

    @model_validator(mode="after")
    def _valid_range(self) -> EtlParams:
        try:
            self.job(self.as_of or datetime.now(UTC), data_dir=Path(self.data_dir or "."), time_zones={})
        except ConfigError as exc:
            raise ValueError(str(exc)) from None
        return self

    def job(
        self,
        as_of: datetime,
        *,
        data_dir: Path,
        time_zones: dict[str, str],
        mode: Mode | None = None,
        run_id: str | None = None,
    ) -> Job:
        """The flow run's job at `as_of` (the run's `as_of`, else its scheduled time); `mode` None: live or
        run as `live` says. `data_dir` and `time_zones` as resolved once where the flow starts."""
        return Job.plan(
            sites=self.sites,
            start=self.start,
            end=self.end,
            as_of=self.as_of or as_of,
            lookback_days=self.lookback_days,
            mode=mode or (Mode.LIVE if self.live else Mode.RUN),
            window_hours=self.window_hours,
            data_dir=data_dir,
            points=self.points if self.points is not None else self.points_file,
            page_size=self.page_size,
            requests_per_minute=self.max_requests_per_minute,
            force=self.force,
            transform=self.transform,
            heal=self.heal,
            compact=self.compact,
            limits_file=self.limits_file,
            time_zones=time_zones,
            run_id=run_id,
        )


class TransformParams(TimeZoneParams, BuildParams):
    """Parameters of the transform flow: a build of what has landed, no extraction."""

    data_dir: str | Path | None = Field(
        default=None,
        description="Data dir (a folder or s3://bucket/prefix); default ACE_ETL_DATA_DIR or ./data.",
    )
    full_check: bool = Field(
        default=False,
        description="Test every row, not only the partitions the build changed (ace-etl transform --full-check).",
    )


class BackfillParams(EtlParams):
    """A backfill names its range: there is no sensible default for history."""

    start: datetime
    end: datetime


class RetentionParams(BaseModel):
    """Parameters of the retention flow: raw samples of the days before today minus `keep_days` are deleted."""

    keep_days: int = Field(ge=1, description="Days of raw samples to keep before today (UTC); older ones go.")
    sites: list[str] | None = Field(default=None, description="Only these sites; default every site.")
    data_dir: str | Path | None = Field(
        default=None,
        description="Data dir (a folder or s3://bucket/prefix); default ACE_ETL_DATA_DIR or ./data.",
    )


Model = TypeVar("Model", bound=BaseModel)
Result = TypeVar("Result")


def flat_parameters(model: type[Model]) -> Callable[[Callable[[Model], Result]], Callable[..., Result]]:
    """Give a flow the model's fields as parameters of its own, and hand the body one validated model.

    Prefect merges a run's parameters into its deployment's key by key, so `--param page_size=500` keeps
    the deployment's sites and the rest; a single object parameter would be replaced whole. The model stays
    the one definition: types, bounds, defaults, descriptions (in the flow's docstring, where Prefect's UI
    reads them) and the checks across fields, which run when the flow starts.
    """

    def expose(body: Callable[[Model], Result]) -> Callable[..., Result]:
        @functools.wraps(body)
        def flow_function(**values: object) -> Result:
            return body(model(**values))

        parameters = [
            inspect.Parameter(
                name,
                inspect.Parameter.KEYWORD_ONLY,
                default=inspect.Parameter.empty if field.is_required() else field.get_default(),
                annotation=Annotated[(field.annotation, *field.metadata)]
                if field.metadata
                else field.annotation,
            )
            for name, field in model.model_fields.items()
        ]
        del flow_function.__wrapped__  # Prefect must read the signature below, not the body's
        flow_function.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
        flow_function.__annotations__ = {p.name: p.annotation for p in parameters}
        described = "\n".join(
            f"    {name}: {field.description}"
            for name, field in model.model_fields.items()
            if field.description
        )
        flow_function.__doc__ = f"{inspect.cleandoc(body.__doc__ or '')}\n\nArgs:\n{described}\n"
        return flow_function

    return expose
