# jobs: one message per upload (trigger, backfill) -> STT and SER push subscriptions.
# partials: "partial ready" from STT/SER -> the joiner's push subscription.
resource "google_pubsub_topic" "jobs" {
  name         = "${local.prefix}-jobs"
  kms_key_name = var.kms_key_name
  labels       = local.labels

  depends_on = [google_project_service.apis, google_kms_crypto_key_iam_member.service_agents]
}

resource "google_pubsub_topic" "partials" {
  name         = "${local.prefix}-partials"
  kms_key_name = var.kms_key_name
  labels       = local.labels

  depends_on = [google_project_service.apis, google_kms_crypto_key_iam_member.service_agents]
}
