variable "external_id" {
  description = "The External ID you generated in step 3.2.1 (uuidgen). Wiv must send it to assume the role."
  type        = string
  sensitive   = true

  validation {
    condition     = length(var.external_id) >= 2 && length(var.external_id) <= 1224 && can(regex("^[\\w+=,.@:/-]+$", var.external_id))
    error_message = "external_id must be 2 to 1224 characters of letters, digits and +=,.@:/- (a UUID from uuidgen fits)."
  }
}

variable "bucket_name" {
  description = "Name of the audit logs bucket. Empty (default): wiv-audit-logs-<account id>."
  type        = string
  default     = ""

  validation {
    condition     = var.bucket_name == "" || can(regex("^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", var.bucket_name))
    error_message = "bucket_name must be 3 to 63 lowercase letters, digits, dots or hyphens, starting and ending with a letter or digit."
  }
}

variable "trusted_principal" {
  description = "The Wiv identity allowed to assume the role (step 3.2.2). Keep the default, Wiv's production principal: the variable exists only so that tests and staging environments can point it elsewhere."
  type        = string
  default     = "arn:aws:iam::613007325984:role/prod-aws-cdk-api-wf-opera-CustomerBucketSyncRole8E8-mUiiPZfuNHcc"
}

variable "role_name" {
  description = "Name of the IAM role Wiv assumes (step 3.2.3)."
  type        = string
  default     = "wiv-audit-logs-sync"
}

variable "encryption" {
  description = "Default encryption of the bucket: SSE-S3 (AES256, no cost), or SSE-KMS (a customer managed key, rotation on, whose key policy lets the role encrypt; used with an S3 Bucket Key)."
  type        = string
  default     = "SSE-S3"

  validation {
    condition     = contains(["SSE-S3", "SSE-KMS"], var.encryption)
    error_message = "encryption must be SSE-S3 or SSE-KMS."
  }
}

variable "noncurrent_version_expiration_days" {
  description = "Days a version stays after it was overwritten or deleted (Wiv never overwrites: this protects you from an accidental delete). 0 keeps such versions forever."
  type        = number
  default     = 90

  validation {
    condition     = var.noncurrent_version_expiration_days >= 0 && floor(var.noncurrent_version_expiration_days) == var.noncurrent_version_expiration_days
    error_message = "noncurrent_version_expiration_days must be a whole number of days, 0 or more."
  }
}

variable "expiration_days" {
  description = "Days after which audit log objects expire (become noncurrent, then follow noncurrent_version_expiration_days). 0 (default) keeps them forever; set it to your retention period, e.g. 400."
  type        = number
  default     = 0

  validation {
    condition     = var.expiration_days >= 0 && floor(var.expiration_days) == var.expiration_days
    error_message = "expiration_days must be a whole number of days, 0 or more."
  }
}

variable "access_log_bucket" {
  description = "An existing bucket that receives S3 server access logs of the audit logs bucket (under <audit logs bucket>/). Empty (default) turns access logging off. That bucket must allow logging.s3.amazonaws.com to write."
  type        = string
  default     = ""
}
