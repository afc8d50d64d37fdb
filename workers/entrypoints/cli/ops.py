"""Operations commands: backfill, load-bigquery, status, redrive, stuck.

Each works on Google Cloud (buckets and topics from the settings; the emulators when
PUBSUB_EMULATOR_HOST / STORAGE_EMULATOR_HOST are set) and, where it makes sense, on the
local folder store (``--local-inbox DIR --local-results DIR``, the layout of ``run``).
"""

from __future__ import annotations

import argparse
import sys
import uuid
from datetime import timedelta
from pathlib import Path

from workers.composition import Root
from workers.core.errors import ConfigError
from workers.core.settings import Settings
from workers.entrypoints.cli.options import command_settings, finish_command

BACKFILL_EPILOG = """
examples:
  python -m workers backfill --dry-run                        what would be sent, bytes, audio hours, GPU time
  python -m workers backfill --prefix calls/2026/ --rate 20   publish what has no result yet, 20 messages/s
  python -m workers backfill --reprocess-older-than 0.2.0     also redo results of older pipeline versions
  python -m workers backfill --local-inbox samples --local-results results
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "backfill",
        help="publish a job for every inbox object that has no result yet",
        description="List the inbox, skip objects whose result exists for the same generation and jobs an "
        "earlier or concurrent backfill already sent (the ledger in the staging bucket), and publish the rest "
        "as job messages (source=backfill) at a bounded rate. Safe to rerun and to run twice at once.",
        epilog=BACKFILL_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--prefix", default="", help="only objects under this prefix (default: INBOX_PREFIX)")
    p.add_argument("--glob", default="", help="only object names matching this glob, e.g. '*.wav'")
    p.add_argument("--updated-since", metavar="WHEN",
                   help="only objects updated at or after WHEN (RFC 3339, a date, or an age like 26h, 7d)")
    p.add_argument("--updated-until", metavar="WHEN", help="only objects updated before WHEN")
    p.add_argument("--force", action="store_true",
                   help="publish even when a result or a ledger marker exists (resends lost jobs; the workers still "
                        "keep partials and results made by the same models and pipeline version)")
    p.add_argument("--reprocess-older-than", metavar="VERSION", default="",
                   help="also publish objects whose result has a pipeline_version older than VERSION")
    p.add_argument("--rate", type=float, default=50.0, help="messages per second, 0 for no limit (default 50)")
    p.add_argument("--concurrency", type=int, default=8, help="publishes in flight at once (default 8)")
    p.add_argument("--limit", type=int, default=0, help="publish at most this many (default: all)")
    p.add_argument("--stale-after", type=float, default=15.0, metavar="MINUTES",
                   help="a ledger claim older than this whose run never published is taken over (default 15)")
    p.add_argument("--dry-run", action="store_true",
                   help="print object count, bytes, estimated audio hours and GPU time; publish nothing")
    p.add_argument("--gpu-speed", type=float, default=40.0, metavar="X",
                   help="seconds of audio one GPU does per second, STT and SER together, for --dry-run (default 40)")
    _local_options(p, inbox=True)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    finish_command(p, cmd_backfill, ("core", "cloud"))

    p = sub.add_parser(
        "load-bigquery",
        help="load the results bucket into the BigQuery table, idempotently",
        description="Load result files (NEWLINE_DELIMITED_JSON) into a staging table, then MERGE them into "
        "BIGQUERY_TABLE on job.bucket + job.name keeping the newest job.generation: loading the same results "
        "again leaves one row per audio object, and a re-upload replaces its row.",
    )
    p.add_argument("--prefix", default="", help="only result files under this prefix")
    p.add_argument("--updated-since", metavar="WHEN", help="only results written at or after WHEN (e.g. 26h)")
    p.add_argument("--updated-until", metavar="WHEN", help="only results written before WHEN")
    p.add_argument("--create-table", action="store_true",
                   help="create the table (partitioned on submitted_at) when missing; Terraform does in the cloud")
    p.add_argument("--location", default=None, help="BigQuery location of the dataset (e.g. EU)")
    p.add_argument("--dry-run", action="store_true", help="only count the result files that would be loaded")
    finish_command(p, cmd_load_bigquery, ("cloud",))

    p = sub.add_parser(
        "status",
        help="where one upload stands: queued, STT/SER done, result ok/failed, dead-lettered",
        description="Follow one inbox object through the backfill ledger, the STT and SER partials, the result "
        "and the dead-letter subscriptions (read without acknowledging).",
    )
    p.add_argument("object", metavar="OBJECT", help="gs://BUCKET/NAME, or NAME in INBOX_BUCKET (or --local-inbox)")
    _local_options(p, inbox=True)
    finish_command(p, cmd_status, ("cloud",))

    p = sub.add_parser(
        "redrive",
        help="republish what sits in the dead-letter subscriptions, after a fix",
        description="Pull each dead-letter subscription, republish every message to the topic it came from "
        "(job messages to JOBS_TOPIC, 'partial ready' to PARTIALS_TOPIC), then acknowledge it.",
    )
    p.add_argument("--subscription", action="append", default=[],
                   help="a dead-letter subscription (repeatable; default DEAD_LETTER_SUBSCRIPTIONS)")
    p.add_argument("--limit", type=int, default=10_000, help="at most this many per subscription")
    p.add_argument("--dry-run", action="store_true", help="count what would be republished; leave it there")
    finish_command(p, cmd_redrive, ("cloud",))

    p = sub.add_parser(
        "stuck",
        help="report jobs with no result older than a threshold (one partial, both, or none)",
        description="A job whose STT or SER partial exists but whose other partial never came is stuck: "
        "nothing retries it once its message is dead-lettered or lost. With INBOX_BUCKET and RESULTS_BUCKET "
        "set, every upload older than the threshold with no result is listed too, whatever its partials (none: "
        "its message was never handled; both: the joiner's writes failed until its messages were dropped). "
        "Lists them (job id, object, age); with --republish sends their job messages again (what the scheduled "
        "healer job runs): an engine that finished announces its partial again, and the joiner merges.",
    )
    p.add_argument("--older-than", type=float, default=60.0, metavar="MINUTES", help="default 60")
    p.add_argument("--republish", action="store_true",
                   help="send each stuck job's message to JOBS_TOPIC again (cloud; finds its object in INBOX_BUCKET)")
    _local_options(p, inbox=False)
    finish_command(p, cmd_stuck, ("cloud",))


def _local_options(p: argparse.ArgumentParser, *, inbox: bool) -> None:
    if inbox:
        p.add_argument("--local-inbox", type=Path, metavar="DIR", help="use a local inbox folder instead of GCS")
    p.add_argument("--local-results", type=Path, metavar="DIR",
                   help="results folder of the local store (staging and ledger live in DIR/.staging)")


def _root(args: argparse.Namespace, settings: Settings, *, inbox: bool = True) -> Root:
    """The local folders when --local-inbox/--local-results are given, else Google Cloud."""
    local_inbox = getattr(args, "local_inbox", None)
    if inbox and (local_inbox is None) != (args.local_results is None):
        raise ConfigError("--local-inbox and --local-results go together")
    if args.local_results is None:
        return Root.cloud(settings)
    folder = local_inbox if inbox else args.local_results
    if not folder.is_dir():
        raise ConfigError(f"{'inbox folder' if inbox else 'folder'} {folder} does not exist")
    args.local_results.mkdir(parents=True, exist_ok=True)
    return Root.local(settings, folder, args.local_results)


def _progress(total: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, unit="msg", disable=not enabled or total == 0 or not sys.stderr.isatty(), file=sys.stderr)


# --- backfill -----------------------------------------------------------------------------

def cmd_backfill(args: argparse.Namespace) -> int:
    from workers.ops.backfill import Backfill, BackfillOptions, BackfillSummary
    from workers.ops.bq_load import parse_when

    settings = command_settings(args)
    opts = BackfillOptions(
        prefix=args.prefix, glob=args.glob,
        updated_since=parse_when(args.updated_since) if args.updated_since else None,
        updated_until=parse_when(args.updated_until) if args.updated_until else None,
        force=args.force, reprocess_older_than=args.reprocess_older_than, rate=args.rate,
        concurrency=args.concurrency, limit=args.limit,
    )
    run_id = uuid.uuid4().hex[:12]
    root = _root(args, settings)
    if not root.is_local:
        cloud = settings.cloud
        root.require(INBOX_BUCKET=cloud.inbox_bucket, STAGING_BUCKET=cloud.staging_bucket,
                     RESULTS_BUCKET=cloud.results_bucket)
    stack, bus = None, None
    if not args.dry_run:
        if root.is_local:
            from workers.entrypoints.cli.local import ensure_models

            ensure_models(settings)
            stack = root.local_stack()
            bus = stack.bus
        else:
            bus = root.publisher()
    store, buckets = root.store, root.buckets
    ledger = root.ledger(run_id, stale_after=timedelta(minutes=args.stale_after))
    backfill = Backfill(store, bus, buckets.inbox, buckets.results, settings.cloud.jobs_topic, ledger,
                        inbox_prefix=settings.input.inbox_prefix, ignore=settings.input.ignore_globs)
    summary = BackfillSummary()
    try:
        with _cloud_errors("back-fill the inbox"):
            selected = backfill.plan(opts, summary)
            if args.dry_run:
                for line in summary.plan_lines(args.gpu_speed):
                    print(line)
                return 0
            with _progress(len(selected), not args.no_progress) as bar:
                backfill.publish(selected, opts, summary, on_progress=lambda: bar.update(1))
            if stack is not None:
                print(f"processing {summary.published} file(s) locally...", file=sys.stderr)
                stack.bus.drain()
    finally:
        if stack is not None:
            stack.close()
        elif bus is not None:
            bus.close()
    print(f"backfill run {run_id}")
    for line in summary.lines():
        print(line)
    return 1 if summary.errors else 0


def _cloud_errors(action: str):
    """What the Google clients raise in a command, said plainly (permission, missing resource,
    credentials), with the grants the commands need."""
    from workers.adapters.google_errors import google_errors

    return google_errors(action, missing=ConfigError, needs=(
        "storage.objects.list/get on the buckets, object create on the staging bucket and "
        "pubsub.topics.publish on the jobs topic, or the BigQuery roles"))


# --- load-bigquery --------------------------------------------------------------------------

def cmd_load_bigquery(args: argparse.Namespace) -> int:
    from workers.ops.bq_load import parse_when, result_uris

    settings = command_settings(args)
    cloud = settings.cloud
    root = Root.cloud(settings)
    root.require(RESULTS_BUCKET=cloud.results_bucket, BIGQUERY_TABLE=cloud.bigquery_table)
    with _cloud_errors(f"load {cloud.results_bucket} into {cloud.bigquery_table}"):
        uris = list(result_uris(
            root.store, cloud.results_bucket, args.prefix,
            since=parse_when(args.updated_since) if args.updated_since else None,
            until=parse_when(args.updated_until) if args.updated_until else None,
        ))
        if args.dry_run:
            print(f"result files to load: {len(uris)}")
            return 0
        loader = root.bigquery_loader(location=args.location)
        if args.create_table:
            loader.ensure_table()
        report = loader.load(uris)
    for line in report.lines():
        print(line)
    return 0


# --- status, redrive, stuck ----------------------------------------------------------------

def cmd_status(args: argparse.Namespace) -> int:
    from workers.ops.tracking import upload_status

    settings = command_settings(args)
    root = _root(args, settings)
    buckets, queue = root.buckets, None
    subscriptions: tuple[str, ...] = ()
    if root.is_local:
        bucket, name = buckets.inbox, args.object
    else:
        root.require(STAGING_BUCKET=buckets.staging, RESULTS_BUCKET=buckets.results)
        if args.object.startswith("gs://"):
            bucket, _, name = args.object[5:].partition("/")
        else:
            root.require(INBOX_BUCKET=buckets.inbox)
            bucket, name = buckets.inbox, args.object
        subscriptions = settings.cloud.dead_letter_subscription_list
        if subscriptions:
            queue = root.dead_letters()
    store = root.store
    try:
        with _cloud_errors(f"follow gs://{bucket}/{name}"):
            status = upload_status(store, bucket=bucket, name=name, staging_bucket=buckets.staging,
                                   results_bucket=buckets.results,
                                   ledger=root.ledger("status"), dead_letters=queue,
                                   dead_letter_subscriptions=subscriptions)
    finally:
        if queue is not None:
            queue.close()
    for line in status.lines():
        print(line)
    if not subscriptions and not root.is_local:
        print("(dead letters not checked: set DEAD_LETTER_SUBSCRIPTIONS)", file=sys.stderr)
    return 0 if status.generation is not None else 1


def cmd_redrive(args: argparse.Namespace) -> int:
    from workers.ops.tracking import redrive

    settings = command_settings(args)
    subscriptions = tuple(args.subscription) or settings.cloud.dead_letter_subscription_list
    if not subscriptions:
        raise ConfigError("name the dead-letter subscriptions: --subscription NAME or DEAD_LETTER_SUBSCRIPTIONS")
    root = Root.cloud(settings)
    queue, bus = root.dead_letters(), root.publisher()
    try:
        with _cloud_errors("redrive the dead letters"):
            summary = redrive(queue, bus, subscriptions, jobs_topic=settings.cloud.jobs_topic,
                              partials_topic=settings.cloud.partials_topic, limit=args.limit, dry_run=args.dry_run)
    finally:
        queue.close()
        bus.close()
    for line in summary.lines():
        print(("would be " if args.dry_run else "") + line)
    return 0


def cmd_stuck(args: argparse.Namespace) -> int:
    from workers.ops.tracking import jobs_to_heal

    settings = command_settings(args)
    root = _root(args, settings, inbox=False)
    if root.is_local and args.republish:
        raise ConfigError("--republish is for the cloud; locally, `run` again redoes a file without a result")
    buckets, rules = root.buckets, settings.input
    if not root.is_local:
        root.require(STAGING_BUCKET=buckets.staging)
    store = root.store
    with _cloud_errors("look for stuck jobs"):
        inbox, results = ("", "") if root.is_local else (buckets.inbox, buckets.results)
        found = jobs_to_heal(store, buckets.staging, timedelta(minutes=args.older_than), inbox_bucket=inbox,
                             results_bucket=results, inbox_prefix=rules.inbox_prefix, ignore=rules.ignore_globs,
                             ledger=root.ledger("stuck"))
    for job in found:
        print(f"{job.job_id}  has {job.present}, missing {job.missing}, for {job.age.total_seconds() / 3600:.1f} h"
              f"  {job.name or '(object unknown: not sent by a backfill)'}")
    print(f"{len(found)} job(s) older than {args.older_than:g} min with no result (one partial, both, or none)",
          file=sys.stderr)
    if not args.republish or not found:
        return 1 if found else 0
    return _republish(root, found)


def _republish(root: Root, found) -> int:
    from workers.ops.tracking import republish_stuck

    settings = root.settings
    root.require(GOOGLE_CLOUD_PROJECT=settings.cloud.project, INBOX_BUCKET=settings.cloud.inbox_bucket)
    bus = root.publisher()
    try:
        with _cloud_errors("republish stuck jobs"):
            sent = republish_stuck(root.store, bus, found, inbox_bucket=settings.cloud.inbox_bucket,
                                   jobs_topic=settings.cloud.jobs_topic, inbox_prefix=settings.input.inbox_prefix)
    finally:
        bus.close()
    gone = len(found) - len(sent)
    print(f"republished {len(sent)}" + (f"; {gone} no longer in the inbox at that generation" if gone else ""),
          file=sys.stderr)
    return 0
