terraform {
  # startswith()/endswith() in variables.tf's validations
  required_version = ">= 1.3.0"

  required_providers {
    aws = {
      source = "hashicorp/aws"
      # v5 split bucket settings into their own resources (used here); a major
      # version may change them again, so upgrades are a deliberate edit.
      version = "~> 5.0"
    }
  }
}
