"""The context every ``cdl`` subcommand gets: global options and, on demand, the settings."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from cdl_gitlab.config import Settings


class AppContext:
    """What every subcommand gets: the global options and, on demand, the settings."""

    def __init__(self, config_path: Path | None, profile: str | None) -> None:
        self.config_path = config_path
        self.profile_override = profile
        self._settings: Settings | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            from cdl_gitlab.config import load_settings  # (pydantic: not for `cdl --version`)

            self._settings = load_settings(self.config_path, self.profile_override)
        return self._settings


pass_app = click.make_pass_decorator(AppContext)
