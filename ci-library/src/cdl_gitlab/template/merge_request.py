"""The template-update merge request: one open MR per version, created or updated."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cdl_gitlab.errors import CDLError
from cdl_gitlab.template.changelog import Section, demote
from cdl_gitlab.template.conflicts import Conflict

LABEL = "cdl-template-update"
DRAFT = "Draft: "


class MergeRequestError(CDLError):
    """GitLab refused or could not be reached."""


@dataclass(frozen=True)
class UpdateNote:
    """What the merge request says about one update."""

    old_version: str
    new_version: str
    conflicts: list[Conflict]
    changelog: list[Section] | None  # None: the template has no CHANGELOG
    changelog_path: str
    pipeline_url: str | None = None

    @property
    def title(self) -> str:
        title = f"Update the CDL template from {self.old_version} to {self.new_version}"
        return DRAFT + title if self.conflicts else title

    def description(self) -> str:
        lines = [
            f"This merge request updates the project from CDL template {self.old_version} to "
            f"{self.new_version}: `copier update --trust --defaults --vcs-ref "
            f"{self.new_version}`, made by the scheduled template-update pipeline"
            + (f" ({self.pipeline_url})." if self.pipeline_url else "."),
            "",
        ]
        if self.conflicts:
            lines += [
                "## Conflicts",
                "",
                "Copier could not merge your changes in these files. Resolve them on this "
                "branch (remove the `<<<<<<<` / `=======` / `>>>>>>>` blocks, delete the "
                "`.rej` files), then mark the merge request as ready:",
                "",
                *[f"- `{c.path}`: {c.describe().split(': ', 1)[1]}" for c in self.conflicts],
                "",
            ]
        else:
            lines += ["Copier merged every change without conflicts.", ""]
        lines += [f"## Changes ({self.changelog_path})", ""]
        if self.changelog is None:
            lines.append(
                f"The template at {self.new_version} has no `{self.changelog_path}`: "
                "see the template repository's history for what changed."
            )
        elif not self.changelog:
            lines.append(
                f"`{self.changelog_path}` has no section for the versions after "
                f"{self.old_version} up to {self.new_version}."
            )
        else:
            for section in self.changelog:
                lines += [f"### {section.heading}", "", demote(section.body, 1), ""]
        lines += ["", f"<!-- cdl-template-update: {self.new_version} -->"]
        return "\n".join(lines).rstrip() + "\n"


def upsert_merge_request(
    project: Any, source_branch: str, target_branch: str, note: UpdateNote
) -> tuple[str, Any]:
    """Update the open MR of ``source_branch`` or create it: ``("created"|"updated", mr)``.

    ``project`` is a python-gitlab project (may be lazy)."""
    import requests
    from gitlab.exceptions import GitlabError

    try:
        found = project.mergerequests.list(
            source_branch=source_branch, state="opened", get_all=True
        )
        for mr in found:
            if mr.source_branch == source_branch and mr.state == "opened":
                mr.title = note.title
                mr.description = note.description()
                mr.save()
                return "updated", mr
        mr = project.mergerequests.create(
            {
                "source_branch": source_branch,
                "target_branch": target_branch,
                "title": note.title,
                "description": note.description(),
                "labels": LABEL,
                "remove_source_branch": True,
            }
        )
        return "created", mr
    except (GitlabError, requests.RequestException) as exc:
        code = getattr(exc, "response_code", None)
        raise MergeRequestError(
            f"GitLab merge request for {source_branch}: {code or ''} {exc}".strip()
        ) from exc
