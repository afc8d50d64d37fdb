"""The trigger: a Cloud Function fired by every finalized object in the inbox.

Thin: apply the shared candidate rule, build the job message with the shared job id, publish
it to the jobs topic. No model, no download. Deployed with the ``workers`` package beside it
(only its light modules are imported here), so job ids and the candidate rule are the very
code the workers and the backfill run. Its bus comes from the composition root, as every
entry point's does.
"""

from __future__ import annotations

import logging
from typing import Any, Mapping

import functions_framework
from cloudevents.http import CloudEvent

from workers.composition import Root, configure_logging
from workers.core.contracts import JobMessage, to_dict
from workers.core.jobs import make_job, skip_reason
from workers.core.settings import Settings

log = logging.getLogger("trigger")

FINALIZED = "google.cloud.storage.object.v1.finalized"

# Built on the first event and kept for the instance's life (tests put their own in).
_wiring: dict[str, Any] = {}


def _settings_and_bus() -> tuple[Settings, Any]:
    if not _wiring:
        settings = Settings.from_env()
        configure_logging(settings.log)
        _wiring.update(settings=settings, bus=Root.cloud(settings).publisher())
    return _wiring["settings"], _wiring["bus"]


def job_for(event_type: str, data: Mapping[str, Any], settings: Settings) -> JobMessage | str:
    """The job for a storage event, or why the object is not one."""
    if event_type != FINALIZED:
        return f"event type {event_type} is not {FINALIZED}"
    bucket, name = data.get("bucket"), data.get("name")
    if not bucket or name is None or data.get("generation") in (None, ""):
        return "event without bucket, name and generation"
    cloud, rules = settings.cloud, settings.input
    if bucket in (cloud.staging_bucket, cloud.results_bucket):
        return "an output of the pipeline"
    if cloud.inbox_bucket and bucket != cloud.inbox_bucket:
        return f"bucket {bucket} is not the inbox {cloud.inbox_bucket}"
    reason = skip_reason(name, prefix=rules.inbox_prefix, ignore=rules.ignore_globs)
    if reason:
        return reason
    try:
        generation, size = int(data["generation"]), int(data.get("size") or 0)
    except (TypeError, ValueError):
        # Retrying cannot fix the event itself: say so and let it go.
        return f"malformed event: generation {data.get('generation')!r}, size {data.get('size')!r}"
    # Submitted when the object was created: every delivery of this event makes the same job.
    return make_job(bucket=bucket, name=name, generation=generation, size=size, content_type=data.get("contentType"),
                    source="upload", submitted_at=data.get("timeCreated") or None)


@functions_framework.cloud_event
def on_finalized(event: CloudEvent) -> None:
    settings, bus = _settings_and_bus()
    data = event.data if isinstance(event.data, dict) else {}
    job = job_for(event["type"], data, settings)
    if isinstance(job, str):
        log.info("skipped gs://%s/%s: %s", data.get("bucket"), data.get("name"), job,
                 extra={"object": data.get("name")})
        return
    # A failed publish raises: the function answers 500 and Eventarc delivers the event again.
    message_id = bus.publish(settings.cloud.jobs_topic, to_dict(job), {
        "job_id": job.job_id, "bucket": job.bucket, "name": job.name, "generation": str(job.generation),
        "source": job.source, "event_id": event["id"],
    })
    log.info("job published for gs://%s/%s#%s (message %s)", job.bucket, job.name, job.generation, message_id,
             extra={"job_id": job.job_id, "object": job.name})
