variable "bucket_name" {
  description = "Name of the S3 bucket Strata keeps records in (globally unique)."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", var.bucket_name))
    error_message = "S3 bucket names are 3-63 characters of lowercase letters, digits, dots and hyphens."
  }
}

variable "region" {
  description = "AWS region of the bucket; brokers get it as AWS_REGION."
  type        = string
  default     = "us-east-1"
}

variable "prefix" {
  description = "Key prefix the cluster writes under (s3://BUCKET/PREFIX), so several clusters can share the bucket. Empty for the bucket root."
  type        = string
  default     = "strata"

  validation {
    condition     = !startswith(var.prefix, "/") && !endswith(var.prefix, "/")
    error_message = "Give the prefix without leading or trailing slashes (e.g. \"prod/strata\")."
  }
}

variable "wal_expiry_days" {
  description = <<-EOT
    Days after which objects under PREFIX/wal/ expire. A safety net only: Strata deletes a
    WAL object itself once sealed segments cover it, normally within segment.ms (10
    minutes by default). It must stay well above any topic's segment.ms, or the lifecycle
    rule could delete WAL data that is not sealed yet.
  EOT
  type        = number
  default     = 7

  validation {
    condition     = var.wal_expiry_days >= 1 && floor(var.wal_expiry_days) == var.wal_expiry_days
    error_message = "wal_expiry_days must be a whole number of days, at least 1."
  }
}

variable "kms_key_arn" {
  description = "KMS key for SSE-KMS. Null keeps SSE-S3 (AES256), which costs nothing per request."
  type        = string
  default     = null
}

variable "force_destroy" {
  description = "Let `terraform destroy` delete a bucket that still holds objects. Off, since those objects are the cluster's data."
  type        = bool
  default     = false
}

variable "iam_name" {
  description = "Name of the IAM policy and of the role created for the brokers."
  type        = string
  default     = "strata-broker"
}

variable "create_role" {
  description = "Create an IAM role with the policy attached, for brokers that get credentials from an instance profile or EKS service account."
  type        = bool
  default     = true
}

variable "role_trusted_principals" {
  description = "AWS principal ARNs allowed to assume the role (e.g. a node instance role). With neither this nor eks_oidc_provider_arn, the account itself is trusted and its own IAM policies decide who may assume the role."
  type        = list(string)
  default     = []
}

variable "eks_oidc_provider_arn" {
  description = "ARN of an EKS cluster's IAM OIDC provider: when set, the role trusts the service account below (IAM Roles for Service Accounts)."
  type        = string
  default     = null
}

variable "eks_service_account" {
  description = "The brokers' Kubernetes service account as NAMESPACE:NAME (deploy/k8s creates strata:strata-broker)."
  type        = string
  default     = "strata:strata-broker"
}

variable "attach_to_user" {
  description = "Name of an existing IAM user to attach the policy to as well (for static keys). Terraform does not make the keys: they would sit in its state in plain text."
  type        = string
  default     = null
}

variable "tags" {
  description = "Tags for every resource made here."
  type        = map(string)
  default     = {}
}
