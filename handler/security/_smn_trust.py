"""The certificates SMN signing certificates are verified against, by default.

- The CA bundle ``certifi`` ships (Mozilla's), which httpx already depends on.
- The HTTP(S) message signing certificate Huawei Cloud publishes for SMN: user guide page
  smn_ug_a9000, "HTTP/HTTPS Signing Certificate Verification" (support.huaweicloud.com,
  ``intl/en-us/usermanual-smn/`` and the Chinese ``usermanual-smn/`` page, both updated
  2026-06-17). ``CN=Huawei-Cloud-SMN-Meter,O=Huawei,C=CN``, issued by ``CN=Huawei Cloud CA,
  O=Huawei,C=CN`` (Huawei's own PKI, in no public bundle), serial ``0x76fdb7bbfbd4d737``, valid
  2020-09-09 to 2030-09-07, SHA-256 fingerprint ``85ff15cd…cad13817``. Huawei advises using this
  published certificate rather than trusting whatever ``signing_cert_url`` serves; trusting it as
  an anchor pins exactly that certificate.

How far that is checked (docs/security.md, "The pinned SMN certificate"): the base64 below is
the Chinese page's text character for character, and the English page's as far as the stored
copy reaches; the CA certificate the page says it also publishes was not in any copy available,
so it is not pinned. ``ECS_DETACH_SMN_CERT_CA_FILE`` replaces both anchors (a certificate Huawei
rotates, other clouds' SMN, the emulator); a file that cannot be read or holds no PEM
certificate stops the settings with that reason.
"""

from __future__ import annotations

import warnings
from functools import cache
from pathlib import Path

import certifi
from cryptography import x509
from cryptography.utils import CryptographyDeprecationWarning

HUAWEI_SMN_SIGNING_CERT = b"""\
-----BEGIN CERTIFICATE-----
MIIDWTCCAkGgAwIBAgIIdv23u/vU1zcwDQYJKoZIhvcNAQELBQAwODELMAkGA1UE
BhMCQ04xDzANBgNVBAoTBkh1YXdlaTEYMBYGA1UEAxMPSHVhd2VpIENsb3VkIENB
MB4XDTIwMDkwOTA2NDAwNFoXDTMwMDkwNzA2NDAwNFowPzELMAkGA1UEBhMCQ04x
DzANBgNVBAoTBkh1YXdlaTEfMB0GA1UEAxMWSHVhd2VpLUNsb3VkLVNNTi1NZXRl
cjCCASIwDQYJKoZIhvcNAQEBBQADggEPADCCAQoCggEBAOunOsnncSp53UP4xetr
A4tHiRj6kldrmyx5gYB/zbGblfwHDvh7Pw9633iq0y1ZwfE0yVu7mNAwdAAo1u7X
lvO+ZLJkBsOjg2BU/BD7VfsVV7YJ51u467G0D7U8Qz8gIqsTbU1iT3koyNuUPmKe
9J0bhKdR8wy6xuROWh/5Ec0y2n28FqIDXP91udkYgrXhasmejLwx4saRFaVl6nPE
MOOWyrFDtU5bKWj8wZUwhRAuIeUVxu4TRxLu+zyuXk1Y4mG1RCDpIf5XsgDeitMr
TsrdjuxEsgRTDCVl6WVEojzBv/AccLoBrbHFa+Pppp8/RDvDhuQrxizp+K4zSunQ
iukCAwEAAaNgMF4wHwYDVR0jBBgwFoAU9JLn3OgwPepGkfxQ4xg4L8UVUSswDAYD
VR0TBAUwAwEBADAOBgNVHQ8BAf8EBAMCA6gwHQYDVR0lBBYwFAYIKwYBBQUHAwEG
CCsGAQUFBwMCMA0GCSqGSIb3DQEBCwUAA4IBAQALQt+Fy2yOs/Z7PL0xq2g8lWx0
7zNaUcYYdFcZeiwfuLSTOeFJiPFKyAsN7Bl7wIjFT8ZsHDhBJE5bkYnjdYxO1jnq
xCeNDErlP0nD7j+p5YZMtMWv/vPod3EBQ4z5ThNvAljeSx9iQKL0HL7lxOJ4ssId
zsFlSZCdkRbNQb4Vb8r72J0Yu8hiSUTvvIMERTBzYtTFUTTmJz4oX5HvBj4KEycF
RWjrNp6g82RRcSEPQl8XeoqOAiCSr1ddsTLQDqWgKWA68Tc64LPMxG3BC2cl0GrK
Ilqom+ZuaR05jslMr7jSCQwUcLIk0Loxv2YYrE9Yqju/v2s8LKXwiLVsxxTU
-----END CERTIFICATE-----
"""


def load_certificates(pem: bytes) -> list[x509.Certificate]:
    """Every certificate of a PEM bundle that loads cleanly; one that is malformed, or that
    cryptography warns it will refuse (a CA of the bundle has a negative serial), is skipped."""
    found = []
    for block in pem.split(b"-----END CERTIFICATE-----")[:-1]:
        with warnings.catch_warnings():
            warnings.simplefilter("error", CryptographyDeprecationWarning)
            try:
                found.append(x509.load_pem_x509_certificate(block + b"-----END CERTIFICATE-----\n"))
            except (ValueError, CryptographyDeprecationWarning):
                continue
    return found


@cache
def default_anchors() -> tuple[x509.Certificate, ...]:
    bundle = Path(certifi.where()).read_bytes()
    return (*load_certificates(HUAWEI_SMN_SIGNING_CERT), *load_certificates(bundle))
