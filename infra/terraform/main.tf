# The functions (detach, poll, flush, relay; notify and history with the settings of notify.tf
# and history.tf), one resource over local.functions, and the agencies whose temporary
# credentials they sign with. moved.tf: their addresses before they shared one resource.

locals {
  runtime = "Python${var.python_version}"

  # index.py at the root of the package re-exports handler/entry/functiongraph.py
  handlers = {
    detach  = "index.handler"
    poll    = "index.poll_handler"
    flush   = "index.flush_handler"
    relay   = "index.relay_handler"
    notify  = "index.notify_handler"
    history = "index.history_handler"
    init    = "index.init"
  }

  # Exactly the calls the functions make (docs/security.md, handler/local/package.py IAM_ACTIONS).
  iam_actions = [
    "ecs:cloudServers:detachVolume",
    "ecs:cloudServers:get",
    "ecs:cloudServers:listServerBlockDevices",
    "evs:volumes:get",
  ]
  # The jobs, results and dead-letter topics are SMN topics.
  smn_actions = ["smn:topic:publish"]

  policy_document = {
    Version = "1.1"
    Statement = [
      { Effect = "Allow", Action = local.iam_actions },
      { Effect = "Allow", Action = local.smn_actions },
    ]
  }

  # Worst case of one cloud call: connect, then the request.
  call_budget_s = var.connect_timeout_s + var.http_timeout_s
  # Detach: server, block devices, EVS volume, the detach, the publish. Poll: job, block devices, publish.
  detach_calls = 5
  poll_calls   = 3

  use_vpc = var.vpc_id != ""

  # Settings both functions share; extra_environment cannot override them.
  managed_environment = {
    ECS_DETACH_REGION               = var.region
    ECS_DETACH_CLOUD                = var.cloud
    ECS_DETACH_JOBS_TOPIC           = "smn://${huaweicloud_smn_topic.jobs.topic_urn}"
    ECS_DETACH_RESULTS_TOPIC        = "smn://${huaweicloud_smn_topic.results.topic_urn}"
    ECS_DETACH_POLL_TIMEOUT_S       = tostring(var.job_timeout_s)
    ECS_DETACH_FIRST_POLL_S         = tostring(var.first_poll_s)
    ECS_DETACH_MAX_POLL_DELAY_S     = tostring(var.max_poll_delay_s)
    ECS_DETACH_HTTP_TIMEOUT_S       = tostring(var.http_timeout_s)
    ECS_DETACH_CONNECT_TIMEOUT_S    = tostring(var.connect_timeout_s)
    ECS_DETACH_INVOCATION_TIMEOUT_S = tostring(var.detach_timeout_s)
  }
  # A history step waits up to 1 s for its commit (docs/history.md): an instance may be frozen
  # as soon as it answers. extra_environment may change it.
  default_environment = { ECS_DETACH_HISTORY_WAIT_S = "1" }
  environment         = merge(local.default_environment, var.extra_environment, local.managed_environment)

  secret_environment = {
    ECS_DETACH_STORE                 = var.store_url
    ECS_DETACH_HISTORY               = var.history_writer == "recorder" ? "off" : var.history_url
    ECS_DETACH_DELAY_TOPIC           = var.delay_topic_url
    ECS_DETACH_WEBHOOK_BEARER_TOKENS = jsonencode(var.webhook_bearer_tokens)
    ECS_DETACH_WEBHOOK_HMAC_SECRETS  = jsonencode(var.webhook_hmac_secrets)
  }

  # The configuration agency with VPC access; null when no function joins a VPC.
  vpc_access_agency = one(huaweicloud_identity_agency.vpc_access[*].name)
  config_agency     = local.use_vpc ? local.vpc_access_agency : huaweicloud_identity_agency.functions.name
}

# Custom policy: the functions' actions and nothing more.
resource "huaweicloud_identity_role" "functions" {
  name        = "${var.name_prefix}-functions"
  description = "ecs-detach: detach EVS disks from ECS servers and publish to its SMN topics"
  type        = "XA"
  policy      = jsonencode(local.policy_document)
}

# Execution agency: FunctionGraph hands its temporary AK/SK/token to the functions.
resource "huaweicloud_identity_agency" "functions" {
  name                   = "${var.name_prefix}-functions"
  description            = "Temporary credentials of the ecs-detach functions"
  delegated_service_name = "op_svc_cff"

  project_role {
    project = var.region
    roles   = [huaweicloud_identity_role.functions.name]
  }
}

# Configuration agency with VPC access, only when the functions (DMS triggers, DCS store) or the
# history recorder join a VPC.
resource "huaweicloud_identity_agency" "vpc_access" {
  count = local.use_vpc || local.use_history_recorder ? 1 : 0

  name                   = "${var.name_prefix}-vpc-access"
  description            = "FunctionGraph attaches the ecs-detach functions to their VPC"
  delegated_service_name = "op_svc_cff"

  project_role {
    project = var.region
    roles   = [huaweicloud_identity_role.functions.name, "VPC Administrator"]
  }
}

# Every function of this configuration, by the suffix of its name ("<name_prefix>-<key>") and
# of its handler (local.handlers[key]): what each sets beyond local.function_defaults, and
# whether it exists here (notify only with notify_channels, notify.tf; history only with
# history_writer = "recorder", history.tf). smn_topic: the topic it is subscribed to (smn.tf);
# timer: the rate of its timer trigger; dead_letters: failed asynchronous invocations go to
# the dead-letter topic (smn.tf).
locals {
  function_defaults = {
    initializer_handler = local.handlers.init
    initializer_timeout = 30
    max_instance_num    = tostring(var.max_instances)
    agency              = local.config_agency
    vpc_id              = local.use_vpc ? var.vpc_id : null
    network_id          = local.use_vpc ? var.network_id : null
    user_data           = jsonencode(local.environment)
    smn_topic           = null
    timer               = null
    dead_letters        = true
  }

  function_settings = {
    detach = {
      enabled     = true
      description = "ecs-detach: validate a detach request, detach the disk, hand the job to the jobs topic"
      memory_size = var.detach_memory_mb
      timeout     = var.detach_timeout_s
    }
    poll = {
      enabled     = true
      description = "ecs-detach: look at a detach job once, continue later or publish the result"
      memory_size = var.poll_memory_mb
      timeout     = var.poll_timeout_s
      smn_topic   = "jobs"
    }
    # SMN cannot deliver a message later, so the poll function's delayed continuations wait in
    # the delay topic (a shared Redis or RabbitMQ) and this function sends each to the jobs topic
    # when it falls due. The timer starts one every minute; with a timeout of a minute one is
    # always running, so a continuation goes out within about a second of being due.
    flush = {
      enabled          = true
      description      = "ecs-detach: send the poll function's delayed continuations to the jobs topic when due"
      memory_size      = var.flush_memory_mb
      timeout          = var.flush_timeout_s
      max_instance_num = "2"
      timer            = "1m"
      dead_letters     = false
    }
    # The outbox relay: an accepted detach whose ecs-detach.accepted event never went out (the
    # publish failed and the sender never retried, or the instance died between the detach call
    # and the publish) waits in the store's outbox; this function publishes it, on a one-minute
    # timer. It needs the store all instances share (redis://): with a per-instance
    # sqlite:////tmp store it finds nothing, and only sender retries resume such requests.
    relay = {
      enabled          = true
      description      = "ecs-detach: publish the accepted jobs whose event never reached the jobs topic"
      memory_size      = var.relay_memory_mb
      timeout          = var.relay_timeout_s
      max_instance_num = "1"
      timer            = "1m"
      dead_letters     = false
    }
    notify = {
      enabled     = local.use_notify
      description = "ecs-detach: send a message for each result and approval request to the chat and SMN channels"
      memory_size = var.notify_memory_mb
      timeout     = var.notify_timeout_s
      user_data   = jsonencode(local.notify_environment)
      smn_topic   = "results"
    }
    # It builds no runtime (no initializer) and alone reaches the database, in its own VPC.
    history = {
      enabled             = local.use_history_recorder
      description         = "ecs-detach: record each result event of the results topic in the audit history"
      memory_size         = 128
      timeout             = 30
      initializer_handler = null
      initializer_timeout = null
      agency              = local.vpc_access_agency
      vpc_id              = local.history_vpc_id
      network_id          = local.history_network_id
      smn_topic           = "results"
    }
  }

  functions = {
    for name, settings in local.function_settings :
    name => merge(local.function_defaults, settings) if settings.enabled
  }

  # Encrypted function data beyond local.secret_environment. Secrets stay out of
  # local.functions: Terraform refuses sensitive values in for_each.
  function_secret_environments = {
    notify  = jsonencode(local.notify_secret_environment)
    history = jsonencode(local.history_secret_environment)
  }
}

resource "huaweicloud_fgs_function" "functions" {
  for_each = local.functions

  name                  = "${var.name_prefix}-${each.key}"
  app                   = "default"
  description           = each.value.description
  functiongraph_version = "v2"
  runtime               = local.runtime
  handler               = local.handlers[each.key]
  initializer_handler   = each.value.initializer_handler
  initializer_timeout   = each.value.initializer_timeout
  memory_size           = each.value.memory_size
  timeout               = each.value.timeout
  max_instance_num      = each.value.max_instance_num

  code_type     = "zip"
  code_filename = basename(var.package_path)
  func_code     = filebase64(var.package_path)

  agency     = each.value.agency
  app_agency = huaweicloud_identity_agency.functions.name
  vpc_id     = each.value.vpc_id
  network_id = each.value.network_id

  user_data           = each.value.user_data
  encrypted_user_data = lookup(local.function_secret_environments, each.key, jsonencode(local.secret_environment))
  tags                = var.tags

  # Each precondition is about one function: `each.key != "<function>" ||` keeps it off the others.
  lifecycle {
    precondition {
      condition     = each.key != "detach" || var.detach_timeout_s >= local.detach_calls * local.call_budget_s
      error_message = "detach_timeout_s must cover 5 cloud calls of connect_timeout_s + http_timeout_s each."
    }
    precondition {
      condition     = each.key != "detach" || !local.use_vpc || var.network_id != ""
      error_message = "network_id is required with vpc_id."
    }
    precondition {
      condition     = each.key != "detach" || length(local.package_problems) == 0
      error_message = "The package cannot serve this deployment: ${join("; ", local.package_problems)}."
    }
    precondition {
      condition     = each.key != "poll" || var.poll_timeout_s >= local.poll_calls * local.call_budget_s
      error_message = "poll_timeout_s must cover 3 cloud calls of connect_timeout_s + http_timeout_s each."
    }
    precondition {
      condition     = each.key != "poll" || (var.first_poll_s <= var.max_poll_delay_s && var.max_poll_delay_s < var.job_timeout_s)
      error_message = "The poll schedule needs first_poll_s <= max_poll_delay_s < job_timeout_s."
    }
    precondition {
      condition     = each.key != "flush" || local.use_vpc
      error_message = "The delay topic (Redis or RabbitMQ) is reached through a VPC: set vpc_id and network_id."
    }
    precondition {
      condition     = each.key != "history" || nonsensitive(startswith(var.history_url, "postgresql://") || startswith(var.history_url, "postgres://"))
      error_message = "history_writer = \"recorder\" records into a postgresql:// history_url: set one."
    }
    precondition {
      condition     = each.key != "history" || (local.history_vpc_id != "" && local.history_network_id != "")
      error_message = "The history recorder reaches the database through a VPC: set vpc_id and network_id, or history_vpc_id and history_network_id."
    }
  }
}

# The flush and relay functions' one-minute timers.
resource "huaweicloud_fgs_function_trigger" "timer" {
  for_each = { for name, function in local.functions : name => function.timer if function.timer != null }

  function_urn = huaweicloud_fgs_function.functions[each.key].urn
  type         = "TIMER"
  status       = "ACTIVE"
  event_data = jsonencode({
    name          = "${var.name_prefix}-${each.key}"
    schedule_type = "Rate"
    schedule      = each.value
  })
}
