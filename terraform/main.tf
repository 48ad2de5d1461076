# The bucket a Strata cluster keeps its records in. See deploy/README.md for how the
# outputs reach the brokers.

provider "aws" {
  region = var.region

  default_tags {
    tags = merge({ "app.kubernetes.io/part-of" = "strata" }, var.tags)
  }
}

locals {
  # "" or "PREFIX/": every key Strata writes starts with this
  key_prefix = var.prefix == "" ? "" : "${var.prefix}/"
}

resource "aws_s3_bucket" "strata" {
  bucket        = var.bucket_name
  force_destroy = var.force_destroy
}

# Off: Strata deletes WAL objects once sealed and segments past retention, and never
# reads an old version. With versioning on, every deleted object would stay (and be
# billed) as a noncurrent version.
resource "aws_s3_bucket_versioning" "strata" {
  bucket = aws_s3_bucket.strata.id

  versioning_configuration {
    status = "Disabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "strata" {
  bucket = aws_s3_bucket.strata.id

  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = var.kms_key_arn == null ? "AES256" : "aws:kms"
      kms_master_key_id = var.kms_key_arn
    }
    # Brokers PUT a WAL object every few milliseconds; a bucket key turns the per-object
    # KMS calls of SSE-KMS into occasional ones. (No effect with AES256.)
    bucket_key_enabled = var.kms_key_arn != null
  }
}

resource "aws_s3_bucket_public_access_block" "strata" {
  bucket = aws_s3_bucket.strata.id

  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

# No ACLs at all: access is decided by IAM alone, and objects written by any principal
# belong to the bucket owner.
resource "aws_s3_bucket_ownership_controls" "strata" {
  bucket = aws_s3_bucket.strata.id

  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

# Refuse plain-HTTP access even to principals the IAM policy allows.
data "aws_iam_policy_document" "bucket" {
  statement {
    sid     = "DenyInsecureTransport"
    effect  = "Deny"
    actions = ["s3:*"]
    resources = [
      aws_s3_bucket.strata.arn,
      "${aws_s3_bucket.strata.arn}/*",
    ]

    principals {
      type        = "*"
      identifiers = ["*"]
    }

    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_s3_bucket_policy" "strata" {
  bucket = aws_s3_bucket.strata.id
  policy = data.aws_iam_policy_document.bucket.json

  # S3 rejects a bucket policy while the public access block is still being applied
  depends_on = [aws_s3_bucket_public_access_block.strata]
}

resource "aws_s3_bucket_lifecycle_configuration" "strata" {
  bucket = aws_s3_bucket.strata.id

  # Parts of an upload whose broker died mid-way (sealed segments go up as multipart
  # uploads) are invisible but billed until aborted. A day is far longer than any upload.
  rule {
    id     = "abort-incomplete-multipart-uploads"
    status = "Enabled"

    filter {}

    abort_incomplete_multipart_upload {
      days_after_initiation = 1
    }
  }

  # Safety net for WAL objects Strata failed to delete (e.g. a broker killed between
  # sealing and cleanup). Sealed segments under topics/ get no rule on purpose: Strata's
  # own retention (retention.ms / retention.bytes) deletes them and updates the
  # manifests, and an expiry here would leave manifests pointing at missing objects.
  rule {
    id     = "expire-stray-wal-objects"
    status = "Enabled"

    filter {
      prefix = "${local.key_prefix}wal/"
    }

    expiration {
      days = var.wal_expiry_days
    }
  }

  # the lifecycle API rejects rules on a bucket whose versioning state is still changing
  depends_on = [aws_s3_bucket_versioning.strata]
}
