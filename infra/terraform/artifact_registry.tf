resource "google_artifact_registry_repository" "images" {
  repository_id = "${local.prefix}-images"
  location      = var.region
  format        = "DOCKER"
  description   = "Worker images (worker-gpu, worker-cpu) and the trigger function's build."
  kms_key_name  = var.kms_key_name
  labels        = local.labels

  docker_config {
    immutable_tags = var.immutable_image_tags
  }

  # KEEP wins over DELETE: the ten newest versions stay whatever their age.
  cleanup_policy_dry_run = false
  cleanup_policies {
    id     = "keep-recent"
    action = "KEEP"
    most_recent_versions {
      keep_count = 10
    }
  }
  cleanup_policies {
    id     = "delete-old"
    action = "DELETE"
    condition {
      tag_state  = "ANY"
      older_than = "2592000s"
    }
  }

  depends_on = [google_project_service.apis, google_kms_crypto_key_iam_member.service_agents]
}
