output "bucket_name" {
  description = "bucket_name to submit to Wiv (step 3.3)"
  value       = aws_s3_bucket.audit_logs.id
}

output "role_arn" {
  description = "role_arn to submit to Wiv (step 3.3)"
  value       = aws_iam_role.wiv.arn
}

output "region" {
  description = "region to submit to Wiv (step 3.3)"
  value       = aws_s3_bucket.audit_logs.region
}

output "kms_key_arn" {
  description = "The KMS key that encrypts the audit logs (SSE-KMS only)"
  value       = local.use_kms ? aws_kms_key.audit_logs[0].arn : null
}
