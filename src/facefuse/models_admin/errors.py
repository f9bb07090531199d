"""Errors of model administration; messages say what failed, by how much, and what to do."""

from __future__ import annotations


class ModelAdminError(Exception):
    """Root of the errors `facefuse models publish|canary|promote|rollback` report."""


class AdminCredentialError(ModelAdminError):
    """Triton refused the repository API: no admin key, or the wrong one."""


class ReleaseStateError(ModelAdminError):
    """The command does not fit the current state (no candidate, nothing to roll back to...)."""


class NoReleaseState(ReleaseStateError):
    """The repository has no release state yet (ModelAdmin.ensure_initialised creates it)."""


class GateFailed(ModelAdminError):
    """A candidate failed a check before taking traffic; `report` holds every figure."""

    def __init__(self, message: str, report: dict):
        super().__init__(message)
        self.report = report
