variable "region" {
  description = "Region of the functions, topics and servers, e.g. ap-southeast-1 (also the IAM project the agency's policy applies to)."
  type        = string

  validation {
    condition     = can(regex("^[a-z]{2}(-[a-z]+)+-[0-9]+$", var.region))
    error_message = "The region looks like ap-southeast-1 or eu-west-101."
  }
}

variable "cloud" {
  description = "Which Huawei Cloud: huaweicloud (myhuaweicloud.com) or huaweicloud-eu (myhuaweicloud.eu, e.g. eu-west-101); also ECS_DETACH_CLOUD. The functions run on OTC and Flexible Engine too, but this module needs the huaweicloud provider's resources, which those clouds do not serve: deploy there with their own providers."
  type        = string
  default     = "huaweicloud"

  validation {
    condition     = contains(["huaweicloud", "huaweicloud-eu"], var.cloud)
    error_message = "This module deploys on Huawei Cloud only: cloud is huaweicloud or huaweicloud-eu (otc and flexibleengine need their own providers)."
  }
}

variable "name_prefix" {
  description = "Prefix of every resource name (functions, topics, agencies, API group)."
  type        = string
  default     = "ecs-detach"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{2,30}$", var.name_prefix))
    error_message = "The prefix has 3 to 31 characters: lower-case letters, digits and hyphens, starting with a letter."
  }
}

variable "package_path" {
  description = "The code package built by `ecs-detach package --python <python_version>` (a .zip file)."
  type        = string

  validation {
    condition     = endswith(var.package_path, ".zip")
    error_message = "The package is the .zip file that `ecs-detach package` writes."
  }
}

variable "python_version" {
  description = "FunctionGraph Python runtime (Python3.10 or Python3.12); the package must be built for it (ecs-detach package --python). Several regions list only up to Python 3.10 (the EU regions, Kuala Lumpur, Abu Dhabi, per FunctionGraph's runtime list): check the console's runtime list of your region and use 3.10 there."
  type        = string
  default     = "3.12"

  validation {
    condition     = contains(["3.10", "3.12"], var.python_version)
    error_message = "python_version is 3.10 or 3.12 (FunctionGraph's Python3.10 and Python3.12 runtimes)."
  }
}

variable "detach_memory_mb" {
  description = "Memory of the detach function, in MB."
  type        = number
  default     = 256

  validation {
    condition     = contains([128, 256, 512, 768, 1024, 1280, 1536, 1792, 2048], var.detach_memory_mb)
    error_message = "FunctionGraph memory sizes are 128, 256, 512, 768, 1024, 1280, 1536, 1792 or 2048 MB."
  }
}

variable "poll_memory_mb" {
  description = "Memory of the poll function, in MB."
  type        = number
  default     = 256

  validation {
    condition     = contains([128, 256, 512, 768, 1024, 1280, 1536, 1792, 2048], var.poll_memory_mb)
    error_message = "FunctionGraph memory sizes are 128, 256, 512, 768, 1024, 1280, 1536, 1792 or 2048 MB."
  }
}

variable "detach_timeout_s" {
  description = "Timeout of the detach function; also ECS_DETACH_INVOCATION_TIMEOUT_S (an unfinished claim lapses after it) and the API Gateway backend timeout."
  type        = number
  default     = 60

  validation {
    condition     = var.detach_timeout_s >= 3 && var.detach_timeout_s <= 900
    error_message = "A function timeout is 3 to 900 seconds."
  }
}

variable "poll_timeout_s" {
  description = "Timeout of the poll function (one look at a job per invocation)."
  type        = number
  default     = 30

  validation {
    condition     = var.poll_timeout_s >= 3 && var.poll_timeout_s <= 900
    error_message = "A function timeout is 3 to 900 seconds."
  }
}

variable "http_timeout_s" {
  description = "Per-call read/write timeout of every cloud call (ECS_DETACH_HTTP_TIMEOUT_S)."
  type        = number
  default     = 5

  validation {
    condition     = var.http_timeout_s > 0 && var.http_timeout_s <= 60
    error_message = "The HTTP timeout is more than 0 and at most 60 seconds."
  }
}

variable "connect_timeout_s" {
  description = "Per-call connect timeout of every cloud call (ECS_DETACH_CONNECT_TIMEOUT_S)."
  type        = number
  default     = 3

  validation {
    condition     = var.connect_timeout_s > 0 && var.connect_timeout_s <= 30
    error_message = "The connect timeout is more than 0 and at most 30 seconds."
  }
}

variable "job_timeout_s" {
  description = "Give up on a detach job this long after acceptance (ECS_DETACH_POLL_TIMEOUT_S)."
  type        = number
  default     = 600

  validation {
    condition     = var.job_timeout_s >= 60 && var.job_timeout_s <= 86400
    error_message = "The job timeout is 60 seconds to one day."
  }
}

variable "first_poll_s" {
  description = "First look at a new job after this many seconds (ECS_DETACH_FIRST_POLL_S)."
  type        = number
  default     = 2

  validation {
    condition     = var.first_poll_s >= 0
    error_message = "The first poll delay is not negative."
  }
}

variable "max_poll_delay_s" {
  description = "Longest wait between two looks at a running job (ECS_DETACH_MAX_POLL_DELAY_S)."
  type        = number
  default     = 20

  validation {
    condition     = var.max_poll_delay_s >= 1
    error_message = "The longest poll delay is at least 1 second."
  }
}

variable "store_url" {
  description = "Idempotency/lock store (ECS_DETACH_STORE). sqlite:////tmp/… keeps records per function instance only; share one redis:// (DCS, needs vpc_id and a package built with --extra redis) between all instances for exactly-once across instances."
  type        = string
  default     = "sqlite:////tmp/ecs-detach/store.db"
  sensitive   = true

  validation {
    condition     = can(regex("^(sqlite:////tmp/|rediss?://)", var.store_url))
    error_message = "The store is sqlite:////tmp/… (the only writable folder of a function) or redis://… / rediss://…."
  }
}

variable "history_url" {
  description = "The audit history (ECS_DETACH_HISTORY, docs/history.md): off; postgresql://user:password@host:5432/db (RDS for PostgreSQL reachable from the functions' VPC, or from the recorder's with history_writer = \"recorder\"; the package needs the postgres extra: ecs-detach package --history postgresql://); or sqlite:////tmp/… (per function instance, lost with it). A relative path is refused by the functions (their code folder is read-only)."
  type        = string
  default     = "off"
  sensitive   = true # a postgresql:// URL carries the database password

  validation {
    condition     = var.history_url == "off" || can(regex("^sqlite:////tmp/", var.history_url)) || can(regex("^postgres(ql)?://[^/?#]+", var.history_url))
    error_message = "The history is off, postgresql://user:password@host:5432/db, or sqlite:////tmp/… (the only writable folder of a function)."
  }
}

variable "history_writer" {
  description = "Who writes the history (docs/history.md, \"Two ways to feed it on FunctionGraph\"): functions (the detach and poll functions write every step to history_url themselves) or recorder (they keep none; a history-recorder function subscribed to the results topic records each result event in the postgresql:// history_url: for functions that cannot reach the database)."
  type        = string
  default     = "functions"

  validation {
    condition     = contains(["functions", "recorder"], var.history_writer)
    error_message = "history_writer is functions or recorder."
  }
}

variable "history_vpc_id" {
  description = "VPC of the history-recorder function (history_writer = \"recorder\"), where the database is; empty: the functions' vpc_id."
  type        = string
  default     = ""

  validation {
    condition     = var.history_vpc_id == "" || can(regex("^[0-9a-f-]{36}$", var.history_vpc_id))
    error_message = "The VPC ID is empty or a UUID."
  }
}

variable "history_network_id" {
  description = "Subnet (network ID) in history_vpc_id for the history-recorder function; required with history_vpc_id."
  type        = string
  default     = ""

  validation {
    condition     = var.history_network_id == "" || can(regex("^[0-9a-f-]{36}$", var.history_network_id))
    error_message = "The network ID is empty or a UUID."
  }
}

variable "delay_topic_url" {
  description = "Where the poll function's delayed continuations wait (ECS_DETACH_DELAY_TOPIC) until the flush function sends them to the SMN jobs topic: a Redis (DCS, redis:// or rediss://) or RabbitMQ (DMS, amqp:// or amqps://) reachable from the functions' VPC. Build the package with the matching --extra (redis or rabbitmq)."
  type        = string
  sensitive   = true

  validation {
    condition     = can(regex("^(rediss?|amqps?)://[^/?#]+", var.delay_topic_url))
    error_message = "The delay topic is a redis://, rediss://, amqp:// or amqps:// URL: SMN cannot delay, and a function's own /tmp is not shared."
  }
}

variable "flush_timeout_s" {
  description = "Timeout of the flush function; with the one-minute timer, 60 keeps one flush always running (each continuation goes out about a second after it is due); shorter saves billed time and delays continuations up to the rest of the minute."
  type        = number
  default     = 60

  validation {
    condition     = var.flush_timeout_s >= 10 && var.flush_timeout_s <= 900
    error_message = "flush_timeout_s must be between 10 and 900 seconds."
  }
}

variable "flush_memory_mb" {
  description = "Memory of the flush function (MB)."
  type        = number
  default     = 128

  validation {
    condition     = contains([128, 256, 512], var.flush_memory_mb)
    error_message = "flush_memory_mb must be 128, 256 or 512."
  }
}

variable "relay_timeout_s" {
  description = "Timeout of the relay function (the outbox sweep, every minute): each record it publishes is one publish to the jobs topic."
  type        = number
  default     = 30

  validation {
    condition     = var.relay_timeout_s >= 10 && var.relay_timeout_s <= 900
    error_message = "relay_timeout_s must be between 10 and 900 seconds."
  }
}

variable "relay_memory_mb" {
  description = "Memory of the relay function (MB)."
  type        = number
  default     = 128

  validation {
    condition     = contains([128, 256, 512], var.relay_memory_mb)
    error_message = "relay_memory_mb must be 128, 256 or 512."
  }
}

variable "webhook_bearer_tokens" {
  description = "Accepted webhook bearer tokens (ECS_DETACH_WEBHOOK_BEARER_TOKENS); several allow rotation. Stored as encrypted function data."
  type        = list(string)
  default     = []
  sensitive   = true

  validation {
    condition     = alltrue([for token in var.webhook_bearer_tokens : length(token) >= 32])
    error_message = "Each bearer token has at least 32 characters."
  }
}

variable "webhook_hmac_secrets" {
  description = "HMAC-SHA256 webhook secrets (ECS_DETACH_WEBHOOK_HMAC_SECRETS). Stored as encrypted function data."
  type        = list(string)
  default     = []
  sensitive   = true

  validation {
    condition     = alltrue([for secret in var.webhook_hmac_secrets : length(secret) >= 32])
    error_message = "Each HMAC secret has at least 32 characters."
  }
}

variable "extra_environment" {
  description = "Other ECS_DETACH_* settings of both functions, e.g. { ECS_DETACH_REQUIRED_TAG = \"auto-remediation=true\" }."
  type        = map(string)
  default     = {}

  validation {
    condition     = alltrue([for name in keys(var.extra_environment) : startswith(name, "ECS_DETACH_")])
    error_message = "Only ECS_DETACH_* settings belong here; credentials come from the agency."
  }
}

variable "max_instances" {
  description = "Most instances of each function at once (-1: no limit)."
  type        = number
  default     = 10

  validation {
    condition     = var.max_instances == -1 || (var.max_instances >= 1 && var.max_instances <= 1000)
    error_message = "The instance limit is -1 or 1 to 1000."
  }
}

variable "vpc_id" {
  description = "VPC the functions reach (needed by the DMS triggers and a DCS store); empty: no VPC access."
  type        = string
  default     = ""

  validation {
    condition     = var.vpc_id == "" || can(regex("^[0-9a-f-]{36}$", var.vpc_id))
    error_message = "The VPC ID is empty or a UUID."
  }
}

variable "network_id" {
  description = "Subnet (network ID) in vpc_id for the functions; required with vpc_id."
  type        = string
  default     = ""

  validation {
    condition     = var.network_id == "" || can(regex("^[0-9a-f-]{36}$", var.network_id))
    error_message = "The network ID is empty or a UUID."
  }
}

variable "apig_instance_id" {
  description = "Dedicated API Gateway instance that serves the webhook routes; empty: no API Gateway trigger."
  type        = string
  default     = ""

  validation {
    condition     = var.apig_instance_id == "" || can(regex("^[0-9a-f]{32}$", var.apig_instance_id))
    error_message = "The API Gateway instance ID is empty or 32 hexadecimal characters."
  }
}

variable "apig_authentication" {
  description = "Gateway authentication of the webhook API: APP (AppCode in X-Apig-AppCode; the function still checks its own webhook credentials) or IAM. NONE leaves only the function's check."
  type        = string
  default     = "APP"

  validation {
    condition     = contains(["APP", "IAM", "NONE"], var.apig_authentication)
    error_message = "The gateway authentication is APP, IAM or NONE."
  }
}

variable "apig_app_code" {
  description = "AppCode webhook senders put in the X-Apig-AppCode header (APP authentication): 64 to 180 characters."
  type        = string
  default     = ""
  sensitive   = true

  validation {
    condition     = var.apig_app_code == "" || (length(var.apig_app_code) >= 64 && length(var.apig_app_code) <= 180)
    error_message = "An AppCode has 64 to 180 characters."
  }
}

variable "webhook_domain" {
  description = "Independent domain of the webhook API (e.g. ecs-detach.example.com), a CNAME to the API group's debugging domain (output webhook_dns_record); empty: the debugging domain, limited to 1,000 calls a day."
  type        = string
  default     = ""

  validation {
    condition     = var.webhook_domain == "" || can(regex("^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\\.)+[a-z]{2,63}$", var.webhook_domain))
    error_message = "The webhook domain is empty or a lower-case domain name such as ecs-detach.example.com."
  }
}

variable "webhook_certificate_id" {
  description = "ID of the APIG SSL certificate for webhook_domain (huaweicloud_apig_certificate, or uploaded in the console); required with webhook_domain."
  type        = string
  default     = ""

  validation {
    condition     = can(regex("^[A-Za-z0-9-]{0,64}$", var.webhook_certificate_id))
    error_message = "The certificate ID is empty or up to 64 letters, digits and hyphens."
  }
}

variable "kafka_trigger" {
  description = "DMS for Kafka trigger of the detach function (each message a detach request or CloudEvent); null: none. Needs vpc_id. user_name (with kafka_password) for SASL instances; ssl_enable for SASL_SSL."
  type = object({
    instance_id = string
    topic_ids   = list(string)
    batch_size  = optional(number, 10)
    user_name   = optional(string, "")
    ssl_enable  = optional(bool, false)
  })
  default = null

  validation {
    condition     = var.kafka_trigger == null || try(var.kafka_trigger.batch_size >= 1 && var.kafka_trigger.batch_size <= 1000 && length(var.kafka_trigger.topic_ids) > 0, false)
    error_message = "A Kafka trigger names at least one topic and a batch size of 1 to 1000."
  }
}

variable "kafka_password" {
  description = "Password of kafka_trigger.user_name (SASL instances); empty: none."
  type        = string
  default     = ""
  sensitive   = true
}

variable "rabbitmq_trigger" {
  description = "DMS for RabbitMQ trigger of the detach function; null: none. Needs vpc_id and rabbitmq_password. exchange_name: the exchange whose messages invoke the function; user_name: the instance's user (rabbitmq_password is its password); connect_address: host:port, empty for the instance's own; ssl_enable: the instance has SSL on."
  type = object({
    instance_id     = string
    exchange_name   = string
    vhost           = optional(string, "/")
    batch_size      = optional(number, 10)
    user_name       = string
    connect_address = optional(string, "")
    ssl_enable      = optional(bool, false)
  })
  default = null

  validation {
    condition     = var.rabbitmq_trigger == null || try(var.rabbitmq_trigger.batch_size >= 1 && var.rabbitmq_trigger.batch_size <= 1000 && var.rabbitmq_trigger.exchange_name != "" && var.rabbitmq_trigger.user_name != "", false)
    error_message = "A RabbitMQ trigger names an exchange and a user, with a batch size of 1 to 1000."
  }
}

variable "rabbitmq_password" {
  description = "Password of rabbitmq_trigger.user_name on the DMS for RabbitMQ instance (the API requires it for the trigger)."
  type        = string
  default     = ""
  sensitive   = true
}

variable "results_https_endpoints" {
  description = "HTTPS endpoints subscribed to the results topic (the next step of a workflow)."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for endpoint in var.results_https_endpoints : startswith(endpoint, "https://")])
    error_message = "Each endpoint is an https:// URL."
  }
}

variable "async_event_max_age_s" {
  description = "An asynchronous invocation (SMN, DMS) still unprocessed after this goes to the dead-letter topic; at least the job timeout plus one poll delay."
  type        = number
  default     = 3600

  validation {
    condition     = var.async_event_max_age_s >= 60 && var.async_event_max_age_s <= 86400
    error_message = "The maximum event age is 60 seconds to one day."
  }
}

variable "async_retry_attempts" {
  description = "Retries of a failed asynchronous invocation before it goes to the dead-letter topic (FunctionGraph allows 0 to 3)."
  type        = number
  default     = 3

  validation {
    condition     = var.async_retry_attempts >= 0 && var.async_retry_attempts <= 3 && floor(var.async_retry_attempts) == var.async_retry_attempts
    error_message = "The retry attempts are a whole number from 0 to 3 (the provider's range for max_async_retry_attempts)."
  }
}

variable "tags" {
  description = "Tags on the functions and topics."
  type        = map(string)
  default     = {}
}

variable "notify_channels" {
  description = "Channels of the notify function (ECS_DETACH_NOTIFY_CHANNELS, docs/notifications.md): each has a unique name, a kind (slack, teams, feishu, dingtalk, wecom, smn), the url of its incoming webhook (https) or, for smn, a topic_urn, an optional signing secret (feishu, dingtalk) and optional outcomes. Empty: no notify function. Stored as encrypted function data; the package needs --extra notify."
  type = list(object({
    name      = string
    kind      = string
    url       = optional(string)
    secret    = optional(string)
    topic_urn = optional(string)
    outcomes  = optional(list(string))
  }))
  default   = []
  sensitive = true

  validation {
    condition = alltrue([
      for channel in var.notify_channels :
      can(regex("^[a-z0-9][a-z0-9_-]{0,62}$", channel.name))
      && contains(["slack", "teams", "feishu", "dingtalk", "wecom", "smn"], channel.kind)
      && (channel.kind == "smn" ? channel.topic_urn != null : startswith(coalesce(channel.url, "-"), "https://"))
    ])
    error_message = "Each channel has a name of lower-case letters, digits, - and _, a kind of slack, teams, feishu, dingtalk, wecom or smn, and an https:// url (smn: a topic_urn)."
  }

  validation {
    condition     = length(distinct([for channel in var.notify_channels : channel.name])) == length(var.notify_channels)
    error_message = "Channel names are unique."
  }
}

variable "notify_outcomes" {
  description = "The outcomes a channel without its own outcomes is sent (ECS_DETACH_NOTIFY_OUTCOMES)."
  type        = list(string)
  default     = ["approval_requested", "succeeded", "failed", "timed_out", "rejected"]

  validation {
    condition = alltrue([
      for outcome in var.notify_outcomes :
      contains(["approval_requested", "succeeded", "failed", "timed_out", "rejected", "already_detached"], outcome)
    ])
    error_message = "The outcomes are approval_requested, succeeded, failed, timed_out, rejected and already_detached."
  }
}

variable "notify_timeout_s" {
  description = "Timeout of the notify function: a batch of results, each sent to every channel that takes it (10 s per platform call)."
  type        = number
  default     = 60

  validation {
    condition     = var.notify_timeout_s >= 10 && var.notify_timeout_s <= 900
    error_message = "notify_timeout_s must be between 10 and 900 seconds."
  }
}

variable "notify_memory_mb" {
  description = "Memory of the notify function (MB)."
  type        = number
  default     = 128

  validation {
    condition     = contains([128, 256, 512], var.notify_memory_mb)
    error_message = "notify_memory_mb must be 128, 256 or 512."
  }
}
