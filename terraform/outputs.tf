output "bucket_name" {
  value = aws_s3_bucket.strata.bucket
}

output "region" {
  description = "AWS_REGION for the brokers"
  value       = var.region
}

output "policy_arn" {
  value = aws_iam_policy.strata.arn
}

output "role_arn" {
  description = "For the eks.amazonaws.com/role-arn annotation on the strata-broker ServiceAccount (null when create_role is false)"
  value       = var.create_role ? aws_iam_role.strata[0].arn : null
}

output "object_store" {
  description = "Value of `strata serve --object-store` (STRATA_OBJECT_STORE)"
  value       = "s3://${aws_s3_bucket.strata.bucket}${var.prefix == "" ? "" : "/${var.prefix}"}"
}
