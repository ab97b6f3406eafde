# Copy to terraform.tfvars (or pass -var-file=example.tfvars) and change. Secrets can come from TF_VAR_* variables.
region         = "ap-southeast-1"
cloud          = "huaweicloud"
name_prefix    = "ecs-detach"
package_path   = "../../dist/ecs-detach-0.1.0-py312.zip"
python_version = "3.12"

# Only servers tagged like this may lose a disk (any other ECS_DETACH_* setting goes here too).
extra_environment = {
  ECS_DETACH_REQUIRED_TAG = "auto-remediation=true"
}

# SMN cannot delay: the poll function's continuations wait here until the flush function
# sends them (a DCS Redis or DMS RabbitMQ in the functions' VPC). The package must carry its
# client: ecs-detach package --python 3.12 --out dist --extra redis --delay-topic rediss://
delay_topic_url = "rediss://:change-me@redis.example.internal:6379/0?topic=ecs-detach-delays"
vpc_id          = "00000000-0000-4000-8000-000000000001"
network_id      = "00000000-0000-4000-8000-000000000002"

# The audit history (docs/history.md), off by default. RDS for PostgreSQL written by the
# functions themselves (build with --history postgresql://, which adds the postgres extra):
#   history_url = "postgresql://ecs_detach:change-me@rds.example.internal:5432/ecs_detach?sslmode=require"
# or, when the functions cannot reach it, by a recorder of the results topic in its VPC:
#   history_writer = "recorder", history_vpc_id = "…", history_network_id = "…"

# The function's own webhook check (always on): at least one credential.
webhook_bearer_tokens = ["change-me-to-a-random-token-of-32-characters-or-more"]

# API Gateway: the webhook URL is an output. APP authentication: senders add X-Apig-AppCode.
# For production, an independent domain and its APIG SSL certificate (else the debugging
# domain, 1,000 calls a day): webhook_domain = "ecs-detach.example.com", webhook_certificate_id = "…"
apig_instance_id    = "0123456789abcdef0123456789abcdef"
apig_authentication = "APP"
apig_app_code       = "change-me-to-a-random-app-code-of-at-least-64-characters-0123456789abcdef"

# HTTPS endpoints of the next workflow step, subscribed to the results topic.
results_https_endpoints = []

tags = {
  app = "ecs-detach"
}
