output "webhook_url" {
  description = "Base URL of the webhook routes (POST /, /alertmanager, /grafana, /smn, /tickets/{mapping}); null without API Gateway."
  value       = local.use_apig ? "https://${data.huaweicloud_apig_groups.webhooks[0].groups[0].sl_domain}/" : null
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
  value       = huaweicloud_fgs_function.detach.urn
}

output "poll_function_urn" {
  description = "URN of the poll function."
  value       = huaweicloud_fgs_function.poll.urn
}

output "agency_name" {
  description = "The execution agency whose temporary credentials the functions sign with."
  value       = huaweicloud_identity_agency.functions.name
}
