# The notify function (docs/notifications.md): subscribed to the results topic, it sends a
# message for each outcome a deployment chooses to the channels of notify_channels (Slack,
# Teams, Feishu/Lark, DingTalk, WeCom, SMN). Created only when channels are given; the package
# then needs the notify extra (jinja2): ecs-detach package --extra notify. A delivery that fails
# raises, so FunctionGraph retries the event (channels that took it are not sent it again) and
# then sends it to the dead-letter topic. It never blocks or changes a detach.
# The function is local.function_settings.notify (main.tf); its trigger and dead letters, smn.tf.

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
