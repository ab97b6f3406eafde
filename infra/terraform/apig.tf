# The webhook routes (/, /alertmanager, /grafana, /smn, /tickets/…, /healthz) on a dedicated
# API Gateway, forwarded to the detach function. Created only with apig_instance_id.

locals {
  use_apig     = var.apig_instance_id != ""
  use_app_auth = local.use_apig && var.apig_authentication == "APP"
  release_env  = "DEFAULT_ENVIRONMENT_RELEASE_ID" # the built-in RELEASE environment
}

resource "huaweicloud_apig_group" "webhooks" {
  count = local.use_apig ? 1 : 0

  instance_id = var.apig_instance_id
  name        = "${var.name_prefix}-webhooks"
  description = "ecs-detach webhook routes"
}

resource "huaweicloud_apig_api" "webhooks" {
  count = local.use_apig ? 1 : 0

  instance_id             = var.apig_instance_id
  group_id                = huaweicloud_apig_group.webhooks[0].id
  type                    = "Public"
  name                    = "${var.name_prefix}-webhooks"
  description             = "Every webhook route of ecs-detach; the function authenticates each request again"
  request_protocol        = "HTTPS"
  request_method          = "ANY"
  request_path            = "/"
  matching                = "Prefix"
  security_authentication = var.apig_authentication
  simple_authentication   = var.apig_authentication == "APP"

  func_graph {
    function_urn    = huaweicloud_fgs_function.detach.urn
    version         = "latest"
    invocation_type = "sync"
    timeout         = var.detach_timeout_s * 1000
  }

  lifecycle {
    precondition {
      condition     = var.apig_authentication != "APP" || var.apig_app_code != ""
      error_message = "APP authentication needs apig_app_code (64 to 180 characters)."
    }
    precondition {
      condition     = length(var.webhook_bearer_tokens) + length(var.webhook_hmac_secrets) > 0 || contains(keys(var.extra_environment), "ECS_DETACH_WEBHOOK_STANDARD_SECRETS")
      error_message = "Give the function its own webhook credentials (webhook_bearer_tokens, webhook_hmac_secrets): it refuses every request without them."
    }
  }
}

resource "huaweicloud_apig_api_publishment" "webhooks" {
  count = local.use_apig ? 1 : 0

  instance_id = var.apig_instance_id
  env_id      = local.release_env
  api_id      = huaweicloud_apig_api.webhooks[0].id
}

resource "huaweicloud_apig_application" "senders" {
  count = local.use_app_auth ? 1 : 0

  instance_id = var.apig_instance_id
  name        = "${replace(var.name_prefix, "-", "_")}_senders"
  description = "Webhook senders of ecs-detach (AppCode in X-Apig-AppCode)"
  app_codes   = [var.apig_app_code]
}

resource "huaweicloud_apig_application_authorization" "senders" {
  count      = local.use_app_auth ? 1 : 0
  depends_on = [huaweicloud_apig_api_publishment.webhooks]

  instance_id    = var.apig_instance_id
  application_id = huaweicloud_apig_application.senders[0].id
  env_id         = local.release_env
  api_ids        = [huaweicloud_apig_api.webhooks[0].id]
}

data "huaweicloud_apig_groups" "webhooks" {
  count = local.use_apig ? 1 : 0

  instance_id = var.apig_instance_id
  group_id    = huaweicloud_apig_group.webhooks[0].id
}
