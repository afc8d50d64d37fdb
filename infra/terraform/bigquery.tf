# Results table from the repository's own schema file. Partitioned by day on submitted_at (the
# top-level copy of job.submitted_at that results carry for this purpose), clustered on status;
# partitions expire with the results bucket's retention (transcripts are personal data).
locals {
  bigquery_schema_path     = "${path.module}/../../schemas/bigquery/results.json"
  bigquery_dataset_id      = coalesce(var.bigquery_dataset_id, replace("${local.prefix}_speech", "-", "_"))
  bigquery_table           = "${var.project_id}.${local.bigquery_dataset_id}.results"
  bigquery_partition_field = "submitted_at"
}

resource "google_bigquery_dataset" "speech" {
  dataset_id                 = local.bigquery_dataset_id
  location                   = coalesce(var.bigquery_location, var.region)
  description                = "Speech pipeline results (python -m workers load-bigquery)."
  delete_contents_on_destroy = var.force_destroy
  labels                     = local.labels

  dynamic "default_encryption_configuration" {
    for_each = var.kms_key_name == null ? [] : [var.kms_key_name]
    content {
      kms_key_name = default_encryption_configuration.value
    }
  }

  depends_on = [google_project_service.apis, google_kms_crypto_key_iam_member.service_agents]
}

resource "google_bigquery_table" "results" {
  dataset_id          = google_bigquery_dataset.speech.dataset_id
  table_id            = "results"
  description         = "One row per audio object (bucket + name), newest generation."
  schema              = file(local.bigquery_schema_path)
  deletion_protection = var.deletion_protection
  clustering          = ["status"]
  labels              = local.labels

  time_partitioning {
    type          = "DAY"
    field         = local.bigquery_partition_field
    expiration_ms = var.results_retention_days > 0 ? var.results_retention_days * 86400000 : null
  }

  dynamic "encryption_configuration" {
    for_each = var.kms_key_name == null ? [] : [var.kms_key_name]
    content {
      kms_key_name = encryption_configuration.value
    }
  }
}
