"""The whole flow in one process on loopback: emulator, webhook endpoint, poll worker, relay.

Used by ``ecs-detach up`` and ``ecs-detach demo``. With no ECS endpoint configured the stack
starts the emulator and signs with the credentials it accepts; with one (region or endpoint
plus ``HUAWEICLOUD_SDK_*`` credentials) it runs against that cloud instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from pydantic import SecretStr

from emulator import EcsBackend, EmulatorConfig, create_app, credential_from_env, load_seed
from handler.cloud import Credentials
from handler.entry.runtime import Runtime, build_runtime
from handler.errors import ConfigError
from handler.local._serve import BackgroundServer, ServerLimits
from handler.local.http import runtime_app
from handler.local.worker import RelayWorker, Worker, forwarders, notify_event, poll_job, relay_worker
from handler.security import ConsoleUser, generate_local_secret, hash_password
from handler.settings import CloudCredentials, Settings
from handler.topics.push import PushTopic


@dataclass
class StackOptions:
    host: str = "127.0.0.1"
    http_port: int = 8080
    emulator_port: int = 0  # 0: any free port
    seed: Path | None = None
    emulator_config: EmulatorConfig = field(default_factory=EmulatorConfig)
    concurrency: int = 2
    token_file: Path | None = None  # where a generated webhook token is written for other programs
    # With no console user configured: a generated one, "admin", whose password is written here.
    console_password_file: Path | None = None
    notify: bool = False  # send the results topic's events to ECS_DETACH_NOTIFY_CHANNELS


class LocalStack:
    def __init__(self, settings: Settings, options: StackOptions) -> None:
        self.settings = settings
        self.options = options
        self.emulator: EcsBackend | None = None
        self.emulator_url: str | None = None
        self.webhook_url = ""
        self.webhook_token: str | None = None
        self.console_user: str | None = None  # the generated console user, when there is one
        self._servers: list[BackgroundServer] = []
        self._workers: list[Worker | RelayWorker] = []
        self._runtime: Runtime | None = None

    @property
    def runtime(self) -> Runtime:
        if self._runtime is None:
            raise RuntimeError("the stack is not started")
        return self._runtime

    def start(self) -> LocalStack:
        try:
            settings, credentials = self._cloud()
            settings = self._local_console_user(self._local_webhook_secret(settings))
            self._runtime = build_runtime(settings, credentials)
            app = runtime_app(self._runtime)
            http = self._serve(app, self.options.http_port, ServerLimits.from_settings(settings))
            self.webhook_url = http.url
            budget_s = settings.worker_budget_s()
            self._workers = [relay_worker(self._runtime)]
            self._workers += forwarders(self._runtime, budget_s=budget_s)
            if not isinstance(self._runtime.jobs, PushTopic):  # pushed jobs arrive at the webhook
                poller = Worker(
                    self._runtime.jobs,
                    poll_job(self._runtime),
                    concurrency=self.options.concurrency,
                    budget_s=budget_s,
                )
                self._workers.append(poller)
            if self.options.notify:
                notifier = Worker(self._runtime.results, notify_event(self._runtime, self._runtime.results))
                self._workers.append(notifier)
            for worker in self._workers:
                worker.start()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for worker in self._workers:
            worker.stop()
        for server in reversed(self._servers):
            server.stop()
        if self._runtime is not None:
            self._runtime.close()

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def _cloud(self) -> tuple[Settings, Credentials]:
        if self.settings.ecs_url() is not None:
            credentials = CloudCredentials().credentials()
            if credentials is None:
                raise ConfigError("an ECS endpoint is configured but HUAWEICLOUD_SDK_AK/SK are not set")
            return self.settings, credentials
        accepted = credential_from_env()
        self.emulator = EcsBackend.from_seed(
            load_seed(self.options.seed), credentials=[accepted], config=self.options.emulator_config
        )
        server = self._serve(create_app(self.emulator), self.options.emulator_port)
        self.emulator_url = server.url
        credentials = Credentials(
            access_key=accepted.access_key,
            secret_key=SecretStr(accepted.secret_key),
            project_id=accepted.project_id,
            security_token=SecretStr(accepted.security_token) if accepted.security_token else None,
        )
        return self.settings.model_copy(update={"ecs_endpoint": server.url}), credentials

    def _local_webhook_secret(self, settings: Settings) -> Settings:
        """With no webhook authentication configured, a generated bearer token (secure by
        default, also on a laptop): kept in ``webhook_token`` and, for other programs, in
        ``token_file`` (mode 0600). Never printed."""
        auth = settings.webhook_auth()
        configured = auth.bearer_tokens or auth.basic_credentials or auth.hmac_secrets
        if auth.disabled or configured or auth.standard_webhooks_secrets:
            return settings
        self.webhook_token = generate_local_secret()
        if self.options.token_file is not None:
            self.options.token_file.parent.mkdir(parents=True, exist_ok=True)
            self.options.token_file.touch(mode=0o600)
            self.options.token_file.write_text(self.webhook_token + "\n")
        return settings.model_copy(update={"webhook_bearer_tokens": [SecretStr(self.webhook_token)]})

    def _local_console_user(self, settings: Settings) -> Settings:
        """With no console user configured (and ``console_password_file`` given): a user
        ``admin`` who may approve, with a generated password kept (mode 0600) in that file.
        Never printed."""
        path = self.options.console_password_file
        if path is None or settings.console_users:
            return settings
        password = generate_local_secret()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(password + "\n")
        self.console_user = "admin"
        user = ConsoleUser(name=self.console_user, password_hash=hash_password(password), approve=True)
        return settings.model_copy(update={"console_users": [user]})

    def _serve(self, app: object, port: int, limits: ServerLimits | None = None) -> BackgroundServer:
        server = BackgroundServer(app, host=self.options.host, port=port, limits=limits).start()
        self._servers.append(server)
        return server
