variable "name" {
  description = "Service name (also the stem of its subscription, dead-letter topic and dead-letter subscription)."
  type        = string
}

variable "region" {
  description = "Cloud Run region."
  type        = string
}

variable "image" {
  description = "Container image of the worker."
  type        = string
}

variable "service_account_email" {
  description = "Runtime service account of the service."
  type        = string
}

variable "env" {
  description = "Environment variables (names from workers/core/settings.py). PUSH_AUTH, PUSH_AUDIENCE and PUSH_SERVICE_ACCOUNT are set by the module."
  type        = map(string)
}

variable "gpu" {
  description = "Attach one NVIDIA L4 GPU to each instance."
  type        = bool
  default     = false
}

variable "gpu_zonal_redundancy_disabled" {
  description = "GPU services only: run without zonal redundancy (cheaper, best effort)."
  type        = bool
  default     = true
}

variable "cpu" {
  description = "vCPUs per instance (GPU instances need at least 4)."
  type        = number
  default     = 1
}

variable "memory" {
  description = "Memory per instance in GiB (GPU instances need at least 16)."
  type        = number
  default     = 1
}

variable "concurrency" {
  description = "Requests one instance takes at once (for a GPU worker: the jobs it runs at once plus those it holds waiting, at most 16)."
  type        = number
  default     = 1
}

variable "min_instances" {
  description = "Instances kept warm; 0 scales to zero when idle."
  type        = number
  default     = 0
}

variable "max_instances" {
  description = "Most instances at once."
  type        = number
}

variable "ingress" {
  description = "Cloud Run ingress (Pub/Sub push counts as internal traffic)."
  type        = string
  default     = "INGRESS_TRAFFIC_INTERNAL_ONLY"
}

variable "request_timeout_seconds" {
  description = "Cloud Run request timeout; must be at least the ack deadline so Pub/Sub gives up first."
  type        = number
}

variable "deletion_protection" {
  description = "Protect the service against terraform destroy."
  type        = bool
  default     = false
}

variable "audience" {
  description = "Fixed custom audience of the service: push OIDC tokens and direct callers' ID tokens name it."
  type        = string
}

variable "topic_id" {
  description = "Topic the push subscription reads (projects/P/topics/T)."
  type        = string
}

variable "push_path" {
  description = "Path of the push endpoint on the service."
  type        = string
}

variable "push_service_account_email" {
  description = "Service account whose OIDC token Pub/Sub attaches to each push; it gets run.invoker on this service."
  type        = string
}

variable "pubsub_service_agent" {
  description = "IAM member of the project's Pub/Sub service agent, which forwards dead letters."
  type        = string
}

variable "ack_deadline_seconds" {
  description = "Ack deadline (the push request timeout); at most 600."
  type        = number
}

variable "max_delivery_attempts" {
  description = "Deliveries before the message goes to the dead-letter topic (5-100)."
  type        = number
}

variable "minimum_backoff_seconds" {
  description = "Shortest redelivery backoff."
  type        = number
}

variable "maximum_backoff_seconds" {
  description = "Longest redelivery backoff (at most 600)."
  type        = number
}

variable "message_retention_seconds" {
  description = "Retention of unacknowledged messages and of dead letters."
  type        = number
}

variable "kms_key_name" {
  description = "CMEK key for the dead-letter topic, or null."
  type        = string
  default     = null
}

variable "labels" {
  description = "Labels for every resource."
  type        = map(string)
  default     = {}
}
