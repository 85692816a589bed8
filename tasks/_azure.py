"""Azure Blob Storage plumbing: the client from the step's credentials, one-line errors.

**Credentials**, first found wins (the step's ``env`` is read before the process's, for
every variable named here):

1. the step's ``connection_string``;
2. the step's ``account_url`` with ``AZURE_STORAGE_KEY`` (the account key; the account
   name is read from the URL), ``AZURE_STORAGE_SAS_TOKEN``, or else Azure AD through
   ``azure-identity``'s ``DefaultAzureCredential`` (environment service principal,
   workload identity, managed identity, ``az login``);
3. ``AZURE_STORAGE_CONNECTION_STRING``;
4. ``AZURE_STORAGE_ACCOUNT`` (the account URL is ``https://ACCOUNT.blob.core.windows.net``)
   with the credentials of 2.

The SDK (``azure-storage-blob``, the extra ``runbook[azure]``) is imported only here, only
when a step runs. One client per process and credentials, shared by the step's threads
(the SDK's clients are thread-safe). Retries: 3, after about 2, 4 and 8 s (1 for a refused
connection); connecting gives up after 10 s. No credential ever appears in a message: SAS
signatures are cut out.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from runner.errors import HandlerError
from tasks._cloud import env_value, one_line, sdk

EXTRA = "azure"
CONNECT_TIMEOUT = 10
READ_TIMEOUT = 60
BLOCK = 8 * 1024 * 1024  # blobs up to this size go in one request; bigger ones in blocks of it

NO_CREDENTIALS = (
    "no Azure Storage credentials: give connection_string (or set AZURE_STORAGE_CONNECTION_STRING), "
    "or account_url (or AZURE_STORAGE_ACCOUNT) with AZURE_STORAGE_KEY, AZURE_STORAGE_SAS_TOKEN or an "
    "Azure AD login"
)


class AzureError(HandlerError):
    """A failure talking to Azure Storage (as opposed to reading the files)."""


@dataclass(frozen=True)
class Credentials:
    """Which client to make; ``kind`` is connection_string, key, sas or identity."""

    kind: str
    account_url: str = ""
    secret: str = ""

    def describe(self) -> str:
        return self.account_url or "the connection string's account"


def credentials(args: dict[str, Any], ctx: Any) -> Credentials:
    if args.get("connection_string"):
        return Credentials("connection_string", secret=str(args["connection_string"]))
    url = args.get("account_url")
    if not url:
        from_env = env_value(ctx, "AZURE_STORAGE_CONNECTION_STRING")
        if from_env:
            return Credentials("connection_string", secret=from_env)
        account = env_value(ctx, "AZURE_STORAGE_ACCOUNT")
        if not account:
            raise AzureError(NO_CREDENTIALS)
        url = f"https://{account}.blob.core.windows.net"
    url = str(url).rstrip("/")
    if key := env_value(ctx, "AZURE_STORAGE_KEY"):
        return Credentials("key", url, key)
    if sas := env_value(ctx, "AZURE_STORAGE_SAS_TOKEN"):
        return Credentials("sas", url, sas.lstrip("?"))
    return Credentials("identity", url)


_clients: dict[tuple[Credentials, int], Any] = {}
_lock = threading.Lock()


def service_client(creds: Credentials, pool: int) -> Any:
    """The process's ``BlobServiceClient`` for these credentials, with ``pool`` connections."""
    key = (creds, pool)
    with _lock:
        found = _clients.get(key)
        if found is None:
            found = _clients[key] = _make(creds, pool)
        return found


def _make(creds: Credentials, pool: int) -> Any:
    blob = sdk("azure.storage.blob", "azure-storage-blob", EXTRA)
    settings: dict[str, Any] = {
        # Waits of about 2, 4 and 8 s; a refused connection is tried twice only (the SDK's
        # default waits 15 s and more, ten times).
        "retry_policy": blob.ExponentialRetry(
            initial_backoff=0, increment_base=2, retry_total=3, retry_connect=1, random_jitter_range=0.5
        ),
        "connection_timeout": CONNECT_TIMEOUT,
        "read_timeout": READ_TIMEOUT,
        "max_single_put_size": BLOCK,
        "max_block_size": BLOCK,
        "transport": _transport(pool),
    }
    try:
        if creds.kind == "connection_string":
            return blob.BlobServiceClient.from_connection_string(creds.secret, **settings)
        if creds.kind == "key":
            account = _account_name(creds.account_url)
            credential: Any = {"account_name": account, "account_key": creds.secret}
        elif creds.kind == "sas":
            credential = creds.secret
        else:
            identity = sdk("azure.identity", "azure-identity", EXTRA)
            credential = identity.DefaultAzureCredential()
        return blob.BlobServiceClient(creds.account_url, credential=credential, **settings)
    except HandlerError:
        raise
    except ValueError as exc:  # a malformed connection string or URL; the message holds no secret
        what = "connection_string" if creds.kind == "connection_string" else "account_url"
        raise AzureError(f"{what} is not usable: {scrub(one_line(exc))}") from exc


def _transport(pool: int) -> Any:
    """A requests transport with a connection pool as big as the step's concurrency."""
    import requests
    from azure.core.pipeline.transport import RequestsTransport

    session = requests.Session()
    adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=pool)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return RequestsTransport(session=session, session_owner=True)


def _account_name(url: str) -> str:
    """The account in ``https://ACCOUNT.blob.core.windows.net`` or ``http://host:port/ACCOUNT`` (Azurite)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    path = parts.path.strip("/")
    if path and (host.replace(".", "").isdigit() or host in ("localhost", "::1") or ":" in parts.netloc):
        return path.split("/")[0]
    if not host or "." not in host:
        raise AzureError(
            f"account_url {url!r} names no storage account: use https://ACCOUNT.blob.core.windows.net"
        )
    return host.split(".")[0]


def public_url(url: str) -> str:
    """A URL without its query (where a SAS token would be)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}".rstrip("/")


_SIGNATURE = re.compile(r"(sig|AccountKey|SharedAccessSignature)=[^&;\s]+", re.IGNORECASE)


def scrub(text: str) -> str:
    return _SIGNATURE.sub(r"\1=***", text)


# -- errors ---------------------------------------------------------------------------------------


def azure_error(exc: BaseException, action: str, target: str, account: str) -> HandlerError:
    """One line saying what failed and what to do, for any azure-core or azure-identity exception."""
    from azure.core import exceptions as aex

    if isinstance(exc, HandlerError):
        return exc
    code = getattr(exc, "error_code", "") or ""
    code = str(getattr(code, "value", code))  # the SDK gives an enum member or a string
    status = getattr(exc, "status_code", None)
    message = scrub(_first_line(getattr(exc, "message", None) or str(exc)))
    if isinstance(exc, aex.ResourceNotFoundError) and code == "ContainerNotFound":
        container = target.split("/")[0]
        return AzureError(
            f"container {container!r} does not exist in {account}: create it first "
            "(az storage container create), or check container and the account"
        )
    if code in ("AuthenticationFailed", "InvalidAuthenticationInfo") or "failed to authenticate" in message:
        return AzureError(
            f"Azure Storage refused the credentials ({code}) at {account}: check the account key, "
            "the SAS token's signature and expiry, or the connection string"
        )
    if code.startswith("AuthorizationPermission") or code in (
        "AuthorizationFailure",
        "InsufficientAccountPermissions",
    ):
        return AzureError(
            f"access denied: cannot {action} {target} ({code}): the credentials lack the permission "
            "(role Storage Blob Data Contributor, or a SAS with write and list)"
        )
    if code in ("Md5Mismatch", "InvalidMd5") or ("md5" in message.lower() and status == 400):
        return AzureError(
            f"checksum mismatch: Azure Storage refused {target} ({code or 'Md5Mismatch'}): the data "
            "changed on the way or the file changed while it was read; run again"
        )
    if type(exc).__name__ in ("CredentialUnavailableError", "ClientAuthenticationError") and not code:
        return AzureError(
            f"no Azure AD credential for {account}: sign in (az login), set AZURE_CLIENT_ID, AZURE_TENANT_ID "
            "and AZURE_CLIENT_SECRET, or set AZURE_STORAGE_KEY or AZURE_STORAGE_SAS_TOKEN"
        )
    if isinstance(exc, aex.ServiceRequestError):
        return AzureError(
            f"cannot reach Azure Storage at {account}: {_reason(exc)}; check account_url (or the connection "
            "string's BlobEndpoint) and the network"
        )
    if isinstance(exc, aex.ServiceResponseError):
        return AzureError(
            f"cannot {action} {target}: the connection to {account} broke ({_reason(exc)}); "
            "run again (retry:)"
        )
    if isinstance(exc, aex.HttpResponseError):
        detail = f"{code}: {message}" if code else f"HTTP {status}: {message}"
        return AzureError(f"cannot {action} {target}: {detail}")
    return AzureError(f"cannot {action} {target}: {type(exc).__name__}: {scrub(one_line(exc))}")


def _first_line(text: str) -> str:
    first = str(text).strip().splitlines()[0] if str(text).strip() else ""
    return one_line(first).rstrip(".")


def _reason(exc: BaseException) -> str:
    text = str(exc)
    for known in ("Connection refused", "Name or service not known", "No route to host", "Connection reset"):
        if known.lower() in text.lower():
            return known.lower()
    if "timed out" in text.lower():
        return "timed out"
    if "Temporary failure in name resolution" in text or "nodename nor servname" in text:
        return "unknown host"
    return scrub(_first_line(text))[:200]
