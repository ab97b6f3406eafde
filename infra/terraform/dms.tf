# Optional DMS triggers of the detach function: each message is a detach request or an
# ecs-detach.requested CloudEvent. Both need the function in the instance's VPC.

resource "huaweicloud_fgs_function_trigger" "kafka" {
  count = var.kafka_trigger == null ? 0 : 1

  function_urn = huaweicloud_fgs_function.detach.urn
  type         = "KAFKA"
  status       = "ACTIVE"
  event_data = jsonencode({
    instance_id    = var.kafka_trigger.instance_id
    topic_ids      = var.kafka_trigger.topic_ids
    batch_size     = var.kafka_trigger.batch_size
    kafka_user     = var.kafka_trigger.user_name
    kafka_password = var.kafka_password
  })

  lifecycle {
    precondition {
      condition     = local.use_vpc
      error_message = "A Kafka trigger needs the function in the instance's VPC: set vpc_id and network_id."
    }
  }
}

resource "huaweicloud_fgs_function_trigger" "rabbitmq" {
  count = var.rabbitmq_trigger == null ? 0 : 1

  function_urn = huaweicloud_fgs_function.detach.urn
  type         = "RABBITMQ"
  status       = "ACTIVE"
  event_data = jsonencode(merge(var.rabbitmq_trigger.event_data_extra, {
    instance_id = var.rabbitmq_trigger.instance_id
    exchange    = var.rabbitmq_trigger.exchange
    vhost       = var.rabbitmq_trigger.vhost
    batch_size  = var.rabbitmq_trigger.batch_size
  }))

  lifecycle {
    precondition {
      condition     = local.use_vpc
      error_message = "A RabbitMQ trigger needs the function in the instance's VPC: set vpc_id and network_id."
    }
  }
}
