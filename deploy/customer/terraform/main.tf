# Wiv audit log delivery (docs/customer-guide.md steps 3.1 and 3.2): a private, versioned, encrypted S3 bucket
# and the IAM role Wiv assumes, with your External ID, to write audit logs into it (s3:PutObject and
# s3:PutObjectAcl only).

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}

locals {
  bucket_name = var.bucket_name != "" ? var.bucket_name : "wiv-audit-logs-${data.aws_caller_identity.current.account_id}"
  use_kms     = var.encryption == "SSE-KMS"
  retention   = var.expiration_days > 0 || var.noncurrent_version_expiration_days > 0
}

# Step 3.1: the bucket.
resource "aws_s3_bucket" "audit_logs" {
  bucket = local.bucket_name
}

# You own every object; Wiv's uploads carry the bucket-owner-full-control ACL, which this setting accepts.
resource "aws_s3_bucket_ownership_controls" "audit_logs" {
  bucket = aws_s3_bucket.audit_logs.id
  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_public_access_block" "audit_logs" {
  bucket                  = aws_s3_bucket.audit_logs.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_versioning" "audit_logs" {
  bucket = aws_s3_bucket.audit_logs.id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "audit_logs" {
  bucket = aws_s3_bucket.audit_logs.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = local.use_kms ? "aws:kms" : "AES256"
      kms_master_key_id = local.use_kms ? aws_kms_key.audit_logs[0].arn : null
    }
    bucket_key_enabled = local.use_kms ? true : null
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "audit_logs" {
  count  = local.retention ? 1 : 0
  bucket = aws_s3_bucket.audit_logs.id
  # Noncurrent version expiration needs versioning in place first.
  depends_on = [aws_s3_bucket_versioning.audit_logs]

  rule {
    id     = "audit-logs-retention"
    status = "Enabled"
    filter {}

    dynamic "expiration" {
      for_each = var.expiration_days > 0 ? [var.expiration_days] : []
      content {
        days = expiration.value
      }
    }

    dynamic "noncurrent_version_expiration" {
      for_each = var.noncurrent_version_expiration_days > 0 ? [var.noncurrent_version_expiration_days] : []
      content {
        noncurrent_days = noncurrent_version_expiration.value
      }
    }
  }
}

resource "aws_s3_bucket_logging" "audit_logs" {
  count         = var.access_log_bucket != "" ? 1 : 0
  bucket        = aws_s3_bucket.audit_logs.id
  target_bucket = var.access_log_bucket
  target_prefix = "${local.bucket_name}/"
}

resource "aws_s3_bucket_policy" "audit_logs" {
  bucket = aws_s3_bucket.audit_logs.id
  # S3 refuses a bucket policy while the public access block is being written.
  depends_on = [aws_s3_bucket_public_access_block.audit_logs]
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Sid       = "DenyInsecureTransport"
      Effect    = "Deny"
      Principal = "*"
      Action    = "s3:*"
      Resource  = [aws_s3_bucket.audit_logs.arn, "${aws_s3_bucket.audit_logs.arn}/*"]
      Condition = { Bool = { "aws:SecureTransport" = "false" } }
    }]
  })
}

resource "aws_kms_key" "audit_logs" {
  count               = local.use_kms ? 1 : 0
  description         = "Encrypts the Wiv audit logs in ${local.bucket_name}"
  enable_key_rotation = true
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid       = "AccountAdministers"
        Effect    = "Allow"
        Principal = { AWS = "arn:${data.aws_partition.current.partition}:iam::${data.aws_caller_identity.current.account_id}:root" }
        Action    = "kms:*"
        Resource  = "*"
      },
      {
        Sid       = "WivRoleEncrypts"
        Effect    = "Allow"
        Principal = { AWS = aws_iam_role.wiv.arn }
        Action    = ["kms:GenerateDataKey", "kms:Encrypt"]
        Resource  = "*"
      },
    ]
  })
}

resource "aws_kms_alias" "audit_logs" {
  count         = local.use_kms ? 1 : 0
  name          = "alias/${local.bucket_name}"
  target_key_id = aws_kms_key.audit_logs[0].key_id
}

# Steps 3.2.2 and 3.2.3: the role, which only the trusted principal can assume, and only with the External ID.
resource "aws_iam_role" "wiv" {
  name        = var.role_name
  description = "Wiv writes audit logs into ${local.bucket_name} (docs/customer-guide.md step 3.2)"
  assume_role_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Principal = { AWS = var.trusted_principal }
      Action    = "sts:AssumeRole"
      Condition = { StringEquals = { "sts:ExternalId" = var.external_id } }
    }]
  })
}

# Step 3.2.4: write objects into the bucket, nothing else.
resource "aws_iam_role_policy" "audit_logs_write" {
  name = "audit-logs-write"
  role = aws_iam_role.wiv.id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect   = "Allow"
      Action   = ["s3:PutObject", "s3:PutObjectAcl"]
      Resource = "${aws_s3_bucket.audit_logs.arn}/*"
    }]
  })
}
