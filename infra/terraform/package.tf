# The code package and its manifest: `ecs-detach package` writes <zip stem>.manifest.json beside
# the zip (its sha256, Python and extras). The plan fails before anything is created when the
# package cannot serve this deployment: another Python, another zip, no client for the store,
# delay topic or history the functions are given (postgresql://: the postgres extra), or no
# webhooks extra behind an API Gateway trigger.

locals {
  # URL scheme → the package extra that serves it (handler/support/extras.py SCHEME_EXTRAS).
  scheme_extras = {
    redis      = "redis"
    rediss     = "redis"
    nats       = "nats"
    tls        = "nats"
    amqp       = "rabbitmq"
    amqps      = "rabbitmq"
    postgresql = "postgres"
    postgres   = "postgres"
  }
  package_manifest_path = "${trimsuffix(var.package_path, ".zip")}.manifest.json"
  package_manifest      = jsondecode(file(local.package_manifest_path))

  # Only the schemes leave the sensitive URLs: they name no secret. An API Gateway trigger serves
  # the webhook routes, which need the webhooks extra (ecs-detach package --webhook-routes).
  package_needs = setunion(
    toset(nonsensitive(compact([
      for url in [var.store_url, var.delay_topic_url, var.history_url] : lookup(local.scheme_extras, lower(split("://", url)[0]), "")
    ]))),
    var.apig_instance_id != "" ? ["webhooks"] : [],
  )
  package_missing = sort(setsubtract(local.package_needs, local.package_manifest.extras))

  package_problems = concat(
    local.package_manifest.python == var.python_version ? [] : [
      "the package is built for Python ${local.package_manifest.python}, the functions run Python ${var.python_version}: ecs-detach package --python ${var.python_version}",
    ],
    local.package_manifest.sha256 == filesha256(var.package_path) ? [] : [
      "${local.package_manifest_path} describes another zip than ${var.package_path}: build the package again",
    ],
    !nonsensitive(length(var.notify_channels) > 0) || contains(local.package_manifest.extras, "notify") ? [] : [
      "notify_channels needs the notify extra (jinja2), which the package lacks: ecs-detach package --python ${var.python_version} --extra notify",
    ],
    length(local.package_missing) == 0 ? [] : [
      "the store, delay topic, history or API Gateway trigger needs the ${join(", ", local.package_missing)} extra, which the package lacks: ecs-detach package --python ${var.python_version} ${join(" ", [for extra in local.package_needs : "--extra ${extra}"])}",
    ],
  )
}
