locals {
  debugging_domain = local.use_apig ? data.huaweicloud_apig_groups.webhooks[0].groups[0].sl_domain : null
  webhook_host     = local.use_domain ? var.webhook_domain : local.debugging_domain
}

output "webhook_url" {
  description = "The URL to give webhook senders (POST /, /alertmanager, /grafana, /smn, /tickets/{mapping}): the independent domain (webhook_domain), else the group's debugging domain (1,000 calls a day, trials only); null without API Gateway."
  value       = local.use_apig ? "https://${local.webhook_host}/" : null
}

output "alertmanager_url" {
  description = "The url of Alertmanager's webhook_configs (with the bearer token in http_config.authorization, and X-Apig-AppCode with APP authentication)."
  value       = local.use_apig ? "https://${local.webhook_host}/alertmanager" : null
}

output "webhook_url_kind" {
  description = "Which domain webhook_url uses: independent (production) or debugging (1,000 calls a day)."
  value       = local.use_apig ? (local.use_domain ? "independent domain ${var.webhook_domain}" : "debugging domain: limited to 1,000 calls a day; set webhook_domain for production") : null
}

output "webhook_dns_record" {
  description = "The DNS record webhook_domain needs: a CNAME to the group's debugging domain."
  value       = local.use_domain ? "${var.webhook_domain}. CNAME ${local.debugging_domain}." : null
}

output "jobs_topic_urn" {
  description = "URN of the jobs topic (ecs-detach.accepted events; the poll function is subscribed)."
  value       = huaweicloud_smn_topic.jobs.topic_urn
}

output "results_topic_urn" {
  description = "URN of the results topic: subscribe the next step of your workflow here."
  value       = huaweicloud_smn_topic.results.topic_urn
}

output "dead_letter_topic_urn" {
  description = "URN of the dead-letter topic of failed asynchronous invocations."
  value       = huaweicloud_smn_topic.dead_letter.topic_urn
}

output "detach_function_urn" {
  description = "URN of the detach function (invoke it directly with a detach request to test)."
  value       = huaweicloud_fgs_function.functions["detach"].urn
}

output "poll_function_urn" {
  description = "URN of the poll function."
  value       = huaweicloud_fgs_function.functions["poll"].urn
}

output "notify_function_urn" {
  description = "URN of the notify function; null without notify_channels."
  value       = local.use_notify ? huaweicloud_fgs_function.functions["notify"].urn : null
}

output "history_function_urn" {
  description = "URN of the history-recorder function; null unless history_writer is recorder."
  value       = local.use_history_recorder ? huaweicloud_fgs_function.functions["history"].urn : null
}

output "agency_name" {
  description = "The execution agency whose temporary credentials the functions sign with."
  value       = huaweicloud_identity_agency.functions.name
}
