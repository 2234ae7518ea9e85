"""The reviewer page (FastAPI, server-rendered Jinja2 with autoescape on; no JS build step).

Routes:
  GET  /                                   flagged media, filters (query string) and paging
  GET  /jobs/{job_id}                      a media page: frames with boxes, plot, detectors, review form
  GET  /jobs/{job_id}/frames/{index}.jpg   one sampled frame as a JPEG (fetched again and re-sampled)
  POST /jobs/{job_id}/reviews              record a decision (form post), then 303 back to the media page
  GET  /healthz                            the database answers
Everything it writes goes through storage/reviews.py; stored text is always rendered escaped.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated

import jinja2
from fastapi import APIRouter, Depends, FastAPI, Form, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from sqlalchemy import select, text
from sqlalchemy.orm import Session, sessionmaker
from starlette.exceptions import HTTPException

from storage.db import session_factory, transaction
from storage.objects import ObjectStore, S3Objects, s3_client
from storage.queries import object_keys, sampled_frames
from storage.reviews import ReviewError, ReviewTargetMissing, record_review
from storage.schema import Job, Media
from storage.settings import StorageSettings, get_storage_settings
from tasks.review.filters import FilterError, parse_list_query
from tasks.review.frames import (
    FrameCache,
    FramesUnavailable,
    MediaCopy,
    decode_frames,
    encode_jpeg,
    pick_frames,
)
from tasks.review.settings import ReviewSettings
from tasks.review.views import list_context, media_context
from tasks.settings import get_service_settings
from worker.settings import WorkerSettings, get_settings

logger = logging.getLogger(__name__)

TEMPLATES = Path(__file__).parent / "templates"
REVIEWER_COOKIE = "dfw_reviewer"

router = APIRouter()


@dataclass
class ReviewState:
    settings: ReviewSettings
    sessions: sessionmaker[Session]
    objects: ObjectStore
    worker: WorkerSettings
    tmp_dir: Path
    templates: Jinja2Templates
    frames: FrameCache


def format_score(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


def format_time(value: str | None) -> str:
    return "—" if not value else datetime.fromisoformat(value).strftime("%Y-%m-%d %H:%M:%S %Z").strip()


def create_templates() -> Jinja2Templates:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True, undefined=jinja2.StrictUndefined
    )
    env.filters["score"] = format_score
    env.filters["when"] = format_time
    return Jinja2Templates(env=env)


def create_app(
    settings: ReviewSettings | None = None,
    storage: StorageSettings | None = None,
    objects: ObjectStore | None = None,
) -> FastAPI:
    """The app; settings default to the environment (DFW_REVIEW_*, DFW_DATABASE_URL, DFW_S3_*)."""
    settings = settings or ReviewSettings()
    storage = storage or get_storage_settings()
    app = FastAPI(title="deepfake-worker review", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.review = ReviewState(
        settings=settings,
        sessions=session_factory(storage.database_url),
        objects=objects or S3Objects(s3_client(storage)),
        worker=get_settings(),
        tmp_dir=get_service_settings().tmp_dir,
        templates=create_templates(),
        frames=FrameCache(settings.frame_cache_jobs),
    )
    app.include_router(router)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    return app


def get_state(request: Request) -> ReviewState:
    state: ReviewState = request.app.state.review
    return state


State = Annotated[ReviewState, Depends(get_state)]


async def http_error(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    detail = exc.detail if isinstance(exc, HTTPException) else "internal error"
    return error_page(request, status, str(detail))


async def validation_error(request: Request, exc: Exception) -> Response:
    errors = exc.errors() if isinstance(exc, RequestValidationError) else []
    where = "; ".join(f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', '')}" for e in errors)
    return error_page(request, 400, f"bad request: {where}")


def error_page(request: Request, status: int, message: str) -> Response:
    state = get_state(request)
    return state.templates.TemplateResponse(
        request, "error.html", {"status": status, "message": message}, status_code=status
    )


@router.get("/healthz")
def health(state: State) -> JSONResponse:
    with state.sessions() as session:
        session.execute(text("SELECT 1"))
    return JSONResponse({"status": "ok"})


@router.get("/", response_class=HTMLResponse)
def flagged_list(request: Request, state: State) -> Response:
    try:
        query, filters = parse_list_query(request.query_params, state.settings.default_since)
    except FilterError as exc:
        raise HTTPException(400, str(exc)) from exc
    with state.sessions() as session:
        context = list_context(session, query, filters, state.settings)
    return state.templates.TemplateResponse(request, "list.html", context)


@router.get("/jobs/{job_id}", response_class=HTMLResponse)
def media_page(request: Request, state: State, job_id: int) -> Response:
    return render_media(request, state, job_id, {}, [], 200)


def render_media(
    request: Request, state: State, job_id: int, form: dict[str, str], errors: list[str], status: int
) -> Response:
    with state.sessions() as session:
        context = media_context(session, job_id, state.settings)
    if context is None:
        raise HTTPException(404, f"there is no job {job_id}")
    if not form:
        form = {"decision": "", "note": "", "reviewer": request.cookies.get(REVIEWER_COOKIE, "")}
    context |= {"form": form, "form_errors": errors, "recorded": "recorded" in request.query_params}
    return state.templates.TemplateResponse(request, "media.html", context, status_code=status)


@router.post("/jobs/{job_id}/reviews")
def post_review(
    request: Request,
    state: State,
    job_id: int,
    decision: Annotated[str, Form()] = "",
    reviewer: Annotated[str, Form()] = "",
    note: Annotated[str, Form()] = "",
) -> Response:
    """Post/redirect/get: a valid decision is stored and the browser is sent back to the media page."""
    try:
        with transaction(state.sessions) as session:
            review_id = record_review(session, job_id, decision, reviewer, note)
    except ReviewError as exc:
        form = {"decision": decision, "note": note, "reviewer": reviewer}
        return render_media(request, state, job_id, form, exc.problems, 400)
    except ReviewTargetMissing as exc:
        raise HTTPException(404, str(exc)) from exc
    logger.info("job %s: review %s recorded (%s)", job_id, review_id, decision.strip().lower())
    response = RedirectResponse(f"/jobs/{job_id}?recorded={review_id}#review", status_code=303)
    response.set_cookie(
        REVIEWER_COOKIE, reviewer.strip(), max_age=30 * 86400, httponly=True, samesite="strict"
    )
    return response


@router.get("/jobs/{job_id}/frames/{frame_index}.jpg")
def frame_jpeg(state: State, job_id: int, frame_index: int) -> Response:
    """One of the shown frames of a job; the first request of a page decodes them all, once."""
    shown, copy = frame_plan(state, job_id)
    if frame_index not in shown:
        raise HTTPException(404, f"frame {frame_index} is not one of the frames shown for job {job_id}")

    def load() -> dict[int, bytes]:
        frames = decode_frames(state.objects, copy, state.worker.limits, state.tmp_dir)
        long_side = state.settings.frame_long_side
        return {f.index: encode_jpeg(f.image, long_side) for f in frames if f.index in shown}

    try:
        jpegs = state.frames.get(job_id, load)
    except FramesUnavailable as exc:
        logger.warning("job %s: frames unavailable: %s", job_id, exc)
        raise HTTPException(503 if exc.transient else 404, str(exc)) from exc
    if frame_index not in jpegs:
        raise HTTPException(404, f"frame {frame_index} did not decode again")
    return Response(
        jpegs[frame_index], media_type="image/jpeg", headers={"Cache-Control": "private, max-age=600"}
    )


def frame_plan(state: ReviewState, job_id: int) -> tuple[set[int], MediaCopy]:
    """Which frame indices the media page shows, and where and how to decode them."""
    with state.sessions() as session:
        row = session.execute(
            select(Job, Media).join(Media, Media.id == Job.media_id).where(Job.id == job_id)
        ).one_or_none()
        if row is None:
            raise HTTPException(404, f"there is no job {job_id} with media")
        job, media = row
        frames = pick_frames(sampled_frames(session, job_id), state.settings.frames_shown)
        others = object_keys(session, media.id)
    default = state.worker.sampling.frames_per_video
    return {f["frame_index"] for f in frames}, MediaCopy.of_job(job, media.sha256, others, default)
