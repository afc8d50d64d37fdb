# One service account per component, each with only what it touches. No keys: Cloud Run,
# Cloud Functions, Eventarc, Pub/Sub and Cloud Scheduler mint short-lived tokens for them.
locals {
  components = {
    trigger    = "Cloud Function: inbox finalize event -> job message"
    stt        = "STT worker (GPU)"
    ser        = "SER worker (GPU)"
    joiner     = "Joiner: partials -> result"
    api        = "One-file API: calls STT and SER"
    push       = "Identity of Pub/Sub push OIDC tokens"
    backfill   = "Backfill job: inbox listing -> job messages"
    loader     = "load-bigquery job: results bucket -> BigQuery"
    scheduler  = "Cloud Scheduler: runs the backfill and load jobs"
    fnbuild    = "Builds the trigger function's image"
    imagebuild = "Cloud Build: builds and pushes the worker images (gcloud builds submit --service-account)"
  }

  # (bucket, role, component) triples.
  bucket_grants = [
    ["inbox", "roles/storage.objectViewer", "stt"],
    ["inbox", "roles/storage.objectViewer", "ser"],
    ["inbox", "roles/storage.objectViewer", "backfill"],
    # Partials are written with if-generation-match and read back. A partial made by another
    # model or engine version is replaced when the job is reprocessed, and the backfill moves
    # its ledger markers from "claimed" to "published"/"failed": overwriting needs delete,
    # which objectUser has and objectCreator lacks.
    ["staging", "roles/storage.objectUser", "stt"],
    ["staging", "roles/storage.objectUser", "ser"],
    ["staging", "roles/storage.objectViewer", "joiner"],
    ["staging", "roles/storage.objectUser", "backfill"],
    # The joiner replaces a result when a newer generation of the upload arrives: overwrite
    # needs delete, which objectUser has and objectCreator lacks.
    ["results", "roles/storage.objectUser", "joiner"],
    ["results", "roles/storage.objectViewer", "backfill"],
    ["results", "roles/storage.objectViewer", "loader"],
    ["function-source", "roles/storage.objectViewer", "fnbuild"],
    # `gcloud builds submit --gcs-source-staging-dir=gs://<function-source>/source` uploads there.
    ["function-source", "roles/storage.objectViewer", "imagebuild"],
  ]

  topic_publishers = {
    "jobs/trigger"  = google_pubsub_topic.jobs.id
    "jobs/backfill" = google_pubsub_topic.jobs.id
    "partials/stt"  = google_pubsub_topic.partials.id
    "partials/ser"  = google_pubsub_topic.partials.id
  }
}

resource "google_service_account" "component" {
  for_each = local.components

  account_id   = "${local.prefix}-${each.key}"
  display_name = "${local.prefix} ${each.key}"
  description  = each.value

  depends_on = [google_project_service.apis]
}

resource "google_storage_bucket_iam_member" "component" {
  for_each = { for g in local.bucket_grants : join("/", g) => g }

  bucket = google_storage_bucket.buckets[each.value[0]].name
  role   = each.value[1]
  member = google_service_account.component[each.value[2]].member
}

resource "google_pubsub_topic_iam_member" "publisher" {
  for_each = local.topic_publishers

  topic  = each.value
  role   = "roles/pubsub.publisher"
  member = google_service_account.component[split("/", each.key)[1]].member
}

# The api calls STT and SER directly with ID tokens.
resource "google_cloud_run_v2_service_iam_member" "api_calls_gpu_workers" {
  for_each = module.gpu_worker

  name     = each.value.service_name
  location = var.region
  role     = "roles/run.invoker"
  member   = google_service_account.component["api"].member
}

resource "google_cloud_run_v2_service_iam_member" "api_invokers" {
  for_each = toset(var.api_invokers)

  name     = google_cloud_run_v2_service.api.name
  location = var.region
  role     = "roles/run.invoker"
  member   = each.value
}

# Pub/Sub signs push OIDC tokens and Eventarc deliveries as these accounts (needed explicitly in
# projects created before April 2021, harmless after).
resource "google_service_account_iam_member" "pubsub_mints_tokens" {
  for_each = toset(["push", "trigger"])

  service_account_id = google_service_account.component[each.key].name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = local.pubsub_agent
}

# Project-level roles that have no narrower resource to bind to.
resource "google_project_iam_member" "eventarc_receiver" {
  project = var.project_id
  role    = "roles/eventarc.eventReceiver"
  member  = google_service_account.component["trigger"].member
}

resource "google_project_iam_member" "gcs_agent_publishes_events" {
  project = var.project_id
  role    = "roles/pubsub.publisher"
  member  = "serviceAccount:${data.google_storage_project_service_account.gcs.email_address}"
}

resource "google_project_iam_member" "loader_runs_bigquery_jobs" {
  project = var.project_id
  role    = "roles/bigquery.jobUser"
  member  = google_service_account.component["loader"].member
}

resource "google_project_iam_member" "builds_write_logs" {
  for_each = toset(["fnbuild", "imagebuild"])

  project = var.project_id
  role    = "roles/logging.logWriter"
  member  = google_service_account.component[each.key].member
}

# Gen2 functions copy the source into Google's gcf-v2-sources-<number>-<region> bucket and
# build from there: the build account reads those buckets and no other.
resource "google_project_iam_member" "fnbuild_reads_function_sources" {
  project = var.project_id
  role    = "roles/storage.objectViewer"
  member  = google_service_account.component["fnbuild"].member

  condition {
    title      = "gcf-v2-sources buckets only"
    expression = "resource.name.startsWith(\"projects/_/buckets/gcf-v2-sources-\")"
  }
}

resource "google_artifact_registry_repository_iam_member" "builds_push_images" {
  for_each = toset(["fnbuild", "imagebuild"])

  location   = google_artifact_registry_repository.images.location
  repository = google_artifact_registry_repository.images.name
  role       = "roles/artifactregistry.writer"
  member     = google_service_account.component[each.key].member
}

resource "google_bigquery_dataset_iam_member" "loader_writes_results" {
  dataset_id = google_bigquery_dataset.speech.dataset_id
  role       = "roles/bigquery.dataEditor"
  member     = google_service_account.component["loader"].member
}
