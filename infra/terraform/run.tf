locals {
  # Cloud Run keeps a push request open a minute longer than Pub/Sub waits for it, so the
  # subscription's ack deadline, not Cloud Run, decides when a job has taken too long.
  push_request_timeout_seconds = var.ack_deadline_seconds + 60

  gpu_worker_env = merge(local.common_env, {
    INBOX_BUCKET      = local.inbox_bucket
    STAGING_BUCKET    = local.staging_bucket
    PARTIALS_TOPIC    = google_pubsub_topic.partials.name
    MAX_AUDIO_SECONDS = tostring(var.max_audio_seconds)
    INBOX_PREFIX      = var.inbox_prefix
    # Jobs one instance runs at once (an engine worker each) and holds waiting; a push past
    # both is answered 429 and Pub/Sub delivers it again after its backoff.
    WORKER_CONCURRENCY = tostring(var.gpu_worker_concurrency)
    WORKER_QUEUE       = tostring(var.gpu_worker_queue)
  })
  stt_env = merge(local.gpu_worker_env, {
    ROLE       = "stt"
    STT_ENGINE = var.stt_engine
    STT_DEVICE = "cuda"
    # Bigger blocks than the CPU default fill the GPU's batches (8 x 30 s per batch).
    STT_BLOCK_SECONDS = tostring(var.stt_block_seconds)
    STT_REPAIR_PASSES = tostring(var.stt_repair_passes)
  })
  ser_env = merge(local.gpu_worker_env, {
    ROLE       = "ser"
    SER_DEVICE = "cuda"
    SER_ENGINE = var.ser_engine
    # The image carries the whisper-head default and, when built with SER_MODEL_REPO, a
    # transformers checkpoint in /models/ser.
    SER_MODEL = var.ser_engine == "transformers" ? "/models/ser" : "/models/ser-whisper-base"
  })
  joiner_env = merge(local.common_env, { ROLE = "joiner", STAGING_BUCKET = local.staging_bucket, RESULTS_BUCKET = local.results_bucket })
  api_env = merge(local.common_env, {
    ROLE                    = "api"
    STT_URL                 = module.gpu_worker["stt"].uri
    SER_URL                 = module.gpu_worker["ser"].uri
    STT_AUDIENCE            = local.audiences.stt
    SER_AUDIENCE            = local.audiences.ser
    MAX_AUDIO_SECONDS       = tostring(var.max_audio_seconds)
    REQUEST_TIMEOUT_SECONDS = tostring(local.push_request_timeout_seconds)
  })
}

# STT and SER: one L4 each, gpu_worker_concurrency jobs at once per instance (Cloud Run sends it
# those and gpu_worker_queue more), scaled to zero when idle. Ingress stays open
# (IAM-protected, no public invoker) because the api service calls them on their run.app URLs.
locals {
  gpu_workers = {
    stt = { env = local.stt_env, max_instances = var.stt_max_instances }
    ser = { env = local.ser_env, max_instances = var.ser_max_instances }
  }
}

# Each push_worker's dead-letter topic is encrypted with kms_key_name when CMEK is on, so the
# module waits for the Pub/Sub agent's grant on the key, as the root topics do.
module "gpu_worker" {
  source   = "./modules/push_worker"
  for_each = local.gpu_workers

  name                          = "${local.prefix}-${each.key}"
  image                         = local.gpu_image
  service_account_email         = google_service_account.component[each.key].email
  env                           = each.value.env
  gpu                           = true
  gpu_zonal_redundancy_disabled = var.gpu_zonal_redundancy_disabled
  cpu                           = 4
  memory                        = 16
  concurrency                   = var.gpu_worker_concurrency + var.gpu_worker_queue
  min_instances                 = 0
  max_instances                 = each.value.max_instances
  ingress                       = "INGRESS_TRAFFIC_ALL"
  request_timeout_seconds       = local.push_request_timeout_seconds
  audience                      = local.audiences[each.key]
  topic_id                      = google_pubsub_topic.jobs.id
  push_path                     = "/push/job"
  ack_deadline_seconds          = var.ack_deadline_seconds
  max_delivery_attempts         = var.max_delivery_attempts
  minimum_backoff_seconds       = var.retry_minimum_backoff_seconds
  maximum_backoff_seconds       = var.retry_maximum_backoff_seconds
  message_retention_seconds     = var.message_retention_seconds
  region                        = var.region
  push_service_account_email    = google_service_account.component["push"].email
  pubsub_service_agent          = local.pubsub_agent
  deletion_protection           = var.deletion_protection
  kms_key_name                  = var.kms_key_name
  labels                        = local.labels

  depends_on = [google_project_service.apis, google_kms_crypto_key_iam_member.service_agents]
}

# The joiner only merges two small JSON files: CPU, several pushes per instance, internal ingress.
module "joiner" {
  source = "./modules/push_worker"

  name                       = "${local.prefix}-joiner"
  image                      = local.cpu_image
  service_account_email      = google_service_account.component["joiner"].email
  env                        = local.joiner_env
  gpu                        = false
  cpu                        = 1
  memory                     = 1
  concurrency                = 8
  min_instances              = 0
  max_instances              = 5
  ingress                    = "INGRESS_TRAFFIC_INTERNAL_ONLY"
  request_timeout_seconds    = 120
  audience                   = local.audiences.joiner
  topic_id                   = google_pubsub_topic.partials.id
  push_path                  = "/push/partial"
  ack_deadline_seconds       = 60
  max_delivery_attempts      = var.max_delivery_attempts
  minimum_backoff_seconds    = var.retry_minimum_backoff_seconds
  maximum_backoff_seconds    = var.retry_maximum_backoff_seconds
  message_retention_seconds  = var.message_retention_seconds
  region                     = var.region
  push_service_account_email = google_service_account.component["push"].email
  pubsub_service_agent       = local.pubsub_agent
  deletion_protection        = var.deletion_protection
  kms_key_name               = var.kms_key_name
  labels                     = local.labels

  depends_on = [google_project_service.apis, google_kms_crypto_key_iam_member.service_agents]
}

# The one-file API: POST /v1/analyze, which calls STT and SER with ID tokens. Callers need
# roles/run.invoker (var.api_invokers); there is no public invoker.
resource "google_cloud_run_v2_service" "api" {
  name                 = "${local.prefix}-api"
  location             = var.region
  ingress              = "INGRESS_TRAFFIC_ALL"
  invoker_iam_disabled = false
  deletion_protection  = var.deletion_protection
  labels               = local.labels

  template {
    service_account                  = google_service_account.component["api"].email
    timeout                          = "${local.push_request_timeout_seconds + 60}s"
    max_instance_request_concurrency = 4
    labels                           = local.labels

    scaling {
      min_instance_count = 0
      max_instance_count = 3
    }

    containers {
      image = local.cpu_image

      ports {
        container_port = 8080
      }

      # Request bodies stream to /tmp, which is memory on Cloud Run: room for many of
      # MAX_REQUEST_BYTES (32 MiB) at once.
      resources {
        limits = {
          cpu    = "1"
          memory = "2Gi"
        }
        cpu_idle          = true
        startup_cpu_boost = true
      }

      dynamic "env" {
        for_each = local.api_env
        content {
          name  = env.key
          value = env.value
        }
      }

      startup_probe {
        period_seconds    = 5
        timeout_seconds   = 3
        failure_threshold = 12
        http_get {
          path = "/healthz"
          port = 8080
        }
      }
    }
  }

  depends_on = [google_project_service.apis]
}
