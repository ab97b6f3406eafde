"""AK/SK credentials, permanent or temporary (agency) ones with a security token."""

from pydantic import BaseModel, ConfigDict, Field, SecretStr


class Credentials(BaseModel):
    """What signs a request. Secrets are ``SecretStr``: they print as ``**********``."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    access_key: str = Field(min_length=1)
    secret_key: SecretStr
    project_id: str | None = None
    security_token: SecretStr | None = None
