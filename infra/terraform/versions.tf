terraform {
  # check blocks need 1.5; optional() object attributes 1.3; preconditions 1.2.
  required_version = ">= 1.5"

  required_providers {
    huaweicloud = {
      source = "huaweicloud/huaweicloud"
      # Exact: the version tests/infra/schema/ holds the schema of (no lock file is committed,
      # as one cannot be made without the registry; `terraform init` writes it on first use).
      version = "= 1.97.1"
    }
  }
}

provider "huaweicloud" {
  region = var.region
  cloud  = var.cloud == "huaweicloud-eu" ? "myhuaweicloud.eu" : "myhuaweicloud.com"
}
