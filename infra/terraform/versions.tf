terraform {
  # optional() object attributes need 1.3; preconditions need 1.2.
  required_version = ">= 1.3"

  required_providers {
    huaweicloud = {
      source  = "huaweicloud/huaweicloud"
      version = "= 1.97.1"
    }
  }
}

provider "huaweicloud" {
  region = var.region
}
