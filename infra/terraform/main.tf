# The detach, poll, flush and relay functions, and the agencies whose temporary credentials
# they sign with (notify.tf: the notify function; history.tf: the history recorder).

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

  config_agency = local.use_vpc ? huaweicloud_identity_agency.vpc_access[0].name : huaweicloud_identity_agency.functions.name
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

resource "huaweicloud_fgs_function" "detach" {
  name                  = "${var.name_prefix}-detach"
  app                   = "default"
  description           = "ecs-detach: validate a detach request, detach the disk, hand the job to the jobs topic"
  functiongraph_version = "v2"
  runtime               = local.runtime
  handler               = local.handlers.detach
  initializer_handler   = local.handlers.init
  initializer_timeout   = 30
  memory_size           = var.detach_memory_mb
  timeout               = var.detach_timeout_s
  max_instance_num      = tostring(var.max_instances)

  code_type     = "zip"
  code_filename = basename(var.package_path)
  func_code     = filebase64(var.package_path)

  agency     = local.config_agency
  app_agency = huaweicloud_identity_agency.functions.name
  vpc_id     = local.use_vpc ? var.vpc_id : null
  network_id = local.use_vpc ? var.network_id : null

  user_data           = jsonencode(local.environment)
  encrypted_user_data = jsonencode(local.secret_environment)
  tags                = var.tags

  lifecycle {
    precondition {
      condition     = var.detach_timeout_s >= local.detach_calls * local.call_budget_s
      error_message = "detach_timeout_s must cover 5 cloud calls of connect_timeout_s + http_timeout_s each."
    }
    precondition {
      condition     = !local.use_vpc || var.network_id != ""
      error_message = "network_id is required with vpc_id."
    }
    precondition {
      condition     = length(local.package_problems) == 0
      error_message = "The package cannot serve this deployment: ${join("; ", local.package_problems)}."
    }
  }
}

resource "huaweicloud_fgs_function" "poll" {
  name                  = "${var.name_prefix}-poll"
  app                   = "default"
  description           = "ecs-detach: look at a detach job once, continue later or publish the result"
  functiongraph_version = "v2"
  runtime               = local.runtime
  handler               = local.handlers.poll
  initializer_handler   = local.handlers.init
  initializer_timeout   = 30
  memory_size           = var.poll_memory_mb
  timeout               = var.poll_timeout_s
  max_instance_num      = tostring(var.max_instances)

  code_type     = "zip"
  code_filename = basename(var.package_path)
  func_code     = filebase64(var.package_path)

  agency     = local.config_agency
  app_agency = huaweicloud_identity_agency.functions.name
  vpc_id     = local.use_vpc ? var.vpc_id : null
  network_id = local.use_vpc ? var.network_id : null

  user_data           = jsonencode(local.environment)
  encrypted_user_data = jsonencode(local.secret_environment)
  tags                = var.tags

  lifecycle {
    precondition {
      condition     = var.poll_timeout_s >= local.poll_calls * local.call_budget_s
      error_message = "poll_timeout_s must cover 3 cloud calls of connect_timeout_s + http_timeout_s each."
    }
    precondition {
      condition     = var.first_poll_s <= var.max_poll_delay_s && var.max_poll_delay_s < var.job_timeout_s
      error_message = "The poll schedule needs first_poll_s <= max_poll_delay_s < job_timeout_s."
    }
  }
}

# SMN cannot deliver a message later, so the poll function's delayed continuations wait in the
# delay topic (a shared Redis or RabbitMQ) and this function sends each to the jobs topic when
# it falls due. The timer starts one every minute; with a timeout of a minute one is always
# running, so a continuation goes out within about a second of being due.
resource "huaweicloud_fgs_function" "flush" {
  name                  = "${var.name_prefix}-flush"
  app                   = "default"
  description           = "ecs-detach: send the poll function's delayed continuations to the jobs topic when due"
  functiongraph_version = "v2"
  runtime               = local.runtime
  handler               = local.handlers.flush
  initializer_handler   = local.handlers.init
  initializer_timeout   = 30
  memory_size           = var.flush_memory_mb
  timeout               = var.flush_timeout_s
  max_instance_num      = "2"

  code_type     = "zip"
  code_filename = basename(var.package_path)
  func_code     = filebase64(var.package_path)

  agency     = local.config_agency
  app_agency = huaweicloud_identity_agency.functions.name
  vpc_id     = local.use_vpc ? var.vpc_id : null
  network_id = local.use_vpc ? var.network_id : null

  user_data           = jsonencode(local.environment)
  encrypted_user_data = jsonencode(local.secret_environment)
  tags                = var.tags

  lifecycle {
    precondition {
      condition     = local.use_vpc
      error_message = "The delay topic (Redis or RabbitMQ) is reached through a VPC: set vpc_id and network_id."
    }
  }
}

resource "huaweicloud_fgs_function_trigger" "flush_timer" {
  function_urn = huaweicloud_fgs_function.flush.urn
  type         = "TIMER"
  status       = "ACTIVE"
  event_data = jsonencode({
    name          = "${var.name_prefix}-flush"
    schedule_type = "Rate"
    schedule      = "1m"
  })
}

# The outbox relay: an accepted detach whose ecs-detach.accepted event never went out (the
# publish failed and the sender never retried, or the instance died between the detach call
# and the publish) waits in the store's outbox; this function publishes it, on a one-minute
# timer. It needs the store all instances share (redis://): with a per-instance
# sqlite:////tmp store it finds nothing, and only sender retries resume such requests.
resource "huaweicloud_fgs_function" "relay" {
  name                  = "${var.name_prefix}-relay"
  app                   = "default"
  description           = "ecs-detach: publish the accepted jobs whose event never reached the jobs topic"
  functiongraph_version = "v2"
  runtime               = local.runtime
  handler               = local.handlers.relay
  initializer_handler   = local.handlers.init
  initializer_timeout   = 30
  memory_size           = var.relay_memory_mb
  timeout               = var.relay_timeout_s
  max_instance_num      = "1"

  code_type     = "zip"
  code_filename = basename(var.package_path)
  func_code     = filebase64(var.package_path)

  agency     = local.config_agency
  app_agency = huaweicloud_identity_agency.functions.name
  vpc_id     = local.use_vpc ? var.vpc_id : null
  network_id = local.use_vpc ? var.network_id : null

  user_data           = jsonencode(local.environment)
  encrypted_user_data = jsonencode(local.secret_environment)
  tags                = var.tags
}

resource "huaweicloud_fgs_function_trigger" "relay_timer" {
  function_urn = huaweicloud_fgs_function.relay.urn
  type         = "TIMER"
  status       = "ACTIVE"
  event_data = jsonencode({
    name          = "${var.name_prefix}-relay"
    schedule_type = "Rate"
    schedule      = "1m"
  })
}
