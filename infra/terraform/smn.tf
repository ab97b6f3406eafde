# The jobs and results topics, the functions subscribed to them, and the dead-letter topic of
# asynchronous invocations.

locals {
  # The topics a function's smn_topic (main.tf, local.function_settings) names.
  topic_urns = {
    jobs    = huaweicloud_smn_topic.jobs.topic_urn
    results = huaweicloud_smn_topic.results.topic_urn
  }
}

resource "huaweicloud_smn_topic" "jobs" {
  name         = "${var.name_prefix}-jobs"
  display_name = "ecs-detach accepted jobs"
  introduction = "ecs-detach.accepted CloudEvents; the poll function is subscribed"
  tags         = var.tags
}

resource "huaweicloud_smn_topic" "results" {
  name         = "${var.name_prefix}-results"
  display_name = "ecs-detach results"
  introduction = "ecs-detach.succeeded, .failed, .timed_out, .already_detached and .rejected CloudEvents"
  tags         = var.tags
}

resource "huaweicloud_smn_topic" "dead_letter" {
  name         = "${var.name_prefix}-dead-letter"
  display_name = "ecs-detach dead letters"
  introduction = "Asynchronous invocations of the ecs-detach functions that failed every retry"
  tags         = var.tags
}

# The poll function subscribed to the jobs topic; the notify and history functions, when they
# exist, to the results topic.
resource "huaweicloud_fgs_function_trigger" "smn" {
  for_each = { for name, function in local.functions : name => function.smn_topic if function.smn_topic != null }

  function_urn = huaweicloud_fgs_function.functions[each.key].urn
  type         = "SMN"
  event_data = jsonencode({
    topic_urn = local.topic_urns[each.value]
  })
}

resource "huaweicloud_smn_subscription" "results" {
  count = length(var.results_https_endpoints)

  topic_urn = huaweicloud_smn_topic.results.topic_urn
  protocol  = "https"
  endpoint  = var.results_https_endpoints[count.index]
  remark    = "next workflow step"
}

# An asynchronous invocation that fails every retry, or outlives async_event_max_age_s, goes
# to the dead-letter topic.
resource "huaweicloud_fgs_async_invoke_configuration" "functions" {
  for_each = toset([for name, function in local.functions : name if function.dead_letters])

  function_urn                   = huaweicloud_fgs_function.functions[each.key].urn
  max_async_event_age_in_seconds = var.async_event_max_age_s
  max_async_retry_attempts       = var.async_retry_attempts

  on_failure {
    destination = "SMN"
    param = jsonencode({
      topic_urn = huaweicloud_smn_topic.dead_letter.topic_urn
    })
  }

  lifecycle {
    precondition {
      condition     = each.key != "poll" || var.async_event_max_age_s >= var.job_timeout_s + var.max_poll_delay_s
      error_message = "async_event_max_age_s must outlast a job: at least job_timeout_s + max_poll_delay_s."
    }
  }
}
