terraform {
  required_version = ">= 1.5"

  required_providers {
    google = {
      source = "hashicorp/google"
      # 6.50 is the schema tests/infra checks names against; GPU zonal redundancy needs >= 6.35.
      version = ">= 6.35, < 7.0"
    }
    archive = {
      source  = "hashicorp/archive"
      version = "~> 2.4"
    }
  }
}

# Credentials come from Application Default Credentials (`gcloud auth application-default login`
# locally, Workload Identity Federation in CI): never from a key file.
provider "google" {
  project = var.project_id
  region  = var.region
}
