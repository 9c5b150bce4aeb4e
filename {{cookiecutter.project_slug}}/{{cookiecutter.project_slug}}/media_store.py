"""Uploads in the media store of a fleet's data host: an nginx there over its media/, which
takes PUT and DELETE from the app hosts (with MEDIA_PASSWORD) and GET from every host. With
a data host in etc/fleet.ini, settings_local.py makes this the default storage, so a file
saved on one app host is there for all of them and for the fronts, which serve /media/ from
the store. A single server keeps Django's FileSystemStorage in its own media/.

Names are Django's (validated by Storage.save); a file is written whole or not at all (nginx
renames a finished upload into place). Listing a folder is not offered: nginx never lists one.
"""

from __future__ import annotations

import base64
import http.client
from typing import IO, Any
from urllib.parse import quote, urljoin, urlsplit

from django.conf import settings
from django.core.files.base import ContentFile, File
from django.core.files.storage import Storage
from django.utils.deconstruct import deconstructible
from django.utils.encoding import filepath_to_uri

TIMEOUT = 10  # seconds: a data host that is silent never holds a request longer
CHUNK = 64 * 1024


@deconstructible
class MediaStore(Storage):
    def __init__(self, location: str = "", user: str = "", password: str = "", base_url: str | None = None) -> None:
        parts = urlsplit(location)
        if parts.scheme != "http" or not parts.hostname or not parts.port:
            raise ValueError(f"media store location {location!r}: want http://ADDRESS:PORT/")
        self.host, self.port = parts.hostname, parts.port
        self.authorization = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        self.base_url = settings.MEDIA_URL if base_url is None else base_url

    def _ask(
        self, method: str, name: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> tuple[int, http.client.HTTPMessage, bytes]:
        connection = http.client.HTTPConnection(self.host, self.port, timeout=TIMEOUT)
        try:
            sent = {"Authorization": self.authorization, **(headers or {})}
            connection.request(method, "/" + quote(name.replace("\\", "/")), body=body, headers=sent)
            answer = connection.getresponse()
            return answer.status, answer.headers, answer.read()
        finally:
            connection.close()

    def _refused(self, method: str, name: str, status: int) -> OSError:
        return OSError(f"media store {self.host}:{self.port}: {method} {name} answered {status}")

    def _save(self, name: str, content: File) -> str:
        if hasattr(content, "seek"):
            content.seek(0)
        # Streamed in chunks with its length: an upload is never held in memory whole.
        headers = {"Content-Length": str(content.size), "Content-Type": "application/octet-stream"}
        status, _, _ = self._ask("PUT", name, content.chunks(CHUNK), headers)
        if status not in (201, 204):
            raise self._refused("PUT", name, status)
        return name

    def _open(self, name: str, mode: str = "rb") -> IO[bytes]:
        if "w" in mode or "a" in mode or "+" in mode:
            raise ValueError(f"media store files open for reading only, not {mode!r}: save a new file")
        status, _, body = self._ask("GET", name)
        if status == 404:
            raise FileNotFoundError(name)
        if status != 200:
            raise self._refused("GET", name, status)
        return ContentFile(body, name=name)

    def _head(self, name: str) -> http.client.HTTPMessage | None:
        status, headers, _ = self._ask("HEAD", name)
        if status == 404:
            return None
        if status != 200:
            raise self._refused("HEAD", name, status)
        return headers

    def exists(self, name: str) -> bool:
        return self._head(name) is not None

    def size(self, name: str) -> int:
        headers = self._head(name)
        if headers is None:
            raise FileNotFoundError(name)
        return int(headers["Content-Length"])

    def delete(self, name: str) -> None:
        status, _, _ = self._ask("DELETE", name)
        if status not in (204, 404):  # gone already is gone
            raise self._refused("DELETE", name, status)

    def url(self, name: str) -> str:
        return urljoin(self.base_url, filepath_to_uri(name))
