locals {
  # Bucket suffix -> days after which objects are deleted (0 keeps them).
  bucket_retention_days = {
    inbox           = var.inbox_retention_days
    staging         = var.staging_retention_days
    results         = var.results_retention_days
    function-source = 0
  }
}

resource "google_storage_bucket" "buckets" {
  # checkov:skip=CKV_GCP_78: versioning would keep deleted audio and transcripts (personal data) past their retention; writes are idempotent by generation and soft delete keeps 7 days for recovery
  # checkov:skip=CKV_GCP_62: legacy usage-log buckets are superseded by Cloud Audit Logs data-access logs for storage.googleapis.com (docs/deploy.md)
  for_each = local.bucket_retention_days

  name                        = "${var.project_id}-${local.prefix}-${each.key}"
  location                    = var.region
  storage_class               = "STANDARD"
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = var.force_destroy
  labels                      = merge(local.labels, { contents = each.key })

  # Results carry the source generation, so history needs no object versions; versions would
  # keep deleted personal data past its retention.
  versioning {
    enabled = false
  }

  soft_delete_policy {
    retention_duration_seconds = 604800
  }

  dynamic "lifecycle_rule" {
    for_each = each.value > 0 ? [each.value] : []
    content {
      condition {
        age = lifecycle_rule.value
      }
      action {
        type = "Delete"
      }
    }
  }

  dynamic "encryption" {
    for_each = var.kms_key_name == null ? [] : [var.kms_key_name]
    content {
      default_kms_key_name = encryption.value
    }
  }

  depends_on = [google_project_service.apis, google_kms_crypto_key_iam_member.service_agents]
}

locals {
  inbox_bucket   = google_storage_bucket.buckets["inbox"].name
  staging_bucket = google_storage_bucket.buckets["staging"].name
  results_bucket = google_storage_bucket.buckets["results"].name
  source_bucket  = google_storage_bucket.buckets["function-source"].name
}
