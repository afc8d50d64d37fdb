# A Cloud Run worker fed by a Pub/Sub push subscription: OIDC-authenticated pushes, exponential
# backoff, a dead-letter topic with a pull subscription that keeps what lands there, and the IAM
# the Pub/Sub service agent needs to dead-letter.

locals {
  env = merge(var.env, {
    PUSH_AUTH            = "on"
    PUSH_AUDIENCE        = var.audience
    PUSH_SERVICE_ACCOUNT = var.push_service_account_email
  })
  limits = merge(
    { cpu = tostring(var.cpu), memory = "${var.memory}Gi" },
    var.gpu ? { "nvidia.com/gpu" = "1" } : {},
  )
}

resource "google_cloud_run_v2_service" "worker" {
  name                 = var.name
  location             = var.region
  ingress              = var.ingress
  custom_audiences     = [var.audience]
  invoker_iam_disabled = false
  deletion_protection  = var.deletion_protection
  labels               = var.labels

  template {
    service_account                  = var.service_account_email
    timeout                          = "${var.request_timeout_seconds}s"
    max_instance_request_concurrency = var.concurrency
    gpu_zonal_redundancy_disabled    = var.gpu ? var.gpu_zonal_redundancy_disabled : null
    labels                           = var.labels

    scaling {
      min_instance_count = var.min_instances
      max_instance_count = var.max_instances
    }

    dynamic "node_selector" {
      for_each = var.gpu ? ["nvidia-l4"] : []
      content {
        accelerator = node_selector.value
      }
    }

    containers {
      image = var.image

      ports {
        container_port = 8080
      }

      resources {
        limits = local.limits
        # GPU instances must keep their CPU allocated; a CPU worker only needs it during requests.
        cpu_idle          = !var.gpu
        startup_cpu_boost = true
      }

      dynamic "env" {
        for_each = local.env
        content {
          name  = env.key
          value = env.value
        }
      }

      # The model is loaded before /healthz answers: allow up to 4 minutes for a cold start.
      startup_probe {
        initial_delay_seconds = 0
        period_seconds        = 10
        timeout_seconds       = 5
        failure_threshold     = 24
        http_get {
          path = "/healthz"
          port = 8080
        }
      }

      liveness_probe {
        period_seconds    = 30
        timeout_seconds   = 5
        failure_threshold = 3
        http_get {
          path = "/healthz"
          port = 8080
        }
      }
    }
  }

  lifecycle {
    precondition {
      condition     = var.request_timeout_seconds >= var.ack_deadline_seconds
      error_message = "request_timeout_seconds must be at least ack_deadline_seconds, or Cloud Run cuts a job Pub/Sub still waits for."
    }
    precondition {
      condition     = !var.gpu || (var.cpu >= 4 && var.memory >= 16 && var.concurrency <= 16)
      error_message = "A GPU worker needs at least 4 vCPU and 16 GiB, and takes at most 16 requests at once (its jobs and its queue)."
    }
  }
}

resource "google_cloud_run_v2_service_iam_member" "push_invoker" {
  name     = google_cloud_run_v2_service.worker.name
  location = var.region
  role     = "roles/run.invoker"
  member   = "serviceAccount:${var.push_service_account_email}"
}

resource "google_pubsub_topic" "dead_letter" {
  name                       = "${var.name}-dead-letter"
  kms_key_name               = var.kms_key_name
  message_retention_duration = "${var.message_retention_seconds}s"
  labels                     = var.labels
}

# A topic without a subscription drops what is published to it: this one keeps dead letters.
resource "google_pubsub_subscription" "dead_letter" {
  name                       = "${var.name}-dead-letter"
  topic                      = google_pubsub_topic.dead_letter.id
  ack_deadline_seconds       = 60
  message_retention_duration = "${var.message_retention_seconds}s"
  retain_acked_messages      = false
  labels                     = var.labels

  expiration_policy {
    ttl = ""
  }
}

resource "google_pubsub_subscription" "push" {
  name                       = "${var.name}-push"
  topic                      = var.topic_id
  ack_deadline_seconds       = var.ack_deadline_seconds
  message_retention_duration = "${var.message_retention_seconds}s"
  labels                     = var.labels

  push_config {
    push_endpoint = "${google_cloud_run_v2_service.worker.uri}${var.push_path}"
    oidc_token {
      service_account_email = var.push_service_account_email
      audience              = var.audience
    }
  }

  retry_policy {
    minimum_backoff = "${var.minimum_backoff_seconds}s"
    maximum_backoff = "${var.maximum_backoff_seconds}s"
  }

  dead_letter_policy {
    dead_letter_topic     = google_pubsub_topic.dead_letter.id
    max_delivery_attempts = var.max_delivery_attempts
  }

  expiration_policy {
    ttl = ""
  }

  depends_on = [
    google_cloud_run_v2_service_iam_member.push_invoker,
    google_pubsub_topic_iam_member.dead_letter_publisher,
  ]
}

# Dead-lettering is done by the Pub/Sub service agent: it publishes to the dead-letter topic and
# acknowledges (subscriber) on the source subscription.
resource "google_pubsub_topic_iam_member" "dead_letter_publisher" {
  topic  = google_pubsub_topic.dead_letter.id
  role   = "roles/pubsub.publisher"
  member = var.pubsub_service_agent
}

resource "google_pubsub_subscription_iam_member" "dead_letter_subscriber" {
  subscription = google_pubsub_subscription.push.id
  role         = "roles/pubsub.subscriber"
  member       = var.pubsub_service_agent
}
