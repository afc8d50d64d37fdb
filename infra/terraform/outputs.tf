output "inbox_bucket" {
  description = "Upload audio here; every finalized object becomes a job."
  value       = local.inbox_bucket
}

output "staging_bucket" {
  description = "STT/SER partials (deleted after staging_retention_days)."
  value       = local.staging_bucket
}

output "results_bucket" {
  description = "Merged results: <object name>.json, one JSON line each."
  value       = local.results_bucket
}

output "gsutil_cp_example" {
  description = "First upload."
  value       = "gsutil cp call.wav gs://${local.inbox_bucket}/${var.inbox_prefix}call.wav"
}

output "service_urls" {
  description = "Cloud Run service URLs (none is public; callers need roles/run.invoker)."
  value = {
    stt    = module.gpu_worker["stt"].uri
    ser    = module.gpu_worker["ser"].uri
    joiner = module.joiner.uri
    api    = google_cloud_run_v2_service.api.uri
  }
}

output "api_url" {
  description = "POST /v1/analyze here with an ID token: curl -H \"Authorization: Bearer $(gcloud auth print-identity-token)\" --data-binary @call.wav URL/v1/analyze"
  value       = google_cloud_run_v2_service.api.uri
}

output "topics" {
  description = "Pub/Sub topics."
  value = {
    jobs     = google_pubsub_topic.jobs.name
    partials = google_pubsub_topic.partials.name
  }
}

output "dead_letter_subscriptions" {
  description = "Pull subscriptions keeping dead letters, per worker (inspect, then `python -m workers redrive`)."
  value = merge(
    { for name, worker in module.gpu_worker : name => worker.dead_letter_subscription },
    { joiner = module.joiner.dead_letter_subscription },
  )
}

output "bigquery_table" {
  description = "BIGQUERY_TABLE for `python -m workers load-bigquery`."
  value       = local.bigquery_table
}

output "image_repository" {
  description = "Artifact Registry path: push worker-gpu:TAG and worker-cpu:TAG here."
  value       = local.registry
}

output "service_accounts" {
  description = "Service account email per component."
  value       = { for name, account in google_service_account.component : name => account.email }
}

output "image_build_service_account" {
  description = "Service account to run the image builds as (gcloud builds submit --service-account)."
  value       = google_service_account.component["imagebuild"].email
}

output "build_source_bucket" {
  description = "Bucket the image builds read their uploaded source from (--gcs-source-staging-dir=gs://BUCKET/source)."
  value       = google_storage_bucket.buckets["function-source"].name
}
