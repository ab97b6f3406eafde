# The webhook routes (/, /alertmanager, /grafana, /smn, /tickets/…, /healthz) on a dedicated
# API Gateway, forwarded to the detach function. Created only with apig_instance_id.
#
# Senders reach the group through an independent domain (webhook_domain, with an SSL
# certificate): the group's debugging domain is limited to 1,000 calls a day and meant for
# trials, so it is switched on only when no independent domain is given.

locals {
  use_apig     = var.apig_instance_id != ""
  use_app_auth = local.use_apig && var.apig_authentication == "APP"
  use_domain   = local.use_apig && var.webhook_domain != ""
  release_env  = "DEFAULT_ENVIRONMENT_RELEASE_ID" # the built-in RELEASE environment
}

resource "huaweicloud_apig_group" "webhooks" {
  count = local.use_apig ? 1 : 0

  instance_id = var.apig_instance_id
  name        = "${var.name_prefix}-webhooks"
  description = "ecs-detach webhook routes"
  # The provider creates the group with its debugging domain off unless this is true.
  domain_access_enabled = var.webhook_domain == ""
}

# The production entry: an independent domain (a CNAME to the group's debugging domain, see
# the webhook_dns_record output) with its SSL certificate, since the API is HTTPS only.
resource "huaweicloud_apig_group_domain_associate" "webhooks" {
  count = local.use_domain ? 1 : 0

  instance_id     = var.apig_instance_id
  group_id        = huaweicloud_apig_group.webhooks[0].id
  url_domain      = var.webhook_domain
  min_ssl_version = "TLSv1.2"
}

resource "huaweicloud_apig_domain_certificate_associate" "webhooks" {
  count = local.use_domain ? 1 : 0

  instance_id    = var.apig_instance_id
  group_id       = huaweicloud_apig_group.webhooks[0].id
  domain_id      = huaweicloud_apig_group_domain_associate.webhooks[0].domain_id
  certificate_id = var.webhook_certificate_id

  lifecycle {
    precondition {
      condition     = var.webhook_certificate_id != ""
      error_message = "webhook_domain needs webhook_certificate_id: the webhook API is HTTPS only (an APIG SSL certificate for that domain, huaweicloud_apig_certificate)."
    }
  }
}

check "webhook_domain" {
  assert {
    condition     = !local.use_apig || var.webhook_domain != ""
    error_message = "The webhook answers on the API group's debugging domain, limited to 1,000 calls a day: for production set webhook_domain and webhook_certificate_id."
  }
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
    function_urn    = huaweicloud_fgs_function.functions["detach"].urn
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
