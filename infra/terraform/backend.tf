# State in a GCS bucket, not on one machine: locked while an apply runs, versioned, shared by
# whoever deploys. The bucket is made once by hand (docs/deploy.md) and named at init:
#   terraform init -backend-config="bucket=MY_PROJECT-tfstate"
terraform {
  backend "gcs" {
    prefix = "speech-pipeline"
  }
}
