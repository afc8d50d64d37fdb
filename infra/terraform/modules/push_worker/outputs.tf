output "service_name" {
  description = "Cloud Run service name."
  value       = google_cloud_run_v2_service.worker.name
}

output "uri" {
  description = "Cloud Run service URL."
  value       = google_cloud_run_v2_service.worker.uri
}

output "subscription" {
  description = "Push subscription id."
  value       = google_pubsub_subscription.push.id
}

output "dead_letter_topic" {
  description = "Dead-letter topic id."
  value       = google_pubsub_topic.dead_letter.id
}

output "dead_letter_subscription" {
  description = "Pull subscription that keeps the dead letters for inspection and redrive."
  value       = google_pubsub_subscription.dead_letter.id
}
