# What a broker may do: list, read, write and delete objects under the prefix, and clean
# up its own multipart uploads. (s3:PutObject also covers creating, uploading parts of and
# completing a multipart upload.) No bucket-level settings, no other bucket.

data "aws_caller_identity" "current" {}

locals {
  objects_arn = "${aws_s3_bucket.strata.arn}/${local.key_prefix}*"
  # oidc.eks.REGION.amazonaws.com/id/ID, the prefix of the token's claim keys
  oidc_issuer = var.eks_oidc_provider_arn == null ? null : element(split("oidc-provider/", var.eks_oidc_provider_arn), 1)
  sa_parts    = split(":", var.eks_service_account)
  trust_account = length(var.role_trusted_principals) == 0 && var.eks_oidc_provider_arn == null
}

data "aws_iam_policy_document" "strata" {
  statement {
    sid       = "ListPrefix"
    actions   = ["s3:ListBucket"]
    resources = [aws_s3_bucket.strata.arn]

    # Listing is limited to the prefix too, so a shared bucket's other tenants stay
    # invisible. (No condition when the cluster owns the whole bucket.)
    dynamic "condition" {
      for_each = local.key_prefix == "" ? [] : [local.key_prefix]
      content {
        test     = "StringLike"
        variable = "s3:prefix"
        values   = ["${condition.value}*"]
      }
    }
  }

  statement {
    sid = "ReadWriteObjects"
    actions = [
      "s3:GetObject",
      "s3:PutObject",
      "s3:DeleteObject",
      "s3:AbortMultipartUpload",
      "s3:ListMultipartUploadParts",
    ]
    resources = [local.objects_arn]
  }

  dynamic "statement" {
    for_each = var.kms_key_arn == null ? [] : [var.kms_key_arn]
    content {
      sid = "UseBucketKey"
      # GenerateDataKey to write (and for multipart parts), Decrypt to read
      actions   = ["kms:GenerateDataKey", "kms:Decrypt"]
      resources = [statement.value]
    }
  }
}

resource "aws_iam_policy" "strata" {
  name        = var.iam_name
  description = "Strata brokers: objects under s3://${var.bucket_name}/${local.key_prefix}"
  policy      = data.aws_iam_policy_document.strata.json
}

data "aws_iam_policy_document" "assume" {
  dynamic "statement" {
    for_each = length(var.role_trusted_principals) > 0 || local.trust_account ? [1] : []
    content {
      sid     = "TrustedPrincipals"
      actions = ["sts:AssumeRole"]
      principals {
        type = "AWS"
        identifiers = local.trust_account ? [
          "arn:aws:iam::${data.aws_caller_identity.current.account_id}:root"
        ] : var.role_trusted_principals
      }
    }
  }

  # IRSA: only the brokers' service account of that one EKS cluster, nothing else that
  # can get a token from the same OIDC provider.
  dynamic "statement" {
    for_each = var.eks_oidc_provider_arn == null ? [] : [var.eks_oidc_provider_arn]
    content {
      sid     = "EksServiceAccount"
      actions = ["sts:AssumeRoleWithWebIdentity"]
      principals {
        type        = "Federated"
        identifiers = [statement.value]
      }
      condition {
        test     = "StringEquals"
        variable = "${local.oidc_issuer}:sub"
        values   = ["system:serviceaccount:${local.sa_parts[0]}:${local.sa_parts[1]}"]
      }
      condition {
        test     = "StringEquals"
        variable = "${local.oidc_issuer}:aud"
        values   = ["sts.amazonaws.com"]
      }
    }
  }
}

resource "aws_iam_role" "strata" {
  count              = var.create_role ? 1 : 0
  name               = var.iam_name
  description        = "Assumed by Strata brokers to reach s3://${var.bucket_name}"
  assume_role_policy = data.aws_iam_policy_document.assume.json
}

resource "aws_iam_role_policy_attachment" "strata" {
  count      = var.create_role ? 1 : 0
  role       = aws_iam_role.strata[0].name
  policy_arn = aws_iam_policy.strata.arn
}

resource "aws_iam_user_policy_attachment" "strata" {
  count      = var.attach_to_user == null ? 0 : 1
  user       = var.attach_to_user
  policy_arn = aws_iam_policy.strata.arn
}
