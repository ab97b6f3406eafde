"""``ecs-detach``: emulator, up, worker, demo, invoke, package, results, status, history, approvals,
detach."""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import secrets
import signal
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from pydantic import SecretStr, ValidationError

from handler.support.extras import EXTRA_MODULES

if TYPE_CHECKING:
    from rich.console import Console

    from emulator import EmulatorConfig
    from handler.cloud import Credentials
    from handler.core.models import DetachRequest
    from handler.entry.runtime import Runtime
    from handler.local.local import LocalStack
    from handler.local.status import Status

EVENTS_DIR = Path(__file__).resolve().parents[2] / "events"
DEMO_EVENT = EVENTS_DIR / "detach-request.json"
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_CLOUD, EXIT_UNAVAILABLE, EXIT_INTERRUPTED = 0, 1, 2, 3, 4, 130
EXIT_RETRY = 75  # sysexits' EX_TEMPFAIL: nothing was done, the same command may work later
_RECHECK_S = 0.5  # ``detach --wait``: how soon it looks again while another poll reports the job
EXIT_CODES = f"""exit codes:
  {EXIT_OK}    done
  {EXIT_FAILED}    the command ran and did not succeed (a detach refused or failed, a job without
       a result); also any other ecs-detach error, and a bug (shown with its traceback)
  {EXIT_USAGE}    usage or configuration: a bad argument, ECS_DETACH_* or HUAWEICLOUD_SDK_*
       setting, topic or store URL, seed or fault file
  {EXIT_CLOUD}    the cloud refused a call or could not be reached
  {EXIT_UNAVAILABLE}    a topic, the store or the history is unavailable
  {EXIT_RETRY}   `detach`: not now (throttled, busy, a limit reached); the same command may work later
  {EXIT_INTERRUPTED}  interrupted (Ctrl-C)"""
# pydantic models whose ValidationError is the user's input, not a bug.
_INPUT_MODELS = {"Settings": "ECS_DETACH_", "CloudCredentials": "HUAWEICLOUD_SDK_", "DetachRequest": ""}
PACKAGE_EXTRAS = tuple(sorted(EXTRA_MODULES))
# `ecs-detach package` options → the setting each stands for.
PACKAGE_URL_OPTIONS = {
    "--jobs-topic": "ECS_DETACH_JOBS_TOPIC",
    "--results-topic": "ECS_DETACH_RESULTS_TOPIC",
    "--delay-topic": "ECS_DETACH_DELAY_TOPIC",
    "--store": "ECS_DETACH_STORE",
    "--history": "ECS_DETACH_HISTORY",  # when not given: the setting in the environment
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command. Known errors become one line on stderr and an exit code (``EXIT_CODES``);
    anything else is a bug and propagates with its traceback."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        result: int = args.run(args)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except Exception as error:
        known = _known_error(error)
        if known is None:
            raise
        code, message = known
        print(f"ecs-detach: {message}", file=sys.stderr)
        return code
    return result


def _known_error(error: Exception) -> tuple[int, str] | None:
    """The exit code and a one-line message for an error the user can act on, else None."""
    from emulator import FaultConfigError, SeedError
    from handler.cloud import CloudError
    from handler.errors import ConfigError, EcsDetachError
    from handler.history import HistoryError
    from handler.store import StoreError
    from handler.support.log import redact_text
    from handler.topics import TopicError

    code: int
    if isinstance(error, ValidationError) and error.title in _INPUT_MODELS:
        return EXIT_USAGE, redact_text(_problems(error, _INPUT_MODELS[error.title]))
    if isinstance(error, (ConfigError, SeedError, FaultConfigError)):
        code = EXIT_USAGE  # before TopicError: a TopicConfigError is a bad topic URL
    elif isinstance(error, CloudError):
        code = EXIT_CLOUD
    elif isinstance(error, (TopicError, StoreError, HistoryError)):
        code = EXIT_UNAVAILABLE
    elif isinstance(error, EcsDetachError):
        code = EXIT_USAGE if isinstance(error, ValueError) else EXIT_FAILED  # InvalidInput: usage
    else:
        return None
    return code, redact_text(" ".join(str(error).split()) or type(error).__name__)


def _problems(error: ValidationError, env_prefix: str) -> str:
    """``NAME: reason; …`` without the input values (a setting may be a secret)."""
    parts = []
    for detail in error.errors(include_url=False, include_input=False):
        where = ".".join(str(part) for part in detail["loc"])
        name = env_prefix + where.upper() if env_prefix else where
        parts.append(f"{name}: {detail['msg']}" if where else detail["msg"])
    return "; ".join(parts)


def _add_package_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    package = commands.add_parser("package", help="build the FunctionGraph code package (a reproducible zip)")
    package.add_argument(
        "--python", choices=("3.10", "3.12"), default="3.12", help="FunctionGraph Python runtime"
    )
    package.add_argument("--out", type=Path, default=Path("dist"), help="folder for the zip (default: dist)")
    package.add_argument(
        "--extra",
        action="append",
        default=[],
        choices=PACKAGE_EXTRAS,
        help="add the client of a broker or store the deployment uses (repeatable)",
    )
    # The deployment's URLs (or only their scheme, e.g. rediss://) and triggers: the build adds
    # the extras they need, instead of a function that fails on every invocation.
    for option, setting in PACKAGE_URL_OPTIONS.items():
        default = f"; default: {setting} from the environment" if option == "--history" else ""
        what = f"the deployment's {setting} (adds its extra{default})"
        package.add_argument(option, metavar="URL", help=what)
    package.add_argument(
        "--webhook-routes",
        action="store_true",
        help="the function serves the webhook routes (an API Gateway trigger): adds the webhooks extra",
    )
    package.set_defaults(run=_package)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ecs-detach",
        description=__doc__,
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    emu = commands.add_parser("emulator", help="serve the cloud emulator (ECS API) over HTTP")
    emu.add_argument("--host", default="127.0.0.1")
    emu.add_argument("--port", type=_port, default=8081)
    emu.add_argument("--seed", type=_json_file, help="seed JSON file (default: the built-in seed)")
    emu.add_argument("--job-duration", type=_seconds, help="seconds a detach/attach job runs")
    emu.set_defaults(run=_emulator)

    up = commands.add_parser("up", help="emulator + webhook endpoint + poll worker, until Ctrl-C")
    up.add_argument("--host", default="127.0.0.1")
    up.add_argument("--port", type=_port, default=8080, help="webhook endpoint port")
    up.add_argument("--emulator-port", type=_port, default=8081)
    up.add_argument("--seed", type=_json_file)
    up.add_argument("--job-duration", type=_seconds)
    up.add_argument("--concurrency", type=_positive_int, default=2, help="poll worker threads")
    up.add_argument("--topics", help="broker or database URL for the jobs and results topics")
    up.set_defaults(run=_up)

    worker = commands.add_parser("worker", help="run the poll function (and the detach function) on topics")
    worker.add_argument("--jobs", help="jobs topic URL (default: ECS_DETACH_JOBS_TOPIC)")
    worker.add_argument("--results", help="results topic URL (default: ECS_DETACH_RESULTS_TOPIC)")
    worker.add_argument("--requests", help="also consume detach requests from this topic URL")
    worker.add_argument(
        "--notify", action="store_true", help="also send the results to ECS_DETACH_NOTIFY_CHANNELS (notify)"
    )
    worker.add_argument("--concurrency", type=_positive_int, default=4, help="threads per topic")
    worker.add_argument("--host", default="127.0.0.1", help="address of /healthz, /metrics and /console")
    worker.add_argument("--health-port", type=_port, default=8088)
    worker.set_defaults(run=_worker)

    demo = commands.add_parser("demo", help="run one detach end to end on the embedded defaults")
    demo.add_argument("--event", type=_json_file, default=DEMO_EVENT, help="detach request to send")
    demo.add_argument("--job-duration", type=_seconds, default=3.0)
    demo.add_argument("--timeout", type=_seconds, default=60.0, help="give up after this many seconds")
    demo.add_argument(
        "--approve",
        action="store_true",
        help="the detach waits for an approval: prints the link and the command",
    )
    demo.set_defaults(run=_demo)

    invoke = commands.add_parser("invoke", help="run an event file through the detach function locally")
    invoke.add_argument("file", type=_json_file, help="a sample event, e.g. events/alertmanager-firing.json")
    invoke.add_argument("--path", help="webhook route for a webhook payload (default: guessed from it)")
    invoke.add_argument("--follow", action="store_true", help="wait for the result of every job")
    invoke.add_argument("--job-duration", type=_seconds, default=3.0)
    invoke.add_argument("--timeout", type=_seconds, default=120.0)
    invoke.set_defaults(run=_invoke)

    _add_package_command(commands)
    _add_results(commands)
    _add_status(commands)
    _add_history(commands)
    _add_detach(commands)
    _add_approvals(commands)
    console = commands.add_parser(
        "console-password",
        help="print the hash of a web console password, for ECS_DETACH_CONSOLE_USERS",
        description="Reads the password from the terminal (or one line of stdin) and prints its scrypt hash.",
    )
    console.set_defaults(run=_console_password)
    return parser


def _console_password(_: argparse.Namespace) -> int:
    import getpass

    from handler.errors import ConfigError
    from handler.security import hash_password

    if sys.stdin.isatty():
        password = getpass.getpass("console password: ")
        if getpass.getpass("again: ") != password:
            raise ConfigError("the two passwords differ")
    else:
        password = sys.stdin.readline().rstrip("\n")
    if len(password) < 8:
        raise ConfigError("a console password needs at least 8 characters")
    print(hash_password(password))
    return EXIT_OK


def _add_approvals(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from handler.local.approvals import add_commands

    approvals = commands.add_parser(
        "approvals",
        help="list, show, approve, deny the requests waiting for an approval",
        description="ACTION: list [--all] (default), show ID, approve ID, deny ID, link ID --for NAME, sweep",
    )
    add_commands(approvals)
    approvals.set_defaults(run=_approvals)


def _approvals(args: argparse.Namespace) -> int:
    from handler.entry.runtime import open_desk
    from handler.local.approvals import run
    from handler.settings import CloudCredentials, Settings

    handle = open_desk(Settings(), CloudCredentials().credentials())
    try:
        return run(handle.desk, args)
    finally:
        handle.close()


def _add_detach(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    detach = commands.add_parser(
        "detach",
        help="detach one volume now, through the same policy, store and topics as the deployment",
        description=(
            "Every ECS_DETACH_* safety setting applies (policy, dry run, blast radius, circuit "
            "breaker), and the request meets the deployment's idempotency store: the same request "
            "sent by a webhook and by this command is detached once. Exit status: 0 done or "
            "started, 1 refused or failed, 75 try again later."
        ),
    )
    detach.add_argument("--server-id", required=True)
    disk = detach.add_mutually_exclusive_group(required=True)
    disk.add_argument("--volume-id")
    disk.add_argument("--device", help="the disk by its device on the server (vdb, /dev/vdb)")
    detach.add_argument("--project-id")
    detach.add_argument("--endpoint", help="ECS endpoint URL (default: from ECS_DETACH_REGION)")
    detach.add_argument("--force", action="store_true", help="delete_flag=1: force-detach a data disk")
    detach.add_argument("--dry-run", action="store_true", help="check everything, report, detach nothing")
    detach.add_argument("--idempotency-key", help="the request's key (default: project/server/disk)")
    detach.add_argument("--wait", action="store_true", help="follow the job until it ends")
    detach.set_defaults(run=_detach)


def _port(text: str) -> int:
    port = int(text)
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is not a port (0-65535; 0 picks a free one)")
    return port


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not at least 1")
    return value


def _seconds(text: str) -> float:
    value = float(text)
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text} is not a number of seconds >= 0")
    return value


def _json_file(text: str) -> Path:
    """A readable file of JSON (checked here, so a typo is a usage error, not a traceback)."""
    path = Path(text)
    try:
        json.loads(path.read_text("utf-8"))
    except OSError as error:
        raise argparse.ArgumentTypeError(f"cannot read {text}: {error.strerror or error}") from None
    except ValueError as error:  # not UTF-8, or not JSON
        raise argparse.ArgumentTypeError(f"{text} is not JSON: {error}") from None
    return path


def _add_status(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    status = commands.add_parser(
        "status",
        help="what became of one request: its record, its job and its result, from the deployment's store",
    )
    status.add_argument(
        "reference", metavar="KEY|JOB_ID", help="the request's idempotency key, or its job id"
    )
    status.add_argument("--json", action="store_true", help="one JSON object")
    status.add_argument(
        "--no-cloud", action="store_true", help="do not ask the cloud for a job still running"
    )
    status.set_defaults(run=_status)


def _add_history(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from handler.history import OUTCOMES

    history = commands.add_parser(
        "history",
        help="the requests the audit history keeps (ECS_DETACH_HISTORY), newest first, with their trails",
    )
    history.add_argument("--server", metavar="SERVER_ID", help="only requests for this server")
    history.add_argument("--key", help="only requests with this idempotency key")
    history.add_argument("--outcome", choices=OUTCOMES, help="only requests that ended so (or are so now)")
    history.add_argument("--since", help="only requests started since: 10m, 2h, 1d or an ISO 8601 time")
    history.add_argument("--limit", type=_positive_int, default=20, help="at most this many (default 20)")
    history.add_argument("--json", action="store_true", help="one JSON object")
    history.set_defaults(run=_history)


def _add_results(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    results = commands.add_parser(
        "results", help="print the result events of the results topic, leaving them to its consumers"
    )
    results.add_argument("--topic", help="results topic URL (default: ECS_DETACH_RESULTS_TOPIC)")
    results.add_argument("--follow", "-f", action="store_true", help="go on printing new ones until Ctrl-C")
    results.add_argument("--json", action="store_true", help="each event as it was published, one a line")
    results.add_argument("--since", help="only those published since: 10m, 2h, 1d or an ISO 8601 time")
    results.add_argument("--schema", action="store_true", help="print the JSON Schema of a result event")
    results.set_defaults(run=_results)


def _emulator_config(job_duration: float | None) -> EmulatorConfig:
    """The emulator's settings: faults from ``ECS_EMULATOR_FAULTS`` (JSON, see emulator/faults.py)."""
    from emulator import EmulatorConfig, faults_from_env

    config = EmulatorConfig(faults=faults_from_env())
    return config if job_duration is None else config.updated({"job_duration_s": job_duration})


def _emulator(args: argparse.Namespace) -> int:
    import uvicorn

    from emulator import EcsBackend, create_app, credential_from_env, load_seed

    config = _emulator_config(args.job_duration)
    backend = EcsBackend.from_seed(load_seed(args.seed), credentials=[credential_from_env()], config=config)
    print(f"ECS emulator on http://{args.host}:{args.port}")
    for line in backend.describe_credentials():
        print(f"  accepts {line}")
    uvicorn.run(create_app(backend), host=args.host, port=args.port, log_level="warning")
    return EXIT_OK


def _wait_for_signal() -> None:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while not stop.wait(1.0):
            pass
    except KeyboardInterrupt:
        pass


def _up(args: argparse.Namespace) -> int:
    from rich.console import Console

    from handler.local._console import show_events
    from handler.local.local import LocalStack, StackOptions
    from handler.settings import Settings
    from handler.support.log import redact_url

    console = Console()
    config = _emulator_config(args.job_duration)
    options = StackOptions(
        host=args.host,
        http_port=args.port,
        emulator_port=args.emulator_port,
        seed=args.seed,
        emulator_config=config,
        concurrency=args.concurrency,
        token_file=Path(".ecs-detach/webhook-token"),
        console_password_file=Path(".ecs-detach/console-password"),
    )
    show_events(console)
    settings = Settings()
    options.notify = bool(settings.notify_channels)  # the results go to the chosen channels too
    if args.topics:
        from handler.topics import topic_url

        settings = settings.model_copy(
            update={
                "jobs_topic": topic_url(args.topics, "jobs"),
                "results_topic": topic_url(args.topics, "results"),
            }
        )
    with LocalStack(settings, options) as stack:
        if stack.emulator is not None and stack.emulator_url:
            console.print(f"ECS emulator      {stack.emulator_url}")
            for line in stack.emulator.describe_credentials():
                console.print(f"  accepts {line}")
        console.print(f"webhook endpoint  {stack.webhook_url}/  (POST a detach request)")
        if stack.webhook_token is not None:
            console.print(
                f"webhook token     in {options.token_file} (generated; send 'Authorization: Bearer <token>')"
            )
        login = (
            f"user {stack.console_user}, password in {options.console_password_file} (generated)"
            if stack.console_user
            else "ECS_DETACH_CONSOLE_USERS"
        )
        console.print(f"web console       {stack.webhook_url}/console  ({login})")
        console.print(f"jobs topic        {redact_url(stack.settings.jobs_topic)}")
        console.print(f"results topic     {redact_url(stack.settings.results_topic)}")
        history = stack.settings.history_url()
        shown = f"{redact_url(history)}  (ecs-detach history)" if history else "off"
        console.print(f"audit history     {shown}")
        console.print("Ctrl-C to stop")
        _wait_for_signal()
    return EXIT_OK


def _demo(args: argparse.Namespace) -> int:
    import httpx
    from rich.console import Console
    from rich.markup import escape

    from emulator import EmulatorConfig
    from handler.core.followups import DetachResult
    from handler.core.models import EVENT_APPROVAL_REQUESTED, event_model
    from handler.local._console import show_events
    from handler.local.local import LocalStack, StackOptions
    from handler.settings import Settings

    console = Console()
    event = json.loads(args.event.read_text())
    show_events(console)
    with TemporaryDirectory(prefix="ecs-detach-demo-") as tmp:
        db = f"sqlite:///{tmp}/topics.db"
        settings = Settings(
            jobs_topic=f"{db}?topic=jobs",
            results_topic=f"{db}?topic=results",
            store=f"sqlite:///{tmp}/store.db",
        )
        if args.approve:  # every detach waits for a person, who has the demo's timeout to decide
            settings = settings.model_copy(
                update={
                    "approval_mode": "always",
                    "approval_expiry_s": args.timeout,
                    "approval_link_secret": SecretStr(secrets.token_urlsafe(32)),
                }
            )
        options = StackOptions(
            http_port=0,
            emulator_config=EmulatorConfig(job_init_s=0.5, job_duration_s=args.job_duration),
        )
        with LocalStack(settings, options) as stack:
            console.print(
                f"[bold]ecs-detach demo[/]: emulator {stack.emulator_url}, webhook {stack.webhook_url}"
            )
            console.print(f"sending {args.event.name} to the webhook: {json.dumps(event)}")
            answer = httpx.post(f"{stack.webhook_url}/", json=event, headers=_auth(stack), timeout=30)
            if answer.status_code != 202:
                console.print(f"[red]webhook answered HTTP {answer.status_code}:[/] {escape(answer.text)}")
                return EXIT_FAILED
            (record,) = answer.json()["records"]
            if record["status"] == "pending_approval":
                _demo_pause(stack, str(record["approval_id"]), console)
                job_id = None  # not known until someone approves
            else:
                (job_id,) = answer.json()["job_ids"]
                console.print(f"webhook answered HTTP 202: job {job_id} is being followed")
            deadline = time.monotonic() + args.timeout
            results = stack.runtime.results
            while time.monotonic() < deadline:
                for delivery in results.receive(1, wait=0.5):
                    results.ack(delivery)
                    if json.loads(delivery.body).get("type") == EVENT_APPROVAL_REQUESTED:
                        continue  # not a result: a request waiting for a person
                    result = event_model(DetachResult).model_validate_json(delivery.body)
                    if job_id is not None and result.data.job_id != job_id:
                        continue
                    console.print(f"result event [bold]{result.type}[/] ({result.id}):")
                    for key, value in result.data.model_dump(mode="json", exclude_none=True).items():
                        console.print(f"  {key:<16} {value}", highlight=False)
                    if settings.history_url() is not None:
                        console.print("its whole trail: ecs-detach history --limit 1")
                    return EXIT_OK if result.data.outcome.value == "succeeded" else EXIT_FAILED
            console.print(f"[red]no result within {args.timeout} s[/]")
            return EXIT_FAILED


def _demo_pause(stack: LocalStack, approval_id: str, console: Console) -> None:
    """The demo's request waits for a person: how to decide it (the link, or the CLI)."""
    desk = stack.runtime.detach.approvals
    assert desk is not None  # the demo turned approvals on
    settings = stack.settings
    env = " ".join(
        f"{name}={value}"
        for name, value in (
            ("ECS_DETACH_STORE", settings.store),
            ("ECS_DETACH_JOBS_TOPIC", settings.jobs_topic),
            ("ECS_DETACH_RESULTS_TOPIC", settings.results_topic),
            ("ECS_DETACH_APPROVAL_MODE", "always"),
        )
    )
    console.print(f"webhook answered HTTP 202: pending_approval, approval {approval_id}", highlight=False)
    console.print("[bold]waiting for an approval[/]; decide in a browser:", highlight=False)
    print(f"  {stack.webhook_url}{desk.link(approval_id, 'demo-approver')}", flush=True)
    console.print("or at a terminal:", highlight=False)
    print(f"  {env} ecs-detach approvals approve {approval_id}", flush=True)


def guess_route(event: object) -> str | None:
    """The webhook route for a webhook payload; None for a FunctionGraph trigger or a direct
    invocation (a detach request or CloudEvent), which go through the FunctionGraph handler."""
    if not isinstance(event, dict):
        return None
    if set(event) == {"headers", "body"}:
        return "/"  # an HTTP request sample (binary-mode CloudEvent)
    routes = (
        ("/alertmanager", "groupKey" in event and event.get("version") == "4"),
        ("/grafana", "alerts" in event and "orgId" in event),
        ("/smn", "signing_cert_url" in event or "subscribe_url" in event),
        ("/tickets/jira", "webhookEvent" in event),
        ("/tickets/servicenow", "sys_id" in event),
    )
    return next((route for route, matches in routes if matches), None)


def _invoke(args: argparse.Namespace) -> int:
    import httpx
    from rich.console import Console

    from emulator import EmulatorConfig
    from handler.entry.functiongraph import RetryLater, handle_event
    from handler.local._console import show_events
    from handler.local.local import LocalStack, StackOptions
    from handler.settings import Settings

    console = Console()
    event = json.loads(args.file.read_text())
    route = args.path or guess_route(event)
    show_events(console)
    with TemporaryDirectory(prefix="ecs-detach-invoke-") as tmp:
        db = f"sqlite:///{tmp}/topics.db"
        # The samples' SMN signatures are placeholders: SMN messages are not verified here.
        settings = Settings(
            jobs_topic=f"{db}?topic=jobs",
            results_topic=f"{db}?topic=results",
            store=f"sqlite:///{tmp}/store.db",
            webhook_verify_smn=False,
        )
        options = StackOptions(
            http_port=0, emulator_config=EmulatorConfig(job_init_s=0.5, job_duration_s=args.job_duration)
        )
        with LocalStack(settings, options) as stack:
            if route is None:
                console.print(f"{args.file.name} → the FunctionGraph handler")
                try:
                    reply = handle_event(stack.runtime, event)
                except RetryLater as error:
                    console.print(f"[yellow]the platform would retry this batch:[/] {error}")
                    return EXIT_FAILED
            else:
                console.print(f"{args.file.name} → POST {route}")
                sample = event if set(event) == {"headers", "body"} else {"headers": {}, "body": event}
                answer = httpx.post(
                    f"{stack.webhook_url}{route}",
                    content=json.dumps(sample["body"]).encode(),
                    headers={"Content-Type": "application/json", **_auth(stack), **sample["headers"]},
                    timeout=30,
                )
                reply = {"status_code": answer.status_code, **answer.json()}
            console.print_json(data=reply)
            ok = _reply_ok(reply)
            if not args.follow:
                return EXIT_OK if ok else EXIT_FAILED
            return EXIT_OK if _follow(stack, _job_ids(reply), args.timeout, console) and ok else EXIT_FAILED


def _auth(stack: LocalStack) -> dict[str, str]:
    return {"Authorization": f"Bearer {stack.webhook_token}"} if stack.webhook_token else {}


def _job_ids(reply: dict[str, object]) -> list[str]:
    if isinstance(reply.get("body"), str):  # an APIG response: the report is in the body
        return _job_ids(json.loads(str(reply["body"])))
    ids = reply.get("job_ids")
    return [str(i) for i in ids] if isinstance(ids, list) else []


def _reply_ok(reply: dict[str, object]) -> bool:
    """Every record ended well (accepted, already detached, or nothing to do)."""
    if isinstance(reply.get("body"), str):  # an APIG response: the report is in the body
        return _reply_ok(json.loads(str(reply["body"])))
    records = reply.get("records")
    if not isinstance(records, list):
        return reply.get("confirmed") is True
    return all(
        r.get("status") in ("accepted", "duplicate", "already_detached", "dry_run", "ignored")
        for r in records
    )


def _follow(stack: LocalStack, job_ids: list[str], timeout: float, console: Console) -> bool:
    """Wait for the result of every job; True when all ended detached."""
    from handler.core.followups import DetachResult
    from handler.core.models import EVENT_APPROVAL_REQUESTED, Outcome, event_model

    waiting, all_ok = set(job_ids), True
    deadline = time.monotonic() + timeout
    results = stack.runtime.results
    while waiting and time.monotonic() < deadline:
        for delivery in results.receive(1, wait=0.5):
            results.ack(delivery)
            if json.loads(delivery.body).get("type") == EVENT_APPROVAL_REQUESTED:
                continue  # not a result: a request waiting for a person
            result = event_model(DetachResult).model_validate_json(delivery.body).data
            waiting.discard(result.job_id or "")
            all_ok &= result.outcome in (Outcome.SUCCEEDED, Outcome.ALREADY_DETACHED)
    if waiting:
        console.print(f"[red]no result within {timeout} s for job(s) {', '.join(sorted(waiting))}[/]")
    return all_ok and not waiting


def _package(args: argparse.Namespace) -> int:
    from handler.local.package import PackageError, build_package, format_report

    try:
        urls = [
            (option, value)
            for option in PACKAGE_URL_OPTIONS
            if (value := getattr(args, option.removeprefix("--").replace("-", "_")))
        ]
        # The history is the one URL a person running the build often has set already (it is
        # also what `ecs-detach history` reads): without --history, the setting counts.
        setting = PACKAGE_URL_OPTIONS["--history"]
        if args.history is None and os.environ.get(setting):
            urls.append((setting, os.environ[setting]))
        report = build_package(
            args.python, args.out, extras=args.extra, urls=urls, webhook_routes=args.webhook_routes
        )
    except PackageError as error:
        print(f"ecs-detach package: {error}", file=sys.stderr)
        return EXIT_FAILED
    print(format_report(report))
    return EXIT_OK


def _worker(args: argparse.Namespace) -> int:
    from handler.entry.runtime import build_runtime
    from handler.errors import ConfigError
    from handler.local.service import WorkerService
    from handler.settings import CloudCredentials, Settings
    from handler.support.log import configure, log_event
    from handler.topics import open_topic

    settings = Settings()
    update = {"jobs_topic": args.jobs, "results_topic": args.results}
    settings = settings.model_copy(update={k: v for k, v in update.items() if v})
    configure(settings.log_level)
    credentials = CloudCredentials().credentials()
    endpoint = settings.ecs_url()
    if credentials is None and endpoint is not None and _is_loopback(endpoint):
        credentials = _demo_credentials()
    if credentials is None:
        raise ConfigError("set HUAWEICLOUD_SDK_AK and HUAWEICLOUD_SDK_SK")
    runtime = build_runtime(settings, credentials)
    requests = None
    if args.requests:
        requests = open_topic(
            args.requests,
            default_name="requests",
            visibility_timeout=settings.visibility_timeout_s,
            max_deliveries=settings.max_deliveries,
        )
    if args.notify and not settings.notify_channels:
        raise ConfigError("--notify needs ECS_DETACH_NOTIFY_CHANNELS")
    service = WorkerService(
        runtime,
        concurrency=args.concurrency,
        requests=requests,
        notify=args.notify,
        host=args.host,
        health_port=args.health_port,
    )
    service.start()
    log_event("worker.started", health=service.url, concurrency=args.concurrency, requests=bool(requests))
    try:
        _wait_for_signal()
    finally:
        log_event("worker.draining")
        service.stop()
        runtime.close()
        if requests is not None:
            requests.close()
        log_event("worker.stopped")
    return EXIT_OK


def _demo_credentials() -> Credentials:
    from emulator import DEMO_CREDENTIAL
    from handler.cloud import Credentials

    return Credentials(
        access_key=DEMO_CREDENTIAL.access_key,
        secret_key=SecretStr(DEMO_CREDENTIAL.secret_key),
        project_id=DEMO_CREDENTIAL.project_id,
    )


def _is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _results(args: argparse.Namespace) -> int:
    from handler.local.results import result_event_schema, run
    from handler.settings import Settings

    if args.schema:
        print(result_event_schema(), end="")
        return EXIT_OK
    url = args.topic or Settings().results_topic
    return run(url, follow=args.follow, as_json=args.json, since=args.since)


def _status(args: argparse.Namespace) -> int:
    from handler.cloud import EcsClient
    from handler.local.status import find, look_up_job, show
    from handler.settings import CloudCredentials, Settings
    from handler.store import open_store

    settings = Settings()
    store = open_store(settings.store)
    try:
        status = find(store, args.reference)
    finally:
        store.close()
    history_url = settings.history_url()
    if history_url is not None:
        _status_trail(status, history_url, args.reference)
    credentials = CloudCredentials().credentials()
    endpoint = settings.ecs_url()
    if not args.no_cloud and credentials is not None and endpoint is not None:
        with EcsClient(endpoint, credentials) as ecs:
            look_up_job(status, ecs, credentials.project_id)
    show(status, sys.stdout, as_json=args.json)
    return EXIT_OK if status.known else EXIT_FAILED


def _status_trail(status: Status, url: str, reference: str) -> None:
    """The request's trail from the history; a history that cannot be read is noted, not fatal
    (the store's answer stands on its own)."""
    from handler.history import HistoryError, open_history
    from handler.local.status import add_trail

    try:
        history = open_history(url)
        try:
            add_trail(status, history, reference)
        finally:
            history.close()
    except HistoryError as error:
        status.history_error = str(error)


def _history(args: argparse.Namespace) -> int:
    from handler.errors import ConfigError
    from handler.history import open_history
    from handler.local.history import query, show
    from handler.settings import Settings

    url = Settings().history_url()
    if url is None:
        raise ConfigError("no history is kept: ECS_DETACH_HISTORY is off")
    wanted = query(server=args.server, key=args.key, outcome=args.outcome, since=args.since, limit=args.limit)
    history = open_history(url)
    try:
        trails = history.query(wanted)
    finally:
        history.close()
    show(trails, sys.stdout, as_json=args.json)
    return EXIT_OK


def _detach(args: argparse.Namespace) -> int:
    from rich.console import Console

    from handler.core.models import DetachRequest
    from handler.entry.runtime import build_runtime
    from handler.errors import ConfigError
    from handler.local._console import show_events
    from handler.local.approvals import default_identity
    from handler.local.local import LocalStack, StackOptions
    from handler.settings import CloudCredentials, Settings

    console = Console()
    show_events(console)
    settings = Settings()
    if args.endpoint:
        settings = settings.model_copy(update={"ecs_endpoint": args.endpoint})
    if args.dry_run:
        settings = settings.model_copy(update={"dry_run": True})
    credentials = CloudCredentials().credentials()
    request = DetachRequest(
        server_id=args.server_id,
        volume_id=args.volume_id,
        device=args.device,
        project_id=args.project_id,
        delete_flag=1 if args.force else 0,
        idempotency_key=args.idempotency_key,
        origin={"source": "cli", "requested_by": default_identity()},
    )
    stack: LocalStack | None = None
    if settings.ecs_url() is None and credentials is None:
        console.print("[yellow]no credentials and no endpoint configured: using a local emulator[/]")
        stack = LocalStack(settings, StackOptions(http_port=0, concurrency=1)).start()
        settings = settings.model_copy(update={"ecs_endpoint": stack.emulator_url})
    try:
        endpoint = settings.ecs_url()
        if credentials is None:
            if endpoint is None or not _is_loopback(endpoint):
                raise ConfigError("set HUAWEICLOUD_SDK_AK and HUAWEICLOUD_SDK_SK to call a real cloud")
            credentials = _demo_credentials()
        runtime = build_runtime(settings, credentials)
        try:
            return _detach_now(runtime, request, wait=args.wait, console=console)
        finally:
            runtime.close()
    finally:
        if stack is not None:
            stack.stop()


def _detach_now(runtime: Runtime, request: DetachRequest, *, wait: bool, console: Console) -> int:
    """One request through the deployment's detach function; with ``wait``, its job followed here."""
    from handler.core.models import Outcome
    from handler.core.outcomes import DetachStatus, record_http_status

    outcome = runtime.detach(request)
    line = f"{outcome.status.value}" + (f" ({outcome.original})" if outcome.original else "")
    if outcome.job_id:
        line += f": job {outcome.job_id}"
    if outcome.reason:
        line += f" — {outcome.reason}"
    console.print(line, highlight=False, markup=False)
    if outcome.status is DetachStatus.RETRY:
        return EXIT_RETRY
    if record_http_status(outcome.status, outcome.original) >= 400:
        return EXIT_FAILED
    if outcome.status is not DetachStatus.ACCEPTED or outcome.accepted is None or not wait:
        return EXIT_OK
    message = outcome.accepted
    while True:
        step = runtime.poll(message)
        if step.result is not None:
            ok = step.result.outcome in (Outcome.SUCCEEDED, Outcome.ALREADY_DETACHED)
            return EXIT_OK if ok else EXIT_FAILED
        assert step.next is not None  # the function just accepted the job: the event is trusted
        # A person is waiting at a terminal: sleeping is right here. A poll worker (the local
        # stack's, or a deployment's) may report the job at the same moment: then the wait is
        # for its report, not for its claim to lapse.
        time.sleep(min(step.delay_s, _RECHECK_S) if step.contended else step.delay_s)
        message = step.next


if __name__ == "__main__":
    sys.exit(main())
