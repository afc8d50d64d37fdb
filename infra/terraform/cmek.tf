# Optional customer-managed encryption: every Google service agent that encrypts our data with
# the key must be allowed to use it before the resource that uses it is created.
data "google_storage_project_service_account" "gcs" {
  project = var.project_id
}

data "google_bigquery_default_service_account" "bigquery" {
  project = var.project_id
}

locals {
  cmek_service_agents = var.kms_key_name == null ? toset([]) : toset([
    "serviceAccount:${data.google_storage_project_service_account.gcs.email_address}",
    "serviceAccount:${data.google_bigquery_default_service_account.bigquery.email}",
    local.pubsub_agent,
    "serviceAccount:service-${local.project_number}@gcp-sa-artifactregistry.iam.gserviceaccount.com",
  ])
}

resource "google_kms_crypto_key_iam_member" "service_agents" {
  for_each = local.cmek_service_agents

  crypto_key_id = var.kms_key_name
  role          = "roles/cloudkms.cryptoKeyEncrypterDecrypter"
  member        = each.value

  # The Pub/Sub and Artifact Registry service agents exist once their APIs are enabled.
  depends_on = [google_project_service.apis]
}
