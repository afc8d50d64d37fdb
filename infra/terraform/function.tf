# The trigger: a gen2 Cloud Function fired by Eventarc on every finalized object in the inbox.
# Its source is assembled by scripts/package_function.sh (trigger/main.py as main.py, the
# workers package without its engines, and a requirements.txt with only what the trigger
# imports) into build/function before `terraform plan`.
locals {
  function_source_dir = "${path.module}/build/function"

  trigger_env = merge(local.common_env, {
    INBOX_BUCKET   = local.inbox_bucket
    INBOX_PREFIX   = var.inbox_prefix
    JOBS_TOPIC     = google_pubsub_topic.jobs.name
    STAGING_BUCKET = local.staging_bucket
    RESULTS_BUCKET = local.results_bucket
  })
}

data "archive_file" "function_source" {
  type        = "zip"
  source_dir  = local.function_source_dir
  output_path = "${path.module}/build/function.zip"

  lifecycle {
    precondition {
      condition     = fileexists("${local.function_source_dir}/main.py")
      error_message = "Function source missing: run scripts/package_function.sh first."
    }
  }
}

resource "google_storage_bucket_object" "function_source" {
  # Content-addressed name: a changed source is a new object, which redeploys the function.
  name   = "trigger-${data.archive_file.function_source.output_md5}.zip"
  bucket = local.source_bucket
  source = data.archive_file.function_source.output_path
}

resource "google_cloudfunctions2_function" "trigger" {
  name        = "${local.prefix}-trigger"
  location    = var.region
  description = "Inbox finalize -> job message on ${google_pubsub_topic.jobs.name}"
  labels      = local.labels

  build_config {
    runtime           = "python312"
    entry_point       = "on_finalized"
    service_account   = google_service_account.component["fnbuild"].id
    docker_repository = google_artifact_registry_repository.images.id
    source {
      storage_source {
        bucket = local.source_bucket
        object = google_storage_bucket_object.function_source.name
      }
    }
  }

  service_config {
    min_instance_count             = 0
    max_instance_count             = 20
    available_memory               = "256M"
    timeout_seconds                = 60
    ingress_settings               = "ALLOW_INTERNAL_ONLY"
    all_traffic_on_latest_revision = true
    service_account_email          = google_service_account.component["trigger"].email
    environment_variables          = local.trigger_env
  }

  event_trigger {
    trigger_region        = var.region
    event_type            = "google.cloud.storage.object.v1.finalized"
    retry_policy          = "RETRY_POLICY_RETRY"
    service_account_email = google_service_account.component["trigger"].email
    event_filters {
      attribute = "bucket"
      value     = local.inbox_bucket
    }
  }

  depends_on = [
    google_project_service.apis,
    google_project_iam_member.eventarc_receiver,
    google_project_iam_member.gcs_agent_publishes_events,
    google_project_iam_member.builds_write_logs["fnbuild"],
    google_project_iam_member.fnbuild_reads_function_sources,
    google_artifact_registry_repository_iam_member.builds_push_images["fnbuild"],
    google_storage_bucket_iam_member.component,
  ]
}

# Eventarc delivers to the function's underlying Cloud Run service as the trigger account.
resource "google_cloud_run_v2_service_iam_member" "eventarc_invokes_trigger" {
  name     = google_cloudfunctions2_function.trigger.name
  location = var.region
  role     = "roles/run.invoker"
  member   = google_service_account.component["trigger"].member
}
