"""Every table fmops stores; importing this module registers them all on `Base.metadata`."""

from fmops.store.models.auth import ApiKey, Membership, Project, User
from fmops.store.models.base import Base
from fmops.store.models.jobs import Job, JobLog

__all__ = ["ApiKey", "Base", "Job", "JobLog", "Membership", "Project", "User"]
