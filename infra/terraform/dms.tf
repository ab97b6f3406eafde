# Optional DMS triggers of the detach function: each message is a detach request or an
# ecs-detach.requested CloudEvent. Both need the function in the instance's VPC.
#
# event_data fields are the FunctionGraph API's (TriggerEventDataRequestBody; see README.md):
# tests/infra/test_provider_schema.py checks each trigger's fields against them.

locals {
  # Credentials go only when a user is named (SASL on Kafka; RabbitMQ always has one).
  kafka_event_data = var.kafka_trigger == null ? null : merge(
    {
      instance_id      = var.kafka_trigger.instance_id
      topic_ids        = var.kafka_trigger.topic_ids
      batch_size       = var.kafka_trigger.batch_size
      kafka_ssl_enable = var.kafka_trigger.ssl_enable
    },
    {
      for key, value in { kafka_user = var.kafka_trigger.user_name, kafka_password = var.kafka_password } :
      key => value if var.kafka_trigger.user_name != ""
    },
  )

  rabbitmq_event_data = var.rabbitmq_trigger == null ? null : merge(
    {
      instance_id     = var.rabbitmq_trigger.instance_id
      exchange_name   = var.rabbitmq_trigger.exchange_name
      vhost           = var.rabbitmq_trigger.vhost
      batch_size      = var.rabbitmq_trigger.batch_size
      access_user     = var.rabbitmq_trigger.user_name
      access_password = var.rabbitmq_password
      ssl_enable      = var.rabbitmq_trigger.ssl_enable
    },
    {
      for key, value in { connect_address = var.rabbitmq_trigger.connect_address } :
      key => value if var.rabbitmq_trigger.connect_address != ""
    },
  )
}

resource "huaweicloud_fgs_function_trigger" "kafka" {
  count = var.kafka_trigger == null ? 0 : 1

  function_urn = huaweicloud_fgs_function.functions["detach"].urn
  type         = "KAFKA"
  status       = "ACTIVE"
  event_data   = jsonencode(local.kafka_event_data)

  lifecycle {
    precondition {
      condition     = local.use_vpc
      error_message = "A Kafka trigger needs the function in the instance's VPC: set vpc_id and network_id."
    }
  }
}

# A Kafka trigger is created DISABLED (the API's default for Kafka); the provider sends `status`
# only on update (since 1.75.2), so this one-time action switches it on after creation.
resource "huaweicloud_fgs_function_trigger_status_action" "kafka" {
  count = var.kafka_trigger == null ? 0 : 1

  function_urn      = huaweicloud_fgs_function.functions["detach"].urn
  trigger_type_code = "KAFKA"
  trigger_id        = huaweicloud_fgs_function_trigger.kafka[0].id
  trigger_status    = "ACTIVE"
  # The same source as the trigger's (the provider advises against the trigger's own attribute).
  event_data = jsonencode(local.kafka_event_data)
}

resource "huaweicloud_fgs_function_trigger" "rabbitmq" {
  count = var.rabbitmq_trigger == null ? 0 : 1

  function_urn = huaweicloud_fgs_function.functions["detach"].urn
  type         = "RABBITMQ"
  status       = "ACTIVE"
  event_data   = jsonencode(local.rabbitmq_event_data)

  lifecycle {
    precondition {
      condition     = local.use_vpc
      error_message = "A RabbitMQ trigger needs the function in the instance's VPC: set vpc_id and network_id."
    }
    precondition {
      condition     = var.rabbitmq_password != ""
      error_message = "A RabbitMQ trigger logs in to the instance: set rabbitmq_password (the password of rabbitmq_trigger.user_name)."
    }
  }
}
