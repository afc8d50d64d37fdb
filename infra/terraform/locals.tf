locals {
  prefix         = var.name_prefix
  project_number = data.google_project.this.number
  labels         = merge({ app = "speech-pipeline", deployment = var.name_prefix }, var.labels)

  registry  = "${var.region}-docker.pkg.dev/${var.project_id}/${google_artifact_registry_repository.images.repository_id}"
  gpu_image = coalesce(var.gpu_image, "${local.registry}/worker-gpu:${var.image_tag}")
  cpu_image = coalesce(var.cpu_image, "${local.registry}/worker-cpu:${var.image_tag}")

  # Google-managed service agents that act on our behalf.
  pubsub_agent = "serviceAccount:service-${local.project_number}@gcp-sa-pubsub.iam.gserviceaccount.com"

  # Fixed custom audiences for OIDC tokens: a push subscription can name its service's audience
  # before the service (and its URL) exists, and the service's own settings never need its URL.
  audiences = {
    stt    = "${local.prefix}-stt"
    ser    = "${local.prefix}-ser"
    joiner = "${local.prefix}-joiner"
  }

  # Cloud Run refuses HTTP/1 request bodies over 32 MiB; the services refuse them first, with a
  # message that names the inbox bucket (larger files go there).
  max_request_bytes = 32 * 1024 * 1024

  # Environment every workers container shares; names are the ones workers/core/settings.py reads.
  common_env = {
    GOOGLE_CLOUD_PROJECT = var.project_id
    LOG_FORMAT           = "json"
    MAX_REQUEST_BYTES    = tostring(local.max_request_bytes)
  }
}
