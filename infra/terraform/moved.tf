# Where the functions, their triggers and their async-invocation settings were before they shared
# one resource each (main.tf, smn.tf): `terraform plan` moves a deployment's state to the new
# addresses instead of destroying and recreating the functions. Remove these blocks only once
# every deployment has been applied with them.

moved {
  from = huaweicloud_fgs_function.detach
  to   = huaweicloud_fgs_function.functions["detach"]
}

moved {
  from = huaweicloud_fgs_function.poll
  to   = huaweicloud_fgs_function.functions["poll"]
}

moved {
  from = huaweicloud_fgs_function.flush
  to   = huaweicloud_fgs_function.functions["flush"]
}

moved {
  from = huaweicloud_fgs_function.relay
  to   = huaweicloud_fgs_function.functions["relay"]
}

moved {
  from = huaweicloud_fgs_function.notify[0]
  to   = huaweicloud_fgs_function.functions["notify"]
}

moved {
  from = huaweicloud_fgs_function.history[0]
  to   = huaweicloud_fgs_function.functions["history"]
}

moved {
  from = huaweicloud_fgs_function_trigger.poll_jobs
  to   = huaweicloud_fgs_function_trigger.smn["poll"]
}

moved {
  from = huaweicloud_fgs_function_trigger.notify_results[0]
  to   = huaweicloud_fgs_function_trigger.smn["notify"]
}

moved {
  from = huaweicloud_fgs_function_trigger.history_results[0]
  to   = huaweicloud_fgs_function_trigger.smn["history"]
}

moved {
  from = huaweicloud_fgs_function_trigger.flush_timer
  to   = huaweicloud_fgs_function_trigger.timer["flush"]
}

moved {
  from = huaweicloud_fgs_function_trigger.relay_timer
  to   = huaweicloud_fgs_function_trigger.timer["relay"]
}

moved {
  from = huaweicloud_fgs_async_invoke_configuration.detach
  to   = huaweicloud_fgs_async_invoke_configuration.functions["detach"]
}

moved {
  from = huaweicloud_fgs_async_invoke_configuration.poll
  to   = huaweicloud_fgs_async_invoke_configuration.functions["poll"]
}

moved {
  from = huaweicloud_fgs_async_invoke_configuration.notify[0]
  to   = huaweicloud_fgs_async_invoke_configuration.functions["notify"]
}

moved {
  from = huaweicloud_fgs_async_invoke_configuration.history[0]
  to   = huaweicloud_fgs_async_invoke_configuration.functions["history"]
}
