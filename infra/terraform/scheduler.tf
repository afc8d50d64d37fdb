# Scheduled Cloud Run jobs on the CPU image: the backfill (inbox -> job messages for what has no
# result yet), the BigQuery load (results bucket -> table, idempotent MERGE) and the healer (jobs
# with one partial and no result past a deadline -> their job messages again). Cloud Scheduler
# starts each through the Cloud Run Admin API with an OAuth token of its own service account.
locals {
  # What the backfill and the healer both read (inbox, staging, results) and where they publish.
  inbox_to_jobs_env = merge(local.common_env, {
    INBOX_BUCKET   = local.inbox_bucket
    INBOX_PREFIX   = var.inbox_prefix
    STAGING_BUCKET = local.staging_bucket
    RESULTS_BUCKET = local.results_bucket
    JOBS_TOPIC     = google_pubsub_topic.jobs.name
  })
  scheduled_jobs = {
    backfill = {
      account  = "backfill"
      args     = concat(["backfill"], var.backfill_args)
      schedule = var.backfill_schedule
      env      = local.inbox_to_jobs_env
    }
    loader = {
      account = "loader"
      # Only results written within the window: each hourly run stages and MERGEs the last few
      # hours (overlapping, so a failed run is caught up by the next), not the whole bucket.
      args = concat(["load-bigquery"],
        var.load_bigquery_window == null ? [] : ["--updated-since", var.load_bigquery_window],
      var.load_bigquery_args)
      schedule = var.load_bigquery_schedule
      env = merge(local.common_env, {
        RESULTS_BUCKET = local.results_bucket
        BIGQUERY_TABLE = local.bigquery_table
      })
    }
    # Reads the inbox, staging and results and publishes job messages: exactly the backfill's grants.
    # It sends again every upload with no result past the threshold, whatever its partials.
    healer = {
      account  = "backfill"
      args     = ["stuck", "--republish", "--older-than", tostring(var.stuck_after_minutes)]
      schedule = var.healer_schedule
      env      = local.inbox_to_jobs_env
    }
  }
}

resource "google_cloud_run_v2_job" "scheduled" {
  for_each = local.scheduled_jobs

  name                = "${local.prefix}-${each.key}"
  location            = var.region
  deletion_protection = var.deletion_protection
  labels              = local.labels

  template {
    task_count = 1
    template {
      service_account = google_service_account.component[each.value.account].email
      timeout         = "3600s"
      max_retries     = 1
      containers {
        image = local.cpu_image
        args  = each.value.args
        resources {
          limits = {
            cpu    = "1"
            memory = "1Gi"
          }
        }
        dynamic "env" {
          for_each = each.value.env
          content {
            name  = env.key
            value = env.value
          }
        }
      }
    }
  }

  depends_on = [google_project_service.apis]
}

resource "google_cloud_run_v2_job_iam_member" "scheduler_runs_job" {
  for_each = google_cloud_run_v2_job.scheduled

  name     = each.value.name
  location = var.region
  role     = "roles/run.invoker"
  member   = google_service_account.component["scheduler"].member
}

resource "google_cloud_scheduler_job" "scheduled" {
  for_each = { for name, job in local.scheduled_jobs : name => job if job.schedule != null }

  name             = "${local.prefix}-${each.key}"
  region           = var.region
  schedule         = each.value.schedule
  time_zone        = var.schedule_time_zone
  attempt_deadline = "180s"

  retry_config {
    retry_count = 1
  }

  http_target {
    http_method = "POST"
    uri         = "https://run.googleapis.com/v2/${google_cloud_run_v2_job.scheduled[each.key].id}:run"
    oauth_token {
      service_account_email = google_service_account.component["scheduler"].email
      scope                 = "https://www.googleapis.com/auth/cloud-platform"
    }
  }

  depends_on = [google_cloud_run_v2_job_iam_member.scheduler_runs_job]
}
