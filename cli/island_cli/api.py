"""The HTTP client of the public API and the mapping of its errors to exit codes."""

from typing import Any
from urllib.parse import quote, urlsplit

import click
import httpx

from island_cli import __version__

EXIT_ERROR = 1  # an API error without a more specific code
EXIT_USAGE = 2  # click's own code for bad arguments
EXIT_AUTH = 3
EXIT_NOT_FOUND = 4
EXIT_RATE_LIMIT = 5
EXIT_NETWORK = 6


class CliError(click.ClickException):
    """One line on stderr and a distinct exit code (click prints and exits)."""

    exit_code = EXIT_ERROR


class AuthError(CliError):
    exit_code = EXIT_AUTH


class NotFoundError(CliError):
    exit_code = EXIT_NOT_FOUND


class RateLimitError(CliError):
    exit_code = EXIT_RATE_LIMIT


class NetworkError(CliError):
    exit_code = EXIT_NETWORK


def api_base(url: str) -> str:
    """The server root (or a URL already ending in /api/v1) -> the /api/v1 base."""
    url = url.strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise click.UsageError(f"Invalid API URL {url!r}: expected http(s)://host[:port]")
    return url if url.endswith("/api/v1") else f"{url}/api/v1"


def error_for(response: httpx.Response) -> CliError:
    """Build the exception for an error answer in the shape {"error": {"message", "code"}}."""
    try:
        error = response.json()["error"]
        message, code = str(error["message"]), str(error.get("code", "error"))
    except (ValueError, KeyError, TypeError, AttributeError):
        error = {}
        message, code = f"Unexpected HTTP {response.status_code} answer from the API", "error"
    status = response.status_code
    if status in (401, 403):
        hint = " (run `island auth login`)" if status == 401 else ""
        return AuthError(f"{message}{hint} [{code}]")
    if status == 404:
        return NotFoundError(f"{message} [{code}]")
    if status == 429:
        retry = response.headers.get("Retry-After") or error.get("retry_after", "?")
        return RateLimitError(f"{message}; retry in {retry} s [{code}]")
    return CliError(f"{message} [{code}, HTTP {status}]")


class Api:
    def __init__(self, url: str, key: str | None, timeout: float = 15.0):
        headers = {"User-Agent": f"island-cli/{__version__}", "Accept": "application/json"}
        if key:
            headers["Authorization"] = f"Bearer {key}"
        self.base = api_base(url)
        self._http = httpx.Client(base_url=self.base, headers=headers, timeout=timeout)

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params=params or None)

    def post(self, path: str, body: dict[str, Any]) -> Any:
        return self.request("POST", path, json=body)

    def patch(self, path: str, body: dict[str, Any]) -> Any:
        return self.request("PATCH", path, json=body)

    def delete(self, path: str) -> Any:
        return self.request("DELETE", path)

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TimeoutException as exc:
            raise NetworkError(f"Timed out talking to {self.base}") from exc
        except httpx.TransportError as exc:
            raise NetworkError(f"Cannot reach {self.base}: {exc}") from exc
        if not response.is_success:
            raise error_for(response)
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError as exc:
            raise CliError(f"The API at {self.base} did not answer with JSON") from exc


def path(*parts: str) -> str:
    """An API path from parts, each quoted so that an argument stays one segment."""
    return "/" + "/".join(quote(part, safe="") for part in parts)
