# The history recorder (docs/history.md, "Two ways to feed it on FunctionGraph"): with
# history_writer = "recorder", the detach and poll functions keep no history (ECS_DETACH_HISTORY
# is off for them) and this function, subscribed to the results topic like the notify function,
# records each result event in the PostgreSQL history_url. It alone needs to reach the database:
# it joins history_vpc_id (else the functions' VPC). A write that fails raises, so FunctionGraph
# retries the event (an event recorded once is not recorded again) and then sends it to the
# dead-letter topic. It builds no runtime: no initializer, no cloud calls.
# The function is local.function_settings.history (main.tf); its trigger and dead letters, smn.tf.

locals {
  use_history_recorder = var.history_writer == "recorder"
  history_vpc_id       = var.history_vpc_id != "" ? var.history_vpc_id : var.vpc_id
  history_network_id   = var.history_vpc_id != "" ? var.history_network_id : var.network_id

  history_secret_environment = merge(local.secret_environment, {
    ECS_DETACH_HISTORY = var.history_url
  })
}
