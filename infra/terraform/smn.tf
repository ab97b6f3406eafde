# The jobs and results topics, the poll function subscribed to the jobs topic, and the
# dead-letter topic of asynchronous invocations.

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

resource "huaweicloud_fgs_function_trigger" "poll_jobs" {
  function_urn = huaweicloud_fgs_function.poll.urn
  type         = "SMN"
  event_data = jsonencode({
    topic_urn = huaweicloud_smn_topic.jobs.topic_urn
  })
}

resource "huaweicloud_smn_subscription" "results" {
  count = length(var.results_https_endpoints)

  topic_urn = huaweicloud_smn_topic.results.topic_urn
  protocol  = "https"
  endpoint  = var.results_https_endpoints[count.index]
  remark    = "next workflow step"
}

resource "huaweicloud_fgs_async_invoke_configuration" "poll" {
  function_urn                   = huaweicloud_fgs_function.poll.urn
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
      condition     = var.async_event_max_age_s >= var.job_timeout_s + var.max_poll_delay_s
      error_message = "async_event_max_age_s must outlast a job: at least job_timeout_s + max_poll_delay_s."
    }
  }
}

resource "huaweicloud_fgs_async_invoke_configuration" "detach" {
  function_urn                   = huaweicloud_fgs_function.detach.urn
  max_async_event_age_in_seconds = var.async_event_max_age_s
  max_async_retry_attempts       = var.async_retry_attempts

  on_failure {
    destination = "SMN"
    param = jsonencode({
      topic_urn = huaweicloud_smn_topic.dead_letter.topic_urn
    })
  }
}
