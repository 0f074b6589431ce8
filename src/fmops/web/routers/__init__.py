"""Web routers: one module per page (or per group of fragments a page uses)."""

from fastapi import APIRouter

from fmops.web.routers import (
    chat,
    console_admin_keys,
    console_admin_project,
    console_admin_users,
    console_alerts,
    console_annotation,
    console_dashboards,
    console_data,
    console_data_versions,
    console_dataset_traces,
    console_endpoints,
    console_evals,
    console_evals_compare,
    console_evals_run,
    console_finetunes,
    console_finetunes_job,
    console_home,
    console_models,
    console_playground,
    console_prompts,
    console_traces,
    login,
)

# Order matters only where paths overlap; the chat's `/` comes last.
WEB_ROUTERS: list[APIRouter] = [
    login.router,
    console_home.router,
    console_models.router,
    console_prompts.router,
    console_playground.router,
    console_endpoints.router,
    console_traces.router,
    console_dataset_traces.router,
    console_dashboards.router,
    console_alerts.router,
    console_data.router,
    console_data_versions.router,
    console_annotation.router,
    console_finetunes.router,
    console_finetunes_job.router,
    console_evals.router,
    console_evals_compare.router,
    console_evals_run.router,
    console_admin_users.router,
    console_admin_keys.router,
    console_admin_project.router,
    chat.router,
]
