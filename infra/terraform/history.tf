# The history recorder (docs/history.md, "Two ways to feed it on FunctionGraph"): with
# history_writer = "recorder", the detach and poll functions keep no history (ECS_DETACH_HISTORY
# is off for them) and this function, subscribed to the results topic like the notify function,
# records each result event in the PostgreSQL history_url. It alone needs to reach the database:
# it joins history_vpc_id (else the functions' VPC). A write that fails raises, so FunctionGraph
# retries the event (an event recorded once is not recorded again) and then sends it to the
# dead-letter topic. It builds no runtime: no initializer, no cloud calls.

locals {
  use_history_recorder = var.history_writer == "recorder"
  history_vpc_id       = var.history_vpc_id != "" ? var.history_vpc_id : var.vpc_id
  history_network_id   = var.history_vpc_id != "" ? var.history_network_id : var.network_id

  history_secret_environment = merge(local.secret_environment, {
    ECS_DETACH_HISTORY = var.history_url
  })
}

resource "huaweicloud_fgs_function" "history" {
  count = local.use_history_recorder ? 1 : 0

  name                  = "${var.name_prefix}-history"
  app                   = "default"
  description           = "ecs-detach: record each result event of the results topic in the audit history"
  functiongraph_version = "v2"
  runtime               = local.runtime
  handler               = local.handlers.history
  memory_size           = 128
  timeout               = 30
  max_instance_num      = tostring(var.max_instances)

  code_type     = "zip"
  code_filename = basename(var.package_path)
  func_code     = filebase64(var.package_path)

  agency     = huaweicloud_identity_agency.vpc_access[0].name
  app_agency = huaweicloud_identity_agency.functions.name
  vpc_id     = local.history_vpc_id
  network_id = local.history_network_id

  user_data           = jsonencode(local.environment)
  encrypted_user_data = jsonencode(local.history_secret_environment)
  tags                = var.tags

  lifecycle {
    precondition {
      condition     = nonsensitive(startswith(var.history_url, "postgresql://") || startswith(var.history_url, "postgres://"))
      error_message = "history_writer = \"recorder\" records into a postgresql:// history_url: set one."
    }
    precondition {
      condition     = local.history_vpc_id != "" && local.history_network_id != ""
      error_message = "The history recorder reaches the database through a VPC: set vpc_id and network_id, or history_vpc_id and history_network_id."
    }
  }
}

resource "huaweicloud_fgs_function_trigger" "history_results" {
  count = local.use_history_recorder ? 1 : 0

  function_urn = huaweicloud_fgs_function.history[0].urn
  type         = "SMN"
  event_data = jsonencode({
    topic_urn = huaweicloud_smn_topic.results.topic_urn
  })
}

resource "huaweicloud_fgs_async_invoke_configuration" "history" {
  count = local.use_history_recorder ? 1 : 0

  function_urn                   = huaweicloud_fgs_function.history[0].urn
  max_async_event_age_in_seconds = var.async_event_max_age_s
  max_async_retry_attempts       = var.async_retry_attempts

  on_failure {
    destination = "SMN"
    param = jsonencode({
      topic_urn = huaweicloud_smn_topic.dead_letter.topic_urn
    })
  }
}
