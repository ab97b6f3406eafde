# The notify function (docs/notifications.md): subscribed to the results topic, it sends a
# message for each outcome a deployment chooses to the channels of notify_channels (Slack,
# Teams, Feishu/Lark, DingTalk, WeCom, SMN). Created only when channels are given; the package
# then needs the notify extra (jinja2): ecs-detach package --extra notify. A delivery that fails
# raises, so FunctionGraph retries the event (channels that took it are not sent it again) and
# then sends it to the dead-letter topic. It never blocks or changes a detach.

locals {
  use_notify = nonsensitive(length(var.notify_channels) > 0)

  notify_environment = merge(local.environment, {
    ECS_DETACH_NOTIFY_OUTCOMES = jsonencode(var.notify_outcomes)
  })
  # The channels' webhook URLs and signing secrets are secrets: encrypted function data.
  notify_secret_environment = merge(local.secret_environment, {
    ECS_DETACH_NOTIFY_CHANNELS = jsonencode(var.notify_channels)
  })
}

resource "huaweicloud_fgs_function" "notify" {
  count = local.use_notify ? 1 : 0

  name                  = "${var.name_prefix}-notify"
  app                   = "default"
  description           = "ecs-detach: send a message for each result and approval request to the chat and SMN channels"
  functiongraph_version = "v2"
  runtime               = local.runtime
  handler               = local.handlers.notify
  initializer_handler   = local.handlers.init
  initializer_timeout   = 30
  memory_size           = var.notify_memory_mb
  timeout               = var.notify_timeout_s
  max_instance_num      = tostring(var.max_instances)

  code_type     = "zip"
  code_filename = basename(var.package_path)
  func_code     = filebase64(var.package_path)

  agency     = local.config_agency
  app_agency = huaweicloud_identity_agency.functions.name
  vpc_id     = local.use_vpc ? var.vpc_id : null
  network_id = local.use_vpc ? var.network_id : null

  user_data           = jsonencode(local.notify_environment)
  encrypted_user_data = jsonencode(local.notify_secret_environment)
  tags                = var.tags
}

resource "huaweicloud_fgs_function_trigger" "notify_results" {
  count = local.use_notify ? 1 : 0

  function_urn = huaweicloud_fgs_function.notify[0].urn
  type         = "SMN"
  event_data = jsonencode({
    topic_urn = huaweicloud_smn_topic.results.topic_urn
  })
}

resource "huaweicloud_fgs_async_invoke_configuration" "notify" {
  count = local.use_notify ? 1 : 0

  function_urn                   = huaweicloud_fgs_function.notify[0].urn
  max_async_event_age_in_seconds = var.async_event_max_age_s
  max_async_retry_attempts       = var.async_retry_attempts

  on_failure {
    destination = "SMN"
    param = jsonencode({
      topic_urn = huaweicloud_smn_topic.dead_letter.topic_urn
    })
  }
}
