# --- where ---------------------------------------------------------------------------------
variable "project_id" {
  description = "Google Cloud project id to deploy into."
  type        = string
}

variable "region" {
  description = "Region for every regional resource. Must offer Cloud Run NVIDIA L4 GPUs (e.g. us-central1, europe-west1, europe-west4, asia-southeast1)."
  type        = string
  default     = "us-central1"
}

variable "name_prefix" {
  description = "Prefix of every resource name; lets two deployments share a project."
  type        = string
  default     = "speech"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,14}$", var.name_prefix))
    error_message = "name_prefix must be 2-15 lowercase letters, digits or dashes, starting with a letter."
  }
}

variable "labels" {
  description = "Labels put on every resource that takes labels."
  type        = map(string)
  default     = {}
}

# --- images --------------------------------------------------------------------------------
variable "image_tag" {
  description = "Tag of the worker images in the Artifact Registry repository (cloudbuild.yaml pushes worker-gpu:TAG and worker-cpu:TAG): the git commit. A moved tag such as latest changes no service's configuration, so no new revision would roll out."
  type        = string

  validation {
    condition     = var.image_tag != "latest" && length(var.image_tag) > 0
    error_message = "image_tag must name the build (the git commit, e.g. $(git rev-parse --short HEAD)), not latest: a moved tag rolls out no new revision."
  }
}

variable "gpu_image" {
  description = "Full GPU worker image reference; null uses <repository>/worker-gpu:<image_tag>."
  type        = string
  default     = null
}

variable "cpu_image" {
  description = "Full CPU worker image reference; null uses <repository>/worker-cpu:<image_tag>."
  type        = string
  default     = null
}

variable "immutable_image_tags" {
  description = "Refuse to move an existing tag in the Artifact Registry repository (then tag images with the commit, not latest)."
  type        = bool
  default     = false
}

# --- GPU services --------------------------------------------------------------------------
variable "stt_max_instances" {
  description = "Most STT (L4) instances at once. Needs as much Cloud Run L4 quota in the region; each instance takes one job at a time."
  type        = number
  default     = 2
}

variable "ser_max_instances" {
  description = "Most SER (L4) instances at once. SER is faster than STT, so it needs fewer."
  type        = number
  default     = 1
}

variable "gpu_zonal_redundancy_disabled" {
  description = "Run GPU services without zonal redundancy: cheaper GPU seconds and the quota most projects get; best-effort failover. Pub/Sub retries cover a lost instance."
  type        = bool
  default     = true
}

variable "stt_engine" {
  description = "STT_ENGINE of the STT service. The GPU image bakes a CTranslate2 model, which only faster-whisper loads; openai-whisper needs an image with a .pt checkpoint as STT_MODEL."
  type        = string
  default     = "faster-whisper"

  validation {
    condition     = var.stt_engine == "faster-whisper"
    error_message = "The GPU image carries a CTranslate2 Whisper model (faster-whisper). For openai-whisper, build an image whose STT_MODEL is a .pt checkpoint and change this validation with it."
  }
}

variable "ser_engine" {
  description = "SER_ENGINE of the SER service: whisper-head (the project's emotion head on Whisper base's encoder, in every image) or transformers (the checkpoint an image was built with via SER_MODEL_REPO, in /models/ser)."
  type        = string
  default     = "whisper-head"

  validation {
    condition     = contains(["whisper-head", "transformers"], var.ser_engine)
    error_message = "ser_engine must be whisper-head or transformers."
  }
}

variable "stt_block_seconds" {
  description = "STT_BLOCK_SECONDS for the GPU STT service: voice activity detection runs over long audio in blocks of about this many seconds, so its memory does not grow with the file."
  type        = number
  default     = 480
}

variable "stt_repair_passes" {
  description = "STT_REPAIR_PASSES for the STT service: decoder passes per 30 s window of a file (pooled over the file) that the repair of lost or looping speech may spend; past it a result says repair_budget_spent. Bounds the GPU time one hostile file costs."
  type        = number
  default     = 2

  validation {
    condition     = var.stt_repair_passes >= 0 && floor(var.stt_repair_passes) == var.stt_repair_passes
    error_message = "stt_repair_passes must be a whole number, 0 or more."
  }
}

variable "gpu_worker_concurrency" {
  description = "WORKER_CONCURRENCY of the STT and SER services: jobs one GPU instance runs at once, each on an engine worker of its own. Short files leave a GPU mostly idle one at a time (a 3 s clip is one window of a batch of 8); long files fill its batches alone (see docs/deploy.md)."
  type        = number
  default     = 4

  validation {
    condition     = var.gpu_worker_concurrency >= 1 && floor(var.gpu_worker_concurrency) == var.gpu_worker_concurrency
    error_message = "gpu_worker_concurrency must be a whole number, 1 or more."
  }
}

variable "gpu_worker_queue" {
  description = "WORKER_QUEUE of the STT and SER services: jobs one instance holds waiting for a free slot. Cloud Run sends an instance gpu_worker_concurrency + gpu_worker_queue requests at once; a push past them is answered 429 and delivered again later."
  type        = number
  default     = 2

  validation {
    condition     = var.gpu_worker_queue >= 0 && floor(var.gpu_worker_queue) == var.gpu_worker_queue
    error_message = "gpu_worker_queue must be a whole number, 0 or more."
  }
}

variable "max_audio_seconds" {
  description = "MAX_AUDIO_SECONDS: longer audio gets a failed result. Sized so STT on one L4 finishes well inside ack_deadline_seconds (see docs/deploy.md)."
  type        = number
  default     = 3600
}

# --- Pub/Sub delivery ----------------------------------------------------------------------
variable "ack_deadline_seconds" {
  description = "Ack deadline of the push subscriptions, which is also Pub/Sub's push request timeout. 600 is Pub/Sub's maximum."
  type        = number
  default     = 600

  validation {
    condition     = var.ack_deadline_seconds >= 10 && var.ack_deadline_seconds <= 600
    error_message = "ack_deadline_seconds must be between 10 and 600."
  }
}

variable "max_delivery_attempts" {
  description = "Deliveries before a message goes to its dead-letter topic. 429s from a saturated GPU service count as attempts: see the capacity arithmetic in docs/deploy.md."
  type        = number
  default     = 50

  validation {
    condition     = var.max_delivery_attempts >= 5 && var.max_delivery_attempts <= 100
    error_message = "Pub/Sub accepts max_delivery_attempts between 5 and 100."
  }
}

variable "retry_minimum_backoff_seconds" {
  description = "Shortest wait before Pub/Sub redelivers a message that was not acknowledged."
  type        = number
  default     = 10
}

variable "retry_maximum_backoff_seconds" {
  description = "Longest wait between redeliveries (Pub/Sub allows at most 600)."
  type        = number
  default     = 600

  validation {
    condition     = var.retry_maximum_backoff_seconds <= 600
    error_message = "Pub/Sub allows a maximum backoff of at most 600 seconds."
  }
}

variable "message_retention_seconds" {
  description = "How long undelivered messages (and dead letters) are kept: 7 days, the most a subscription allows."
  type        = number
  default     = 604800
}

# --- data protection -----------------------------------------------------------------------
variable "inbox_prefix" {
  description = "INBOX_PREFIX: only uploads under this prefix become jobs (empty: the whole inbox)."
  type        = string
  default     = ""
}

variable "inbox_retention_days" {
  description = "Delete uploaded audio this many days after upload (0 keeps it). Audio of people talking is personal data."
  type        = number
  default     = 30
}

variable "staging_retention_days" {
  description = "Delete STT/SER partials (and backfill ledger markers) this many days after they were written."
  type        = number
  default     = 7

  validation {
    condition     = var.staging_retention_days >= 1
    error_message = "staging_retention_days must be at least 1: the joiner needs both partials."
  }
}

variable "results_retention_days" {
  description = "Delete results (transcripts, personal data) this many days after they were written (0 keeps them)."
  type        = number
  default     = 365
}

variable "kms_key_name" {
  description = "Optional CMEK key (projects/P/locations/L/keyRings/R/cryptoKeys/K, same location as region) for buckets, topics, BigQuery and Artifact Registry; null uses Google-managed keys."
  type        = string
  default     = null
}

variable "force_destroy" {
  description = "Let `terraform destroy` delete buckets that still hold objects and the BigQuery dataset's tables. Keep false where data matters."
  type        = bool
  default     = false
}

variable "deletion_protection" {
  description = "Protect Cloud Run services, jobs and the BigQuery table against `terraform destroy` (set false, apply, then destroy to tear down)."
  type        = bool
  default     = true
}

# --- API, backfill, BigQuery ---------------------------------------------------------------
variable "api_invokers" {
  description = "IAM members allowed to call the one-file API (e.g. user:alice@example.com, group:team@example.com). Never allUsers."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for m in var.api_invokers : !contains(["allUsers", "allAuthenticatedUsers"], m)])
    error_message = "The API is not public: name users, groups or service accounts."
  }
}

variable "backfill_schedule" {
  description = "Cron schedule of the backfill (Cloud Scheduler syntax); null creates the job without a schedule."
  type        = string
  default     = "0 3 * * *"
}

variable "backfill_args" {
  description = "Extra arguments after `python -m workers backfill` (e.g. [\"--rate\", \"5\"])."
  type        = list(string)
  default     = []
}

variable "load_bigquery_schedule" {
  description = "Cron schedule of `python -m workers load-bigquery`; null creates the job without a schedule."
  type        = string
  default     = "30 * * * *"
}

variable "healer_schedule" {
  description = "Cron schedule of `python -m workers stuck --republish` (uploads with no result past stuck_after_minutes, whatever their partials, get their message again); null creates the job without a schedule."
  type        = string
  default     = "15 * * * *"
}

variable "stuck_after_minutes" {
  description = "A job with one partial and no result for this long is republished by the healer. Republishing one that Pub/Sub is still retrying only costs a duplicate run."
  type        = number
  default     = 120
}

variable "load_bigquery_window" {
  description = "How far back each scheduled load looks (`--updated-since`, e.g. 3h): longer than the schedule's interval so runs overlap and a failed one is caught up; null loads the whole results bucket every run."
  type        = string
  default     = "3h"

  validation {
    condition     = var.load_bigquery_window == null || can(regex("^[0-9]+[mhd]$", var.load_bigquery_window))
    error_message = "load_bigquery_window is a number of minutes, hours or days such as 90m, 3h or 2d, or null."
  }
}

variable "load_bigquery_args" {
  description = "Extra arguments after `python -m workers load-bigquery`."
  type        = list(string)
  default     = []
}

variable "schedule_time_zone" {
  description = "Time zone of the schedules."
  type        = string
  default     = "Etc/UTC"
}

variable "bigquery_location" {
  description = "BigQuery dataset location; null uses region."
  type        = string
  default     = null
}

variable "bigquery_dataset_id" {
  description = "BigQuery dataset id; null uses <name_prefix>_speech with dashes as underscores."
  type        = string
  default     = null
}
