"""Configuration from the environment (names fixed by docs/DESIGN.md).

`ACEIOT_API_URL` and `ACEIOT_API_KEY` match the official `aceiot-models` client so one environment serves both.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from extract.errors import ConfigError

DEFAULT_API_URL = "https://flightdeck.aceiot.cloud/api"


class Settings(BaseSettings):
    """Environment configuration. The key is a SecretStr so it never shows in reprs or logs."""

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    api_url: str = Field(default=DEFAULT_API_URL, validation_alias="ACEIOT_API_URL")
    api_key: SecretStr | None = Field(default=None, validation_alias="ACEIOT_API_KEY")
    data_dir: Path = Field(default=Path("data"), validation_alias="ACE_ETL_DATA_DIR")
    budget_path: Path | None = Field(default=None, validation_alias="ACE_ETL_BUDGET_PATH")
    # Per-site overrides of the time zone (extract.api.sites); `--sites-file` and a flow's `sites_file` win.
    sites_file: Path | None = Field(default=None, validation_alias="ACE_SITES_FILE")
    # The longest Retry-After obeyed, in seconds (None: RetryPolicy.retry_after_max).
    max_retry_after: float | None = Field(
        default=None, ge=0, allow_inf_nan=False, validation_alias="ACE_ETL_MAX_RETRY_AFTER"
    )

    @field_validator("sites_file", mode="before")
    @classmethod
    def _unset_when_empty(cls, value: object) -> object:
        # `ACE_SITES_FILE=` (set, but empty) means no sites file, not the current folder.
        return None if value == "" else value

    def require_key(self) -> SecretStr:
        if self.api_key is None or not self.api_key.get_secret_value().strip():
            raise ConfigError(
                "no API key: set ACEIOT_API_KEY to your ACE IoT API key (or try `ace-etl demo`, which needs none)"
            )
        return self.api_key
